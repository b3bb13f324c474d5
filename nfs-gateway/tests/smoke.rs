mod common;

use keel_nfs::client::Auth;
use keel_nfs::fs::{SetAttrs, StableHow};

#[test]
fn create_write_read_and_list() {
    let server = common::Server::start(common::trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    c.null().unwrap();
    let attr = c.getattr(&root).unwrap();
    assert!(attr.is_dir());
    let (fh, _, _) =
        c.create(&root, b"hello", &SetAttrs { mode: Some(0o644), ..Default::default() }, None, true).unwrap();
    let w = c.write(&fh, 0, b"hello world", StableHow::FileSync).unwrap();
    assert_eq!(w.count, 11);
    let (data, eof) = c.read(&fh, 0, 100).unwrap();
    assert_eq!(data, b"hello world");
    assert!(eof);
    let names: Vec<_> = c.list_all(&root, 4096).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec![b".".to_vec(), b"..".to_vec(), b"hello".to_vec()]);
}
