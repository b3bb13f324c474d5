//! Every NFSv3 procedure through a real client over TCP: what it does, and
//! the error each misuse must get.

mod common;

use common::{status, trusting, user, Server};
use keel_nfs::client::Auth;
use keel_nfs::fs::{FileType, SetAttrs, SetTime, StableHow, Time};
use keel_nfs::nfs3::types::Status;

fn mode(m: u32) -> SetAttrs {
    SetAttrs { mode: Some(m), ..SetAttrs::default() }
}

#[test]
fn null_getattr_and_bad_handles() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    c.null().unwrap();
    let attr = c.getattr(&root).unwrap();
    assert_eq!((attr.ftype, attr.nlink), (FileType::Directory, 2));
    assert_eq!(status(c.getattr(&[1, 2, 3])), Status::BadHandle);
    let mut other_fs = root.clone();
    other_fs[4] ^= 0xFF;
    assert_eq!(status(c.getattr(&other_fs)), Status::Stale);
}

#[test]
fn setattr_changes_mode_owner_size_and_times_with_exact_wcc() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (fh, made, _) = c.create(&root, b"f", &mode(0o600), None, true).unwrap();
    c.write(&fh, 0, &[7u8; 10_000], StableHow::FileSync).unwrap();
    let before = c.getattr(&fh).unwrap();
    let t = Time { secs: 1_000_000, nsecs: 5 };
    let set = SetAttrs {
        mode: Some(0o640),
        uid: Some(42),
        gid: Some(43),
        size: Some(100),
        atime: SetTime::Client(t),
        mtime: SetTime::Client(t),
    };
    let wcc = c.setattr(&fh, &set, None).unwrap();
    assert_eq!(wcc.before, Some((10_000, before.mtime, before.ctime)));
    let after = wcc.after.unwrap();
    assert_eq!((after.mode, after.uid, after.gid, after.size, after.mtime), (0o640, 42, 43, 100, t));
    assert!(after.ctime >= made.ctime);
    // Growing leaves a hole that reads as zeros; shrinking dropped the rest.
    c.setattr(&fh, &SetAttrs { size: Some(200_000), ..SetAttrs::default() }, None).unwrap();
    let (data, eof) = c.read(&fh, 0, 300_000).unwrap();
    assert!(eof);
    assert_eq!(data.len(), 200_000);
    assert!(data[..100].iter().all(|&b| b == 7) && data[100..].iter().all(|&b| b == 0));
}

#[test]
fn setattr_errors_guard_permission_and_type() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (fh, attr, _) = c.create(&root, b"f", &mode(0o644), None, true).unwrap();
    let stale_guard = Time { secs: attr.ctime.secs.wrapping_sub(10), nsecs: 0 };
    assert_eq!(status(c.setattr(&fh, &mode(0o600), Some(stale_guard))), Status::NotSync);
    c.setattr(&fh, &mode(0o600), Some(attr.ctime)).unwrap();
    let (mut other, _) = server.client(user(1000), "/");
    assert_eq!(status(other.setattr(&fh, &mode(0o777), None)), Status::Perm);
    assert_eq!(status(other.setattr(&fh, &SetAttrs { uid: Some(1000), ..SetAttrs::default() }, None)), Status::Perm);
    assert_eq!(status(c.setattr(&root, &SetAttrs { size: Some(0), ..SetAttrs::default() }, None)), Status::IsDir);
    let big = SetAttrs { size: Some(keel_nfs::fs::FILE_BYTES_MAX + 1), ..SetAttrs::default() };
    assert_eq!(status(c.setattr(&fh, &big, None)), Status::FBig);
}

#[test]
fn lookup_finds_names_and_refuses_bad_ones() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (dir, _, _) = c.mkdir(&root, b"d", &mode(0o700)).unwrap();
    let (file, _, _) = c.create(&dir, b"f", &mode(0o644), None, true).unwrap();
    let (found, attr) = c.lookup(&dir, b"f").unwrap();
    assert_eq!(found, file);
    assert_eq!(attr.ftype, FileType::Regular);
    assert_eq!(c.lookup(&dir, b"..").unwrap().0, root);
    assert_eq!(c.lookup(&root, b"..").unwrap().0, root, "\"..\" of the export root stays inside");
    assert_eq!(c.lookup(&dir, b".").unwrap().0, dir);
    assert_eq!(status(c.lookup(&dir, b"missing")), Status::NoEnt);
    assert_eq!(status(c.lookup(&file, b"x")), Status::NotDir);
    assert_eq!(status(c.lookup(&dir, &[b'n'; 256])), Status::NameTooLong);
    let (mut other, _) = server.client(user(1000), "/");
    assert_eq!(status(other.lookup(&dir, b"f")), Status::Access, "no search permission on a 0700 directory");
}

