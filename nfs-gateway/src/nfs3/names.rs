//! LOOKUP, CREATE, MKDIR, SYMLINK, MKNOD, LINK.

use crate::fs::{CreateMode, FileType, Inode, NodeSpec, Wcc};
use crate::nfs3::types::*;
use crate::nfs3::{dirop, failed, fh, ok, target, Call, Handled, Shape};
use crate::service::{Service, Target};
use crate::xdr::{Reader, XdrError};

pub async fn lookup(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let (dir, name) = dirop(r)?;
    let t = target!(svc, call, dir, Shape::Attr);
    // ".." of an export's root stays inside the export.
    let name = if t.inode == t.export.root && name == b".." { &b"."[..] } else { name };
    Ok(match svc.fs.lookup(t.cred, t.inode, name.to_vec()).await {
        Ok((child, dir_attr)) => {
            let mut rw = ok(call);
            rw.w.opaque(&svc.handle_of(t.export, &child));
            encode_post_op_attr(&mut rw.w, Some(&child), svc.fsid());
            encode_post_op_attr(&mut rw.w, Some(&dir_attr), svc.fsid());
            rw
        }
        Err(e) => failed(call, (&e).into(), Shape::Attr),
    })
}

/// Makes `name` in the directory `t` names and answers with the new
/// handle, its attributes and the directory's WCC.
async fn make(svc: &Service, call: &Call, t: Target<'_>, name: &[u8], spec: NodeSpec, mode: CreateMode) -> Handled {
    if t.export.config.read_only {
        return Ok(failed(call, Status::RoFs, Shape::Wcc));
    }
    let result = svc.fs.make(t.cred, t.inode, name.to_vec(), spec, mode).await;
    let done = match result {
        Ok(done) => done,
        Err(e) => return Ok(failed(call, (&e).into(), Shape::Wcc)),
    };
    if let Err(e) = svc.settle(t.export, done.lsn).await {
        return Ok(failed(call, (&e).into(), Shape::Wcc));
    }
    let (child, wcc): (Inode, Wcc) = done.value;
    let mut rw = ok(call);
    rw.w.bool(true).opaque(&svc.handle_of(t.export, &child));
    encode_post_op_attr(&mut rw.w, Some(&child), svc.fsid());
    encode_wcc(&mut rw.w, &wcc, svc.fsid());
    Ok(rw)
}

pub async fn create(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let (dir, name) = dirop(r)?;
    let (mode, attrs) = match r.u32()? {
        0 => (CreateMode::Unchecked, decode_sattr(r)?),
        1 => (CreateMode::Guarded, decode_sattr(r)?),
        2 => (CreateMode::Exclusive(r.array::<8>()?), Default::default()),
        value => return Err(XdrError::BadValue { value }),
    };
    let t = target!(svc, call, dir, Shape::Wcc);
    make(svc, call, t, name, NodeSpec::of(FileType::Regular, attrs), mode).await
}

pub async fn mkdir(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let (dir, name) = dirop(r)?;
    let attrs = decode_sattr(r)?;
    let t = target!(svc, call, dir, Shape::Wcc);
    make(svc, call, t, name, NodeSpec::of(FileType::Directory, attrs), CreateMode::Guarded).await
}

pub async fn symlink(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let (dir, name) = dirop(r)?;
    let attrs = decode_sattr(r)?;
    let path = r.string(PATH_WIRE_BYTES_MAX + 1)?;
    let t = target!(svc, call, dir, Shape::Wcc);
    if path.is_empty() {
        return Ok(failed(call, Status::Inval, Shape::Wcc));
    }
    let spec = NodeSpec { target: path.to_vec(), ..NodeSpec::of(FileType::Symlink, attrs) };
    make(svc, call, t, name, spec, CreateMode::Guarded).await
}

pub async fn mknod(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let (dir, name) = dirop(r)?;
    let ftype = r.u32()?;
    let spec = match FileType::from_u32(ftype) {
        Some(ft @ (FileType::Character | FileType::Block)) => {
            let attrs = decode_sattr(r)?;
            let rdev = (r.u32()?, r.u32()?);
            NodeSpec { rdev, ..NodeSpec::of(ft, attrs) }
        }
        Some(ft @ (FileType::Socket | FileType::Fifo)) => NodeSpec::of(ft, decode_sattr(r)?),
        Some(_) => {
            let _checked = target!(svc, call, dir, Shape::Wcc);
            return Ok(failed(call, Status::BadType, Shape::Wcc));
        }
        None => return Err(XdrError::BadValue { value: ftype }),
    };
    let t = target!(svc, call, dir, Shape::Wcc);
    make(svc, call, t, name, spec, CreateMode::Guarded).await
}

pub async fn link(svc: &Service, call: &Call, r: &mut Reader<'_>) -> Handled {
    let file = fh(r)?;
    let (dir, name) = dirop(r)?;
    let f = target!(svc, call, file, Shape::AttrWcc);
    let d = target!(svc, call, dir, Shape::AttrWcc);
    if f.export.root != d.export.root {
        return Ok(failed(call, Status::XDev, Shape::AttrWcc));
    }
    if d.export.config.read_only {
        return Ok(failed(call, Status::RoFs, Shape::AttrWcc));
    }
    let done = match svc.fs.link(d.cred, f.inode, d.inode, name.to_vec()).await {
        Ok(done) => done,
        Err(e) => return Ok(failed(call, (&e).into(), Shape::AttrWcc)),
    };
    if let Err(e) = svc.settle(d.export, done.lsn).await {
        return Ok(failed(call, Status::from(&e), Shape::AttrWcc));
    }
    let (attr, wcc) = done.value;
    let mut rw = ok(call);
    encode_post_op_attr(&mut rw.w, Some(&attr), svc.fsid());
    encode_wcc(&mut rw.w, &wcc, svc.fsid());
    Ok(rw)
}
