//! GETATTR, SETATTR, ACCESS, READLINK.

use crate::fs::perm::{MAY_EXEC, MAY_READ, MAY_WRITE};
use crate::fs::FileType;
use crate::nfs3::types::*;
use crate::nfs3::{failed, fh, ok, target, Call, Handled, Shape};
use crate::service::Service;
use crate::xdr::Reader;

pub async fn getattr(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let t = target!(svc, call, fh(r)?, Shape::Nothing);
    Ok(match svc.fs.getattr(t.inode).await {
        Ok(attr) => {
            let mut rw = ok(call);
            encode_fattr(&mut rw.w, &attr, svc.fsid());
            rw
        }
        Err(e) => failed(call, (&e).into(), Shape::Nothing),
    })
}

pub async fn setattr(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let handle = fh(r)?;
    let set = decode_sattr(r)?;
    let guard = r.optional(decode_time)?;
    let t = target!(svc, call, handle, Shape::Wcc);
    if t.export.config.read_only {
        return Ok(failed(call, Status::RoFs, Shape::Wcc));
    }
    let done = match svc.fs.setattr(t.cred, t.inode, set, guard).await {
        Ok(done) => done,
        Err(e) => return Ok(failed(call, (&e).into(), Shape::Wcc)),
    };
    if let Err(e) = svc.settle(t.export, done.lsn).await {
        return Ok(failed(call, (&e).into(), Shape::Wcc));
    }
    let mut rw = ok(call);
    encode_wcc(&mut rw.w, &done.value, svc.fsid());
    Ok(rw)
}

const ACCESS3_READ: u32 = 0x01;
const ACCESS3_LOOKUP: u32 = 0x02;
const ACCESS3_MODIFY: u32 = 0x04;
const ACCESS3_EXTEND: u32 = 0x08;
const ACCESS3_DELETE: u32 = 0x10;
const ACCESS3_EXECUTE: u32 = 0x20;

pub async fn access(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let handle = fh(r)?;
    let asked = r.u32()?;
    let t = target!(svc, call, handle, Shape::Attr);
    let read_only = t.export.config.read_only;
    let (bits, attr) = match svc.fs.access(t.cred, t.inode).await {
        Ok(x) => x,
        Err(e) => return Ok(failed(call, (&e).into(), Shape::Attr)),
    };
    let is_dir = attr.ftype == FileType::Directory;
    let mut granted = 0;
    if bits & MAY_READ != 0 {
        granted |= ACCESS3_READ;
    }
    if bits & MAY_WRITE != 0 && !read_only {
        granted |= ACCESS3_MODIFY | ACCESS3_EXTEND;
        if is_dir {
            granted |= ACCESS3_DELETE;
        }
    }
    if bits & MAY_EXEC != 0 {
        granted |= if is_dir { ACCESS3_LOOKUP } else { ACCESS3_EXECUTE };
    }
    let mut rw = ok(call);
    encode_post_op_attr(&mut rw.w, Some(&attr), svc.fsid());
    rw.w.u32(granted & asked);
    Ok(rw)
}

pub async fn readlink(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let t = target!(svc, call, fh(r)?, Shape::Attr);
    Ok(match svc.fs.readlink(t.inode).await {
        Ok((target, attr)) => {
            let mut rw = ok(call);
            encode_post_op_attr(&mut rw.w, Some(&attr), svc.fsid());
            rw.w.string(&target);
            rw
        }
        Err(e) => failed(call, (&e).into(), Shape::Attr),
    })
}