#[test]
fn access_reports_what_the_mode_grants() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (fh, _, _) = c.create(&root, b"f", &mode(0o754), None, true).unwrap();
    c.setattr(&fh, &SetAttrs { uid: Some(1000), gid: Some(2000), ..SetAttrs::default() }, None).unwrap();
    let all = 0x3F;
    let (mut owner, _) = server.client(user(1000), "/");
    assert_eq!(owner.access(&fh, all).unwrap(), 0x01 | 0x04 | 0x08 | 0x20);
    let (mut member, _) = server.client(Auth::Sys { uid: 1001, gid: 2000, gids: vec![] }, "/");
    assert_eq!(member.access(&fh, all).unwrap(), 0x01 | 0x20);
    let (mut other, _) = server.client(user(1002), "/");
    assert_eq!(other.access(&fh, all).unwrap(), 0x01);
    assert_eq!(other.access(&root, all).unwrap(), 0x01 | 0x02, "read and lookup on a 0755 root");
}

#[test]
fn symlink_and_readlink() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (link, attr, _) = c.symlink(&root, b"l", b"../some/where").unwrap();
    assert_eq!((attr.ftype, attr.size), (FileType::Symlink, 13));
    assert_eq!(c.readlink(&link).unwrap(), b"../some/where");
    let (file, _, _) = c.create(&root, b"f", &mode(0o644), None, true).unwrap();
    assert_eq!(status(c.readlink(&file)), Status::Inval);
    assert_eq!(status(c.symlink(&root, b"long", &[b'x'; 4097])), Status::NameTooLong);
    assert_eq!(status(c.symlink(&root, b"l", b"x")), Status::Exist);
}

#[test]
fn read_and_write_with_holes_eof_and_errors() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (fh, _, _) = c.create(&root, b"f", &mode(0o600), None, true).unwrap();
    // Unaligned writes across chunk boundaries and a hole in between.
    let a: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    c.write(&fh, 1000, &a, StableHow::Unstable).unwrap();
    c.write(&fh, 500_000, b"tail", StableHow::FileSync).unwrap();
    let (data, eof) = c.read(&fh, 0, 1 << 20).unwrap();
    assert!(eof);
    assert_eq!(data.len(), 500_004);
    assert!(data[..1000].iter().all(|&b| b == 0));
    assert_eq!(&data[1000..101_000], &a[..]);
    assert!(data[101_000..500_000].iter().all(|&b| b == 0));
    assert_eq!(&data[500_000..], b"tail");
    let (part, eof) = c.read(&fh, 1500, 10).unwrap();
    assert_eq!((part.as_slice(), eof), (&a[500..510], false));
    assert_eq!(c.read(&fh, 10 << 20, 10).unwrap(), (vec![], true));
    let attr = c.getattr(&fh).unwrap();
    assert!(attr.used_bytes < 200_000, "holes take no space: used {}", attr.used_bytes);
    assert_eq!(status(c.read(&root, 0, 10)), Status::IsDir);
    assert_eq!(status(c.write(&root, 0, b"x", StableHow::FileSync)), Status::IsDir);
    assert_eq!(status(c.write(&fh, keel_nfs::fs::FILE_BYTES_MAX, b"x", StableHow::FileSync)), Status::FBig);
    let (mut other, _) = server.client(user(1000), "/");
    assert_eq!(status(other.read(&fh, 0, 10)), Status::Access);
    assert_eq!(status(other.write(&fh, 0, b"x", StableHow::FileSync)), Status::Access);
}

