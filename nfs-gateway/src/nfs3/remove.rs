//! REMOVE, RMDIR, RENAME.

use crate::nfs3::types::*;
use crate::nfs3::{dirop, failed, ok, target, Call, Handled, Shape};
use crate::service::Service;
use crate::xdr::Reader;

pub async fn remove(svc: &Service, call: &Call, r: &mut Reader<'_>, want_dir: bool) -> Handled {
    let (dir, name) = dirop(r)?;
    let t = target!(svc, call, dir, Shape::Wcc);
    if t.export.config.read_only {
        return Ok(failed(call, Status::RoFs, Shape::Wcc));
    }
    let done = match svc.fs.remove(t.cred, t.inode, name.to_vec(), want_dir).await {
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

pub async fn rename(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let (from_dir, from_name) = dirop(r)?;
    let (to_dir, to_name) = dirop(r)?;
    let from = target!(svc, call, from_dir, Shape::Wcc2);
    let to = target!(svc, call, to_dir, Shape::Wcc2);
    if from.export.root != to.export.root {
        return Ok(failed(call, Status::XDev, Shape::Wcc2));
    }
    if from.export.config.read_only {
        return Ok(failed(call, Status::RoFs, Shape::Wcc2));
    }
    let result = svc.fs.rename(from.cred, from.inode, from_name.to_vec(), to.inode, to_name.to_vec()).await;
    let done = match result {
        Ok(done) => done,
        Err(e) => return Ok(failed(call, (&e).into(), Shape::Wcc2)),
    };
    if let Err(e) = svc.settle(from.export, done.lsn).await {
        return Ok(failed(call, (&e).into(), Shape::Wcc2));
    }
    let (from_wcc, to_wcc) = done.value;
    let mut rw = ok(call);
    encode_wcc(&mut rw.w, &from_wcc, svc.fsid());
    encode_wcc(&mut rw.w, &to_wcc, svc.fsid());
    Ok(rw)
}
