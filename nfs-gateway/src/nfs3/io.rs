//! READ, WRITE, COMMIT.

use keel_engine::DmaBuf;

use crate::fs::{StableHow, WriteData};
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

/// The arguments of WRITE before its data: handle, offset, count, stable.
fn write_args<'a>(r: &mut Reader<'a>) -> Result<(&'a [u8], u64, usize, StableHow), XdrError> {
    let handle = fh(r)?;
    let offset = r.u64()?;
    let count = r.u32()? as usize;
    let stable = decode_stable(r.u32()?)?;
    Ok((handle, offset, count, stable))
}

pub async fn write(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let (handle, offset, count, stable) = write_args(r)?;
    let data = r.opaque(IO_BYTES_MAX as usize)?;
    let data = data.get(..count).map(|d| WriteData::Bytes(d.to_vec()));
    write_data(svc, call, handle, offset, stable, data).await
}

/// WRITE whose data the connection read apart, into `payload` (see
/// `server::bulk`); `r` holds the arguments up to the data's length.
pub async fn write_payload(svc: &Service, call: &Call, r: &mut Reader<'_>, payload: DmaBuf) -> Handled {
    let (handle, offset, count, stable) = write_args(r)?;
    let len = r.u32()?;
    if len as usize != payload.len() || r.remaining() != 0 {
        return Err(XdrError::BadValue { value: len });
    }
    let data = match count.cmp(&payload.len()) {
        std::cmp::Ordering::Equal => Some(WriteData::Dma(payload)),
        std::cmp::Ordering::Less => Some(WriteData::Bytes(payload[..count].to_vec())),
        std::cmp::Ordering::Greater => None,
    };
    write_data(svc, call, handle, offset, stable, data).await
}

/// Carries out a decoded WRITE; `data` is `None` when the call's count is
/// more than the data it carries.
async fn write_data(
    svc: &Service,
    call: &Call,
    handle: &[u8],
    offset: u64,
    stable: StableHow,
    data: Option<WriteData>,
) -> Handled {
    let t = target!(svc, call, handle, Shape::Wcc);
    if t.export.config.read_only {
        return Ok(failed(call, Status::RoFs, Shape::Wcc));
    }
    let Some(data) = data else { return Ok(failed(call, Status::Inval, Shape::Wcc)) };
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