#[test]
fn whole_chunk_writes_whose_data_goes_straight_to_dma_memory_read_back() {
    // A 64 KiB WRITE at a 64 KiB boundary is the case the connection reads
    // into a DMA buffer apart from the record (server::bulk).
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (fh, _, _) = c.create(&root, b"f", &mode(0o600), None, true).unwrap();
    let chunk = 64 * 1024;
    let data: Vec<u8> = (0..4 * chunk as u32).map(|i| (i % 241) as u8 ^ (i >> 16) as u8).collect();
    for (i, piece) in data.chunks(chunk).enumerate().rev() {
        c.write(&fh, (i * chunk) as u64, piece, StableHow::Unstable).unwrap();
    }
    // Overwrite one chunk whole, then a part of another one.
    c.write(&fh, chunk as u64, &[5; 64 * 1024], StableHow::FileSync).unwrap();
    c.write(&fh, 3 * chunk as u64 + 10, b"patch", StableHow::Unstable).unwrap();
    let mut want = data.clone();
    want[chunk..2 * chunk].fill(5);
    want[3 * chunk + 10..3 * chunk + 15].copy_from_slice(b"patch");
    c.commit(&fh).unwrap();
    let (got, eof) = c.read(&fh, 0, 1 << 20).unwrap();
    assert!(eof);
    assert_eq!(got, want);
    assert_eq!(c.getattr(&fh).unwrap().size, 4 * chunk as u64);
    let (mut other, _) = server.client(user(1000), "/");
    assert_eq!(status(other.write(&fh, 0, &[6; 64 * 1024], StableHow::Unstable)), Status::Access);
    assert_eq!(status(c.write(&root, 0, &[6; 64 * 1024], StableHow::Unstable)), Status::IsDir);
    assert_eq!(c.read(&fh, 0, 1 << 20).unwrap().0, want);
}

#[test]
fn the_owner_may_write_a_file_it_made_read_only() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(user(1000), "/");
    let (mut admin, _) = server.client(Auth::root(), "/");
    admin.setattr(&root, &mode(0o777), None).unwrap();
    let (fh, _, _) = c.create(&root, b"ro", &mode(0o444), None, true).unwrap();
    c.write(&fh, 0, b"still mine", StableHow::FileSync).unwrap();
}

#[test]
fn unstable_writes_and_commit_share_the_verifier() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (fh, _, _) = c.create(&root, b"f", &mode(0o600), None, true).unwrap();
    let w = c.write(&fh, 0, &[1; 4096], StableHow::Unstable).unwrap();
    assert_eq!(w.committed, StableHow::Unstable);
    assert_eq!(c.commit(&fh).unwrap(), w.verifier);
    let s = c.write(&fh, 0, &[2; 10], StableHow::DataSync).unwrap();
    assert_eq!((s.committed, s.verifier), (StableHow::FileSync, w.verifier));
}

#[test]
fn create_modes_guarded_unchecked_and_exclusive() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (fh, _, wcc) = c.create(&root, b"g", &mode(0o644), None, true).unwrap();
    assert_eq!(wcc.after.unwrap().size, 4096 + 32);
    assert_eq!(status(c.create(&root, b"g", &mode(0o644), None, true)), Status::Exist);
    c.write(&fh, 0, b"content", StableHow::FileSync).unwrap();
    // UNCHECKED on an existing file opens it, truncating if asked.
    let (again, attr, _) = c.create(&root, b"g", &SetAttrs::default(), None, false).unwrap();
    assert_eq!((again.as_slice(), attr.size), (fh.as_slice(), 7));
    let (_, attr, _) = c.create(&root, b"g", &SetAttrs { size: Some(0), ..SetAttrs::default() }, None, false).unwrap();
    assert_eq!(attr.size, 0);
    // EXCLUSIVE: a retransmission (same verifier) gets the same file.
    let verf = *b"verifier";
    let (x1, _, _) = c.create(&root, b"x", &SetAttrs::default(), Some(verf), false).unwrap();
    let (x2, _, _) = c.create(&root, b"x", &SetAttrs::default(), Some(verf), false).unwrap();
    assert_eq!(x1, x2);
    assert_eq!(status(c.create(&root, b"x", &SetAttrs::default(), Some(*b"another!"), false)), Status::Exist);
    assert_eq!(status(c.create(&root, b".", &mode(0o644), None, true)), Status::Exist);
    assert_eq!(status(c.create(&root, &[b'n'; 256], &mode(0o644), None, true)), Status::NameTooLong);
    assert_eq!(status(c.create(&fh, b"in-a-file", &mode(0o644), None, true)), Status::NotDir);
    let (mut other, _) = server.client(user(1000), "/");
    assert_eq!(status(other.create(&root, b"nope", &mode(0o644), None, true)), Status::Access);
}

