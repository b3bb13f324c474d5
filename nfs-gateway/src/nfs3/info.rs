//! FSSTAT, FSINFO, PATHCONF: what the file system really holds and allows.

use crate::fs::dirent::NAME_BYTES_MAX;
use crate::fs::{FILE_BYTES_MAX, LINKS_MAX};
use crate::nfs3::types::*;
use crate::nfs3::{failed, fh, ok, target, Call, Handled, Shape};
use crate::service::Service;
use crate::xdr::Reader;

const FSF3_LINK: u32 = 0x01;
const FSF3_SYMLINK: u32 = 0x02;
const FSF3_HOMOGENEOUS: u32 = 0x08;
const FSF3_CANSETTIME: u32 = 0x10;

pub async fn fsstat(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let t = target!(svc, call, fh(r)?, Shape::Attr);
    let attr = match svc.fs.getattr(t.inode).await {
        Ok(a) => a,
        Err(e) => return Ok(failed(call, (&e).into(), Shape::Attr)),
    };
    let space = svc.fs.space();
    let mut rw = ok(call);
    encode_post_op_attr(&mut rw.w, Some(&attr), svc.fsid());
    rw.w.u64(space.total_bytes).u64(space.free_bytes).u64(space.free_bytes);
    rw.w.u64(space.total_files).u64(space.free_files).u64(space.free_files);
    // invarsec 0: the figures change at any time.
    rw.w.u32(0);
    Ok(rw)
}

pub async fn fsinfo(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let t = target!(svc, call, fh(r)?, Shape::Attr);
    let attr = match svc.fs.getattr(t.inode).await {
        Ok(a) => a,
        Err(e) => return Ok(failed(call, (&e).into(), Shape::Attr)),
    };
    let mut rw = ok(call);
    encode_post_op_attr(&mut rw.w, Some(&attr), svc.fsid());
    // rtmax, rtpref, rtmult, wtmax, wtpref, wtmult, dtpref.
    rw.w.u32(IO_BYTES_MAX).u32(IO_BYTES_MAX).u32(4096);
    rw.w.u32(IO_BYTES_MAX).u32(IO_BYTES_MAX).u32(4096);
    rw.w.u32(DIR_BYTES_PREF);
    rw.w.u64(FILE_BYTES_MAX);
    // time_delta: times are kept to the nanosecond.
    rw.w.u32(0).u32(1);
    rw.w.u32(FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME);
    Ok(rw)
}

pub async fn pathconf(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let t = target!(svc, call, fh(r)?, Shape::Attr);
    let attr = match svc.fs.getattr(t.inode).await {
        Ok(a) => a,
        Err(e) => return Ok(failed(call, (&e).into(), Shape::Attr)),
    };
    let mut rw = ok(call);
    encode_post_op_attr(&mut rw.w, Some(&attr), svc.fsid());
    rw.w.u32(LINKS_MAX).u32(NAME_BYTES_MAX as u32);
    // no_trunc, chown_restricted, case_insensitive, case_preserving.
    rw.w.bool(true).bool(true).bool(false).bool(true);
    Ok(rw)
}
