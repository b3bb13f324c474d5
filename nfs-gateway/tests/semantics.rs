//! The semantics servers get wrong: handles across restarts, the write
//! verifier, squashing, export access on every request, AUTH_NONE, the
//! duplicate-request cache, and concurrent clients.

mod common;

use std::net::IpAddr;

use common::{status, trusting, user, Server};
use keel_nfs::client::{Auth, ClientError, Nfs3Client};
use keel_nfs::fs::{InodeRef, SetAttrs, StableHow};
use keel_nfs::handle::FileHandle;
use keel_nfs::nfs3::types::{Status, NFS_PROGRAM, NFS_V3, PROC_CREATE};
use keel_nfs::rpc::message::ReplyHeader;
use keel_nfs::xdr::Writer;
use keel_nfs::{ClientMatch, ExportConfig, Squash};

fn mode(m: u32) -> SetAttrs {
    SetAttrs { mode: Some(m), ..SetAttrs::default() }
}

#[test]
fn handles_survive_a_restart_and_the_verifier_changes() {
    let mut server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (fh, _, _) = c.create(&root, b"f", &mode(0o644), None, true).unwrap();
    let w = c.write(&fh, 0, b"before restart", StableHow::Unstable).unwrap();
    let verifier_before = c.commit(&fh).unwrap();
    assert_eq!(verifier_before, w.verifier);
    server.restart(trusting());
    let mut c = Nfs3Client::connect(server.nfs_addr(), Auth::root()).unwrap();
    assert_eq!(c.read(&fh, 0, 100).unwrap().0, b"before restart", "the old handle still works");
    let w2 = c.write(&fh, 0, b"B", StableHow::Unstable).unwrap();
    assert_ne!(w2.verifier, verifier_before, "a reopen changes the verifier: unstable data may be gone");
    assert_eq!(c.commit(&fh).unwrap(), w2.verifier);
}

#[test]
fn a_handle_of_a_removed_file_stays_stale_after_the_name_is_reused() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (old, old_attr, _) = c.create(&root, b"f", &mode(0o644), None, true).unwrap();
    c.remove(&root, b"f").unwrap();
    let (new, new_attr, _) = c.create(&root, b"f", &mode(0o644), None, true).unwrap();
    assert_ne!(old, new);
    assert_ne!(old_attr.ino, new_attr.ino, "inode numbers are never reused");
    assert_eq!(status(c.getattr(&old)), Status::Stale);
    // A forged handle with the right inode but another generation is stale too.
    let mut forged = new.clone();
    forged[28] ^= 1;
    assert_eq!(status(c.getattr(&forged)), Status::Stale);
}

#[test]
fn root_squash_and_all_squash_replace_identities() {
    let mut config = keel_nfs::GatewayConfig::for_tests();
    config.exports = vec![ExportConfig::new("/rs"), ExportConfig::new("/all")];
    for e in &mut config.exports {
        e.squash = Squash::None;
    }
    let mut server = Server::start(config.clone());
    for path in ["/rs", "/all"] {
        let (mut c, dir) = server.client(Auth::root(), path);
        c.setattr(&dir, &mode(0o777), None).unwrap();
    }
    config.exports[0].squash = Squash::Root;
    config.exports[1].squash = Squash::All;
    server.restart(config);
    let (mut root_client, rs) = server.client(Auth::root(), "/rs");
    let (_, attr, _) = root_client.create(&rs, b"by-root", &mode(0o644), None, true).unwrap();
    assert_eq!((attr.uid, attr.gid), (65534, 65534), "root is squashed to nobody");
    let (mut u, rs) = server.client(user(1000), "/rs");
    assert_eq!(u.create(&rs, b"by-user", &mode(0o644), None, true).unwrap().1.uid, 1000);
    let (mut u, all) = server.client(user(1000), "/all");
    assert_eq!(u.create(&all, b"by-user", &mode(0o644), None, true).unwrap().1.uid, 65534, "all_squash");
}

#[test]
fn export_access_is_checked_on_every_request_not_only_at_mount() {
    let mut config = keel_nfs::GatewayConfig::for_tests();
    let mut closed = ExportConfig::new("/closed");
    closed.clients = vec![ClientMatch::parse("10.9.9.0/24").unwrap()];
    config.exports = vec![ExportConfig::new("/"), closed];
    config.exports[0].squash = Squash::None;
    let server = Server::start(config);
    let refused = Nfs3Client::mount(server.mount_addr(), Auth::root(), "/closed");
    assert!(matches!(refused, Err(ClientError::Mount(13))), "{refused:?}");
    // A handle naming the closed export (as a client of it would hold) is
    // refused on use from here.
    let (mut c, root) = server.client(Auth::root(), "/");
    let (inside, _) = c.lookup(&root, b"closed").unwrap();
    let h = FileHandle::decode(&inside, server.gateway().fs().fsid()).unwrap();
    let forged = FileHandle { export_root: h.inode.ino, inode: InodeRef { ..h.inode }, ..h }.encode();
    assert_eq!(status(c.getattr(&forged)), Status::Access);
    assert!(c.getattr(&inside).is_ok(), "the same directory through the open export works");
}

