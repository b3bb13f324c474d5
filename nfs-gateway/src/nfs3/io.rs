//! READ, WRITE, COMMIT.

use crate::fs::StableHow;
use crate::nfs3::types::*;
use crate::nfs3::{failed, fh, ok, target, Call, Handled, Shape};
use crate::service::Service;
use crate::xdr::{Reader, XdrError};

pub async fn read(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let handle = fh(r)?;
    let offset = r.u64()?;
    let count = r.u32()?.min(IO_BYTES_MAX);
    let t = target!(svc, call, handle, Shape::Attr);
    Ok(match svc.fs.read(t.cred, t.inode, offset, count).await {
        Ok(got) => {
            let mut rw = ok(call);
            encode_post_op_attr(&mut rw.w, Some(&got.attr), svc.fsid());
            rw.w.u32(got.data.len() as u32).bool(got.eof).opaque(&got.data);
            rw
        }
        Err(e) => failed(call, (&e).into(), Shape::Attr),
    })
}

fn decode_stable(v: u32) -> Result<StableHow, XdrError> {
    match v {
        0 => Ok(StableHow::Unstable),
        1 => Ok(StableHow::DataSync),
        2 => Ok(StableHow::FileSync),
        value => Err(XdrError::BadValue { value }),
    }
}

pub async fn write(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let handle = fh(r)?;
    let offset = r.u64()?;
    let count = r.u32()? as usize;
    let stable = decode_stable(r.u32()?)?;
    let data = r.opaque(IO_BYTES_MAX as usize)?;
    let t = target!(svc, call, handle, Shape::Wcc);
    if t.export.config.read_only {
        return Ok(failed(call, Status::RoFs, Shape::Wcc));
    }
    if count > data.len() {
        return Ok(failed(call, Status::Inval, Shape::Wcc));
    }
    let data = data[..count].to_vec();
    Ok(match svc.fs.write(t.cred, t.inode, offset, data, stable).await {
        Ok(done) => {
            let mut rw = ok(call);
            encode_wcc(&mut rw.w, &done.wcc, svc.fsid());
            rw.w.u32(done.count).u32(done.committed as u32).fixed(&done.verifier);
            rw
        }
        Err(e) => failed(call, (&e).into(), Shape::Wcc),
    })
}

pub async fn commit(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let handle = fh(r)?;
    let _offset = r.u64()?;
    let _count = r.u32()?;
    let t = target!(svc, call, handle, Shape::Wcc);
    Ok(match svc.fs.commit(t.inode).await {
        Ok((wcc, verifier)) => {
            let mut rw = ok(call);
            encode_wcc(&mut rw.w, &wcc, svc.fsid());
            rw.w.fixed(&verifier);
            rw
        }
        Err(e) => failed(call, (&e).into(), Shape::Wcc),
    })
}
