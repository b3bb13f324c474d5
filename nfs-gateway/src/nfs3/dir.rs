//! READDIR and READDIRPLUS: as many entries as fit the client's byte limits
//! (`count`; `dircount` and `maxcount`), counted exactly as encoded.
//!
//! The cookie verifier is derived from the directory's generation: cookies
//! stay valid for the directory's whole life (see `fs::readdir`), so the
//! verifier never needs to change while the directory exists.

use crate::fs::{DirEntry, DirListing, FsError, Inode};
use crate::nfs3::types::*;
use crate::nfs3::{failed, fh, ok, target, Call, Handled, Shape};
use crate::service::{Service, Target};
use crate::xdr::{opaque_size, Reader, Writer};

/// Bytes of a READDIR(PLUS) reply besides its entries: status, directory
/// attributes, verifier, end-of-list marker, eof flag.
const FIXED_BYTES: usize = 4 + 4 + FATTR3_BYTES + 8 + 4 + 4;
/// An entry's bytes in READDIR, without its name.
const ENTRY_BYTES_MIN: usize = 4 + 8 + 4 + 8;
/// An entry's extra bytes in READDIRPLUS: attributes and handle.
const PLUS_EXTRA_BYTES: usize = 4 + FATTR3_BYTES + 4 + 4 + crate::handle::HANDLE_BYTES;

fn cookie_verifier(dir: &Inode) -> [u8; 8] {
    u64::from(dir.generation).to_be_bytes()
}

fn verifier_ok(cookie: u64, given: [u8; 8], dir: &Inode) -> bool {
    cookie == 0 || given == [0; 8] || given == cookie_verifier(dir)
}

/// Reads the listing, checking the verifier; the error reply on failure.
async fn listing(
    svc: &Service,
    call: &Call,
    t: &Target<'_>,
    cookie: u64,
    verf: [u8; 8],
    entries_max: usize,
    plus: bool,
) -> Result<DirListing, crate::rpc::message::ReplyWriter> {
    let got = svc.fs.readdir(t.cred.clone(), t.inode, cookie, entries_max, plus).await;
    let mut got = got.map_err(|e| failed(call, Status::from(&e), Shape::Attr))?;
    if !verifier_ok(cookie, verf, &got.dir) {
        return Err(failed(call, Status::from(&FsError::BadCookie), Shape::Attr));
    }
    if t.inode == t.export.root {
        // ".." of an export's root is the root itself.
        for e in got.entries.iter_mut().filter(|e| e.name == b"..") {
            e.ino = t.inode.ino;
            e.attr = e.attr.as_ref().map(|_| got.dir.clone());
        }
    }
    Ok(got)
}

fn finish(call: &Call, svc: &Service, dir: &Inode, body: Writer, fitted: usize, listed: &DirListing) -> Handled {
    if fitted == 0 && !listed.entries.is_empty() {
        return Ok(failed(call, Status::TooSmall, Shape::Attr));
    }
    let mut rw = ok(call);
    encode_post_op_attr(&mut rw.w, Some(dir), svc.fsid());
    rw.w.fixed(&cookie_verifier(dir));
    rw.w.fixed(body.as_slice());
    rw.w.bool(false).bool(listed.eof && fitted == listed.entries.len());
    Ok(rw)
}

pub async fn readdir(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let handle = fh(r)?;
    let cookie = r.u64()?;
    let verf = r.array::<8>()?;
    let count = r.u32()? as usize;
    let t = target!(svc, call, handle, Shape::Attr);
    let entries_max = count.saturating_sub(FIXED_BYTES) / ENTRY_BYTES_MIN + 1;
    let listed = match listing(svc, call, &t, cookie, verf, entries_max, false).await {
        Ok(l) => l,
        Err(reply) => return Ok(reply),
    };
    let mut body = Writer::new();
    let mut fitted = 0;
    for e in &listed.entries {
        let size = ENTRY_BYTES_MIN - 4 + opaque_size(e.name.len());
        if FIXED_BYTES + body.len() + size > count {
            break;
        }
        body.bool(true).u64(e.ino).string(&e.name).u64(e.cookie);
        fitted += 1;
    }
    finish(call, svc, &listed.dir, body, fitted, &listed)
}

fn encode_plus_entry(svc: &Service, t: &Target<'_>, w: &mut Writer, e: &DirEntry) {
    w.bool(true).u64(e.ino).string(&e.name).u64(e.cookie);
    encode_post_op_attr(w, e.attr.as_ref(), svc.fsid());
    match &e.attr {
        Some(a) => {
            let h = svc.handle_of(t.export, a);
            w.bool(true).opaque(&h);
        }
        None => {
            w.bool(false);
        }
    }
}

pub async fn readdirplus(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let handle = fh(r)?;
    let cookie = r.u64()?;
    let verf = r.array::<8>()?;
    let dircount = r.u32()? as usize;
    let maxcount = r.u32()? as usize;
    let t = target!(svc, call, handle, Shape::Attr);
    let by_max = maxcount.saturating_sub(FIXED_BYTES) / (ENTRY_BYTES_MIN + PLUS_EXTRA_BYTES) + 1;
    let by_dir = dircount / (ENTRY_BYTES_MIN - 4) + 1;
    let listed = match listing(svc, call, &t, cookie, verf, by_max.min(by_dir), true).await {
        Ok(l) => l,
        Err(reply) => return Ok(reply),
    };
    let mut body = Writer::new();
    let (mut fitted, mut dir_bytes) = (0, 0);
    for e in &listed.entries {
        let mut one = Writer::new();
        encode_plus_entry(svc, &t, &mut one, e);
        let entry_dir_bytes = 8 + opaque_size(e.name.len()) + 8;
        let over_dir = fitted > 0 && dir_bytes + entry_dir_bytes > dircount;
        if over_dir || FIXED_BYTES + body.len() + one.len() > maxcount {
            break;
        }
        body.fixed(one.as_slice());
        dir_bytes += entry_dir_bytes;
        fitted += 1;
    }
    finish(call, svc, &listed.dir, body, fitted, &listed)
}
