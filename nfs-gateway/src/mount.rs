//! MOUNT versions 1 and 3 (RFC 1813 appendix I): the path-to-handle service.
//! Version 1 differs only in MNT's reply (a fixed 32-byte handle, which is
//! exactly the size of ours), so both are served.

use std::net::IpAddr;

use crate::export::Export;
use crate::fs::{FsError, Inode};
use crate::nfs3::types::NAME_WIRE_BYTES_MAX;
use crate::rpc::message::{AcceptStat, ReplyWriter, AUTH_NONE, AUTH_SYS};
use crate::rpc::Credential;
use crate::service::{Service, MOUNT_TABLE_MAX};
use crate::xdr::{Reader, XdrError};

pub const MOUNT_PROGRAM: u32 = 100_005;
pub const MOUNT_V1: u32 = 1;
pub const MOUNT_V3: u32 = 3;
/// MNTPATHLEN.
pub const MOUNT_PATH_BYTES_MAX: usize = 1024;
/// Path components MNT walks below an export at most.
const MOUNT_DEPTH_MAX: usize = 256;

const MNT3_OK: u32 = 0;
const MNT3ERR_NOENT: u32 = 2;
const MNT3ERR_ACCES: u32 = 13;
const MNT3ERR_NOTDIR: u32 = 20;
const MNT3ERR_INVAL: u32 = 22;
const MNT3ERR_NAMETOOLONG: u32 = 63;
const MNT3ERR_SERVERFAULT: u32 = 10006;

/// A MOUNT call.
#[derive(Debug)]
pub struct MountCall {
    pub xid: u32,
    pub vers: u32,
    pub proc_num: u32,
    pub peer: IpAddr,
    pub credential: Credential,
}

pub async fn dispatch(svc: &Service, call: &MountCall, r: &mut Reader<'_>) -> ReplyWriter {
    let result = match call.proc_num {
        0 => Ok(ReplyWriter::accepted(call.xid, AcceptStat::Success)),
        1 => mnt(svc, call, r).await,
        2 => Ok(dump(svc, call)),
        3 => umnt(svc, call, r),
        4 => Ok(umntall(svc, call)),
        5 => Ok(export_list(svc, call)),
        _ => return ReplyWriter::accepted(call.xid, AcceptStat::ProcUnavail),
    };
    result.unwrap_or_else(|_| ReplyWriter::accepted(call.xid, AcceptStat::GarbageArgs))
}

fn status_only(call: &MountCall, status: u32) -> ReplyWriter {
    let mut rw = ReplyWriter::accepted(call.xid, AcceptStat::Success);
    rw.w.u32(status);
    rw
}

/// The export `path` is in (the longest exported prefix) and the path's
/// components below it.
fn find_export<'a>(svc: &'a Service, path: &str) -> Option<(&'a Export, Vec<String>)> {
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    svc.exports
        .iter()
        .filter_map(|e| {
            let base = e.config.path.as_str();
            let rest = if base == "/" { path.strip_prefix('/')? } else { path.strip_prefix(base)? };
            let rest = if base == "/" || rest.is_empty() { rest } else { rest.strip_prefix('/')? };
            Some((e, rest.split('/').filter(|c| !c.is_empty()).map(str::to_owned).collect::<Vec<_>>()))
        })
        .max_by_key(|(e, _)| e.config.path.len())
}