#[test]
fn mkdir_counts_links_and_mknod_makes_special_files() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (d, attr, wcc) = c.mkdir(&root, b"d", &mode(0o755)).unwrap();
    assert_eq!((attr.ftype, attr.nlink), (FileType::Directory, 2));
    assert_eq!(wcc.after.unwrap().nlink, 3);
    assert_eq!(status(c.mkdir(&root, b"d", &mode(0o755))), Status::Exist);
    let (_, chr, _) = c.mknod(&d, b"tty", FileType::Character, (4, 64)).unwrap();
    assert_eq!((chr.ftype, chr.rdev), (FileType::Character, (4, 64)));
    assert_eq!(c.mknod(&d, b"fifo", FileType::Fifo, (0, 0)).unwrap().1.ftype, FileType::Fifo);
    assert_eq!(c.mknod(&d, b"sock", FileType::Socket, (0, 0)).unwrap().1.ftype, FileType::Socket);
    assert_eq!(status(c.mknod(&d, b"reg", FileType::Regular, (0, 0))), Status::BadType);
}

#[test]
fn remove_and_rmdir_with_their_errors() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (d, _, _) = c.mkdir(&root, b"d", &mode(0o755)).unwrap();
    let (f, _, _) = c.create(&d, b"f", &mode(0o644), None, true).unwrap();
    assert_eq!(status(c.rmdir(&root, b"d")), Status::NotEmpty);
    assert_eq!(status(c.remove(&root, b"d")), Status::IsDir);
    assert_eq!(status(c.rmdir(&d, b"f")), Status::NotDir);
    assert_eq!(status(c.remove(&d, b"missing")), Status::NoEnt);
    assert_eq!(status(c.rmdir(&d, b".")), Status::Inval);
    let wcc = c.remove(&d, b"f").unwrap();
    assert_eq!(wcc.after.unwrap().size, 4096);
    assert_eq!(status(c.getattr(&f)), Status::Stale, "a removed file's handle is stale");
    let wcc = c.rmdir(&root, b"d").unwrap();
    assert_eq!(wcc.after.unwrap().nlink, 2);
    assert_eq!(status(c.getattr(&d)), Status::Stale);
}

#[test]
fn sticky_directories_keep_other_users_files() {
    let server = Server::start(trusting());
    let (mut admin, root) = server.client(Auth::root(), "/");
    let (tmp, _, _) = admin.mkdir(&root, b"tmp", &mode(0o1777)).unwrap();
    let (mut a, _) = server.client(user(1000), "/");
    let (mut b, _) = server.client(user(1001), "/");
    a.create(&tmp, b"mine", &mode(0o666), None, true).unwrap();
    assert_eq!(status(b.remove(&tmp, b"mine")), Status::Access);
    assert_eq!(status(b.rename(&tmp, b"mine", &tmp, b"stolen")), Status::Access);
    a.remove(&tmp, b"mine").unwrap();
}

#[test]
fn link_counts_names_and_keeps_data_until_the_last_goes() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (d, _, _) = c.mkdir(&root, b"d", &mode(0o755)).unwrap();
    let (f, _, _) = c.create(&root, b"f", &mode(0o644), None, true).unwrap();
    c.write(&f, 0, b"shared", StableHow::FileSync).unwrap();
    let (attr, wcc) = c.link(&f, &d, b"g").unwrap();
    assert_eq!(attr.unwrap().nlink, 2);
    assert!(wcc.after.is_some());
    assert_eq!(status(c.link(&f, &d, b"g")), Status::Exist);
    assert_eq!(status(c.link(&d, &root, b"dirlink")), Status::IsDir);
    c.remove(&root, b"f").unwrap();
    let (g, attr) = c.lookup(&d, b"g").unwrap();
    assert_eq!((g.as_slice(), attr.nlink), (f.as_slice(), 1));
    assert_eq!(c.read(&g, 0, 100).unwrap().0, b"shared");
}