#[test]
fn removed_exports_make_their_handles_stale_after_a_restart() {
    let mut config = keel_nfs::GatewayConfig::for_tests();
    config.exports = vec![ExportConfig::new("/a"), ExportConfig::new("/b")];
    let mut server = Server::start(config.clone());
    let (mut c, b_root) = server.client(Auth::root(), "/b");
    c.getattr(&b_root).unwrap();
    config.exports.truncate(1);
    server.restart(config);
    let mut c = Nfs3Client::connect(server.nfs_addr(), Auth::root()).unwrap();
    assert_eq!(status(c.getattr(&b_root)), Status::Stale);
}

#[test]
fn auth_none_is_refused_unless_the_export_allows_it() {
    let mut config = keel_nfs::GatewayConfig::for_tests();
    config.exports = vec![ExportConfig::new("/strict"), ExportConfig::new("/anon")];
    config.exports[1].allow_auth_none = true;
    let server = Server::start(config);
    let strict = Nfs3Client::mount(server.mount_addr(), Auth::root(), "/strict").unwrap();
    let anon = Nfs3Client::mount(server.mount_addr(), Auth::None, "/anon").unwrap();
    let mut c = Nfs3Client::connect(server.nfs_addr(), Auth::None).unwrap();
    match c.getattr(&strict) {
        Err(ClientError::Rpc(ReplyHeader::AuthError(5))) => {}
        other => panic!("expected AUTH_TOOWEAK, got {other:?}"),
    }
    assert_eq!(c.getattr(&anon).unwrap().uid, 0);
}

fn create_args(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.opaque(dir).string(name).u32(1);
    keel_nfs::nfs3::types::encode_sattr(&mut w, &mode(0o644));
    w.into_vec()
}

#[test]
fn a_retransmitted_create_gets_the_first_reply_not_exist() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let args = create_args(&root, b"once");
    let xid = 0x5EED;
    c.rpc.send_as(xid, NFS_PROGRAM, NFS_V3, PROC_CREATE, &args).unwrap();
    let first = c.rpc.recv(xid).unwrap();
    c.rpc.send_as(xid, NFS_PROGRAM, NFS_V3, PROC_CREATE, &args).unwrap();
    let second = c.rpc.recv(xid).unwrap();
    assert_eq!(first, second);
    assert_eq!(&first[..4], &[0, 0, 0, 0], "NFS3_OK");
    // A new xid is a new request: now the name exists.
    c.rpc.send_as(xid + 1, NFS_PROGRAM, NFS_V3, PROC_CREATE, &args).unwrap();
    let third = c.rpc.recv(xid + 1).unwrap();
    assert_eq!(&third[..4], &(Status::Exist as u32).to_be_bytes());
}

#[test]
fn concurrent_clients_see_each_others_writes_and_lose_no_entry() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (shared, _, _) = c.create(&root, b"shared", &mode(0o666), None, true).unwrap();
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let (nfs, mount) = (server.nfs_addr(), server.mount_addr());
            let (root, shared) = (root.clone(), shared.clone());
            std::thread::spawn(move || {
                let _ = mount;
                let mut c = Nfs3Client::connect(nfs, Auth::root()).unwrap();
                for i in 0..50u32 {
                    let name = format!("t{t}-{i}");
                    let (fh, _, _) = c.create(&root, name.as_bytes(), &mode(0o644), None, true).unwrap();
                    c.write(&fh, 0, name.as_bytes(), StableHow::Unstable).unwrap();
                    c.write(&shared, u64::from(t) * 1000 + u64::from(i), &[t + 1], StableHow::Unstable).unwrap();
                    if i % 2 == 0 {
                        c.rename(&root, name.as_bytes(), &root, format!("{name}-r").as_bytes()).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let names = c.list_all(&root, 8192).unwrap();
    assert_eq!(names.len(), 2 + 1 + 8 * 50);
    let (data, _) = c.read(&shared, 0, 8000).unwrap();
    for t in 0..8u8 {
        for i in 0..50usize {
            assert_eq!(data[t as usize * 1000 + i], t + 1);
        }
    }
    for e in names.iter().filter(|e| e.name.starts_with(b"t")) {
        let (fh, _) = c.lookup(&root, &e.name).unwrap();
        let content = c.read(&fh, 0, 100).unwrap().0;
        assert!(e.name.starts_with(&content));
    }
}

#[test]
fn a_client_address_outside_the_export_cannot_mount() {
    let mut config = keel_nfs::GatewayConfig::for_tests();
    config.exports[0].clients = vec![ClientMatch::parse(&format!("{}", IpAddr::from([10, 0, 0, 1]))).unwrap()];
    let server = Server::start(config);
    assert!(matches!(Nfs3Client::mount(server.mount_addr(), Auth::root(), "/"), Err(ClientError::Mount(13))));
}