async fn mnt(svc: &Service, call: &MountCall, r: &mut Reader<'_>) -> Result<ReplyWriter, XdrError> {
    let raw = r.string(MOUNT_PATH_BYTES_MAX + NAME_WIRE_BYTES_MAX)?;
    if raw.len() > MOUNT_PATH_BYTES_MAX {
        return Ok(status_only(call, MNT3ERR_NAMETOOLONG));
    }
    let Ok(path) = std::str::from_utf8(raw) else { return Ok(status_only(call, MNT3ERR_NOENT)) };
    // Some clients (libnfs for a file in the root) ask for "": the root.
    let path = if path.is_empty() { "/" } else { path };
    if !path.starts_with('/') {
        return Ok(status_only(call, MNT3ERR_INVAL));
    }
    let Some((export, rest)) = find_export(svc, path) else { return Ok(status_only(call, MNT3ERR_NOENT)) };
    if !export.allows(call.peer) || rest.len() > MOUNT_DEPTH_MAX {
        return Ok(status_only(call, MNT3ERR_ACCES));
    }
    let Some(cred) = export.cred(&call.credential) else { return Ok(status_only(call, MNT3ERR_ACCES)) };
    let inode = match walk(svc, export, rest, cred).await {
        Ok(inode) => inode,
        Err(status) => return Ok(status_only(call, status)),
    };
    let handle = svc.handle_of(export, &inode);
    note_mount(svc, call.peer, path);
    let mut rw = status_only(call, MNT3_OK);
    if call.vers == MOUNT_V1 {
        rw.w.fixed(&handle);
        return Ok(rw);
    }
    rw.w.opaque(&handle);
    if export.config.allow_auth_none {
        rw.w.u32(2).u32(AUTH_SYS).u32(AUTH_NONE);
    } else {
        rw.w.u32(1).u32(AUTH_SYS);
    }
    Ok(rw)
}

/// Looks `rest` up below the export's root, as the caller.
async fn walk(svc: &Service, export: &Export, rest: Vec<String>, cred: crate::fs::Cred) -> Result<Inode, u32> {
    let mut inode = svc.fs.getattr(export.root).await.map_err(|_| MNT3ERR_SERVERFAULT)?;
    for name in rest {
        let r = crate::fs::InodeRef { ino: inode.ino, generation: inode.generation };
        inode = match svc.fs.lookup(cred.clone(), r, name.into_bytes()).await {
            Ok((child, _)) => child,
            Err(FsError::NoEnt) => return Err(MNT3ERR_NOENT),
            Err(FsError::NotDir) => return Err(MNT3ERR_NOTDIR),
            Err(FsError::Access) => return Err(MNT3ERR_ACCES),
            Err(FsError::NameTooLong) => return Err(MNT3ERR_NAMETOOLONG),
            Err(_) => return Err(MNT3ERR_SERVERFAULT),
        };
    }
    if !inode.is_dir() {
        return Err(MNT3ERR_NOTDIR);
    }
    Ok(inode)
}

fn note_mount(svc: &Service, peer: IpAddr, path: &str) {
    let mut mounts = svc.mounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if mounts.len() < MOUNT_TABLE_MAX {
        mounts.insert((peer, path.to_owned()));
    }
}

fn dump(svc: &Service, call: &MountCall) -> ReplyWriter {
    let mut rw = ReplyWriter::accepted(call.xid, AcceptStat::Success);
    let mounts = svc.mounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (host, path) in mounts.iter() {
        rw.w.bool(true).string(host.to_string().as_bytes()).string(path.as_bytes());
    }
    rw.w.bool(false);
    rw
}

fn umnt(svc: &Service, call: &MountCall, r: &mut Reader<'_>) -> Result<ReplyWriter, XdrError> {
    let path = r.string(MOUNT_PATH_BYTES_MAX)?;
    let path = String::from_utf8_lossy(path).into_owned();
    svc.mounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&(call.peer, path));
    Ok(ReplyWriter::accepted(call.xid, AcceptStat::Success))
}

fn umntall(svc: &Service, call: &MountCall) -> ReplyWriter {
    svc.mounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|(host, _)| *host != call.peer);
    ReplyWriter::accepted(call.xid, AcceptStat::Success)
}

fn export_list(svc: &Service, call: &MountCall) -> ReplyWriter {
    let mut rw = ReplyWriter::accepted(call.xid, AcceptStat::Success);
    for e in &svc.exports {
        rw.w.bool(true).string(e.config.path.as_bytes());
        for c in &e.config.clients {
            let name = match c {
                crate::export::ClientMatch::Any => "*".to_owned(),
                crate::export::ClientMatch::Net { addr, prefix_bits } => {
                    let full = if addr.is_ipv4() { 32 } else { 128 };
                    if *prefix_bits == full {
                        addr.to_string()
                    } else {
                        format!("{addr}/{prefix_bits}")
                    }
                }
            };
            rw.w.bool(true).string(name.as_bytes());
        }
        rw.w.bool(false);
    }
    rw.w.bool(false);
    rw
}