#[test]
fn rename_moves_replaces_and_refuses_loops() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (a, _, _) = c.mkdir(&root, b"a", &mode(0o755)).unwrap();
    let (b, _, _) = c.mkdir(&root, b"b", &mode(0o755)).unwrap();
    let (f, _, _) = c.create(&a, b"f", &mode(0o644), None, true).unwrap();
    let (victim, _, _) = c.create(&b, b"g", &mode(0o644), None, true).unwrap();
    let (from, to) = c.rename(&a, b"f", &b, b"g").unwrap();
    assert_eq!(from.after.unwrap().size, 4096);
    assert_eq!(to.after.unwrap().size, 4096 + 32);
    assert_eq!(c.lookup(&b, b"g").unwrap().0, f);
    assert_eq!(status(c.getattr(&victim)), Status::Stale, "the replaced file is gone");
    assert_eq!(status(c.lookup(&a, b"f")), Status::NoEnt);
    // A directory moves with its "..", and the link counts follow.
    let (sub, _, _) = c.mkdir(&a, b"sub", &mode(0o755)).unwrap();
    c.rename(&a, b"sub", &b, b"sub").unwrap();
    assert_eq!(c.lookup(&sub, b"..").unwrap().0, b);
    assert_eq!((c.getattr(&a).unwrap().nlink, c.getattr(&b).unwrap().nlink), (2, 3));
    assert_eq!(status(c.rename(&root, b"b", &sub, b"loop")), Status::Inval);
    // File over directory, directory over file, directory over non-empty.
    c.mkdir(&root, b"full", &mode(0o755)).unwrap();
    let (full, _) = c.lookup(&root, b"full").unwrap();
    c.create(&full, b"x", &mode(0o644), None, true).unwrap();
    assert_eq!(status(c.rename(&b, b"g", &root, b"full")), Status::IsDir);
    assert_eq!(status(c.rename(&root, b"a", &b, b"g")), Status::NotDir);
    assert_eq!(status(c.rename(&root, b"a", &root, b"full")), Status::NotEmpty);
    assert_eq!(status(c.rename(&root, b"nothing", &root, b"x")), Status::NoEnt);
    assert_eq!(status(c.rename(&root, b"a", &root, b"..")), Status::Inval);
    c.rename(&root, b"a", &b, b"sub").unwrap();
    assert_eq!(status(c.getattr(&sub)), Status::Stale, "an empty directory can be replaced");
}

fn status_or_ok<T: std::fmt::Debug>(r: Result<T, keel_nfs::client::ClientError>) -> Status {
    match r {
        Ok(_) => Status::Ok,
        Err(e) => status::<T>(Err(e)),
    }
}

#[test]
fn renaming_onto_itself_or_another_link_does_nothing() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (f, _, _) = c.create(&root, b"f", &mode(0o644), None, true).unwrap();
    c.link(&f, &root, b"g").unwrap();
    assert_eq!(status_or_ok(c.rename(&root, b"f", &root, b"f")), Status::Ok);
    assert_eq!(status_or_ok(c.rename(&root, b"f", &root, b"g")), Status::Ok);
    assert_eq!(c.getattr(&f).unwrap().nlink, 2);
    assert!(c.lookup(&root, b"f").is_ok() && c.lookup(&root, b"g").is_ok());
}

#[test]
fn readdir_resumes_from_any_cookie_and_honours_count() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    let (d, _, _) = c.mkdir(&root, b"d", &mode(0o755)).unwrap();
    for i in 0..1000 {
        c.create(&d, format!("file-{i:04}").as_bytes(), &mode(0o644), None, true).unwrap();
    }
    let (first, eof, verf) = c.readdir(&d, 0, [0; 8], 1024).unwrap();
    assert!(!eof);
    assert!(first.iter().all(|e| e.cookie != 0));
    // count bounds the whole reply: header + entries fit in 1024 bytes.
    let entry_bytes: usize = first.iter().map(|e| 4 + 8 + 4 + e.name.len().div_ceil(4) * 4 + 8).sum();
    assert!(108 + entry_bytes <= 1024, "{} entries take {entry_bytes} bytes", first.len());
    // Remove entries before and after the resume point, add new ones:
    // resuming still yields each surviving entry exactly once.
    let resume = first.last().unwrap().cookie;
    c.remove(&d, &first[5].name).unwrap();
    c.remove(&d, b"file-0999").unwrap();
    c.create(&d, b"zz-new", &mode(0o644), None, true).unwrap();
    let mut rest = Vec::new();
    let (mut cookie, mut v) = (resume, verf);
    loop {
        let (entries, eof, nv) = c.readdir(&d, cookie, v, 4096).unwrap();
        v = nv;
        cookie = entries.last().map_or(cookie, |e| e.cookie);
        rest.extend(entries);
        if eof {
            break;
        }
    }
    let mut names: Vec<Vec<u8>> = first.iter().chain(rest.iter()).map(|e| e.name.clone()).collect();
    names.retain(|n| n != &first[5].name);
    let mut expected: Vec<Vec<u8>> = vec![b".".to_vec(), b"..".to_vec()];
    expected.extend((0..999).map(|i| format!("file-{i:04}").into_bytes()).filter(|n| n != &first[5].name));
    expected.push(b"zz-new".to_vec());
    names.sort();
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(status(c.readdir(&d, 0, [0; 8], 50)), Status::TooSmall);
    assert_eq!(status(c.readdir(&d, resume, *b"wrongvrf", 4096)), Status::BadCookie);
    assert_eq!(status(c.readdir(&d, u64::MAX - 1, verf, 4096)), Status::BadCookie);
    let (file, _) = c.lookup(&d, b"file-0000").unwrap();
    assert_eq!(status(c.readdir(&file, 0, [0; 8], 4096)), Status::NotDir);
}

