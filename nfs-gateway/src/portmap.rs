//! A minimal portmapper (program 100000 version 2, RFC 1833): enough for
//! clients that look ports up instead of being given them. It knows only
//! this gateway's own services and refuses registrations.

use crate::mount::{MOUNT_PROGRAM, MOUNT_V1, MOUNT_V3};
use crate::nfs3::types::{NFS_PROGRAM, NFS_V3};
use crate::rpc::message::{AcceptStat, ReplyWriter};
use crate::service::Ports;
use crate::xdr::{Reader, XdrError};

pub const PORTMAP_PROGRAM: u32 = 100_000;
pub const PORTMAP_V2: u32 = 2;
pub const IPPROTO_TCP: u32 = 6;

/// (program, version, protocol, port) of everything served.
fn mappings(ports: &Ports) -> Vec<(u32, u32, u32, u32)> {
    let mut m = vec![
        (NFS_PROGRAM, NFS_V3, IPPROTO_TCP, u32::from(ports.nfs)),
        (MOUNT_PROGRAM, MOUNT_V1, IPPROTO_TCP, u32::from(ports.mount)),
        (MOUNT_PROGRAM, MOUNT_V3, IPPROTO_TCP, u32::from(ports.mount)),
    ];
    if let Some(p) = ports.portmap {
        m.push((PORTMAP_PROGRAM, PORTMAP_V2, IPPROTO_TCP, u32::from(p)));
    }
    m
}

pub fn dispatch(ports: &Ports, xid: u32, proc_num: u32, r: &mut Reader<'_>) -> ReplyWriter {
    let ok = || ReplyWriter::accepted(xid, AcceptStat::Success);
    let result: Result<ReplyWriter, XdrError> = match proc_num {
        0 => Ok(ok()),
        // SET and UNSET: registrations are refused (false).
        1 | 2 => (|| {
            for _ in 0..4 {
                r.u32()?;
            }
            let mut rw = ok();
            rw.w.bool(false);
            Ok(rw)
        })(),
        3 => (|| {
            let (prog, vers, prot) = (r.u32()?, r.u32()?, r.u32()?);
            let _port = r.u32()?;
            let port = mappings(ports)
                .into_iter()
                .find(|&(p, v, t, _)| p == prog && v == vers && t == prot)
                .map_or(0, |m| m.3);
            let mut rw = ok();
            rw.w.u32(port);
            Ok(rw)
        })(),
        4 => {
            let mut rw = ok();
            for (p, v, t, port) in mappings(ports) {
                rw.w.bool(true).u32(p).u32(v).u32(t).u32(port);
            }
            rw.w.bool(false);
            Ok(rw)
        }
        _ => return ReplyWriter::accepted(xid, AcceptStat::ProcUnavail),
    };
    result.unwrap_or_else(|_| ReplyWriter::accepted(xid, AcceptStat::GarbageArgs))
}