#[test]
fn readdirplus_gives_attributes_and_handles_within_maxcount() {
    let server = Server::start(trusting());
    let (mut c, root) = server.client(Auth::root(), "/");
    for i in 0..100 {
        let (fh, _, _) = c.create(&root, format!("f{i}").as_bytes(), &mode(0o644), None, true).unwrap();
        c.write(&fh, 0, &vec![1; i], StableHow::Unstable).unwrap();
    }
    let (entries, eof, _) = c.readdirplus(&root, 0, [0; 8], 65536, 4096).unwrap();
    assert!(!eof);
    assert!(entries.len() > 5 && entries.len() < 40, "{} entries in 4096 bytes", entries.len());
    for e in entries.iter().filter(|e| e.entry.name.starts_with(b"f")) {
        let attr = e.attr.as_ref().unwrap();
        let n: usize = std::str::from_utf8(&e.entry.name[1..]).unwrap().parse().unwrap();
        assert_eq!(attr.size, n as u64);
        assert_eq!(c.getattr(e.handle.as_ref().unwrap()).unwrap().ino, e.entry.fileid);
    }
    let mut all = 0;
    let mut cookie = 0;
    loop {
        let (entries, eof, _) = c.readdirplus(&root, cookie, [0; 8], 512, 65536).unwrap();
        all += entries.len();
        cookie = entries.last().unwrap().entry.cookie;
        if eof {
            break;
        }
    }
    assert_eq!(all, 102);
}

#[test]
fn fsstat_fsinfo_and_pathconf_tell_the_truth() {
    let mut config = trusting();
    config.fs.capacity_bytes = 64 << 20;
    let server = Server::start(config);
    let (mut c, root) = server.client(Auth::root(), "/");
    let before = c.fsstat(&root).unwrap();
    assert_eq!(before.tbytes, 64 << 20);
    let (fh, _, _) = c.create(&root, b"f", &mode(0o644), None, true).unwrap();
    c.write(&fh, 0, &vec![9; 1 << 20], StableHow::FileSync).unwrap();
    let after = c.fsstat(&root).unwrap();
    assert!(before.fbytes - after.fbytes >= 1 << 20, "{before:?} -> {after:?}");
    assert_eq!(after.tfiles - after.ffiles, 2, "root and one file");
    let info = c.fsinfo(&root).unwrap();
    assert_eq!((info.rtmax, info.wtmax, info.maxfilesize), (1 << 20, 1 << 20, keel_nfs::fs::FILE_BYTES_MAX));
    assert_eq!(info.properties & 0x1B, 0x1B);
    let pc = c.pathconf(&root).unwrap();
    assert_eq!((pc.linkmax, pc.name_max, pc.no_trunc), (keel_nfs::fs::LINKS_MAX, 255, true));
}

#[test]
fn no_space_is_nospc_and_loses_nothing() {
    let mut config = trusting();
    config.fs.capacity_bytes = 4 << 20;
    let server = Server::start(config);
    let (mut c, root) = server.client(Auth::root(), "/");
    let (fh, _, _) = c.create(&root, b"f", &mode(0o644), None, true).unwrap();
    let chunk = vec![5u8; 1 << 20];
    let mut written = 0u64;
    let err = loop {
        match c.write(&fh, written, &chunk, StableHow::FileSync) {
            Ok(_) => written += chunk.len() as u64,
            Err(e) => break e,
        }
    };
    assert_eq!(status::<()>(Err(err)), Status::NoSpc);
    assert!(written >= 2 << 20);
    let attr = c.getattr(&fh).unwrap();
    assert_eq!(attr.size, written, "the refused write changed nothing");
    let (data, _) = c.read(&fh, written - 10, 100).unwrap();
    assert_eq!(data, vec![5u8; 10]);
    // Removing frees the space (in the background) and writes work again.
    c.remove(&root, b"f").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (g, _, _) = c.create(&root, b"g", &mode(0o644), None, false).unwrap();
        if c.write(&g, 0, &chunk, StableHow::FileSync).is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "space never came back");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
