//! From a received record to a reply: the RPC header, the credential, the
//! program, the duplicate-request cache, the procedure.

use std::net::IpAddr;
use std::sync::Arc;

use keel_engine::DmaBuf;

use crate::mount::{self, MountCall, MOUNT_PROGRAM, MOUNT_V1, MOUNT_V3};
use crate::nfs3::types::{is_non_idempotent, NFS_PROGRAM, NFS_V3, PROC_WRITE};
use crate::nfs3::{self, Call};
use crate::portmap::{self, PORTMAP_PROGRAM, PORTMAP_V2};
use crate::rpc::message::{AcceptStat, CallHeader, HeaderError, ReplyWriter};
use crate::rpc::record::Record;
use crate::rpc::{Credential, DrcKey, DrcLookup};
use crate::service::Service;

/// What to do after a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Reply(Vec<u8>),
    /// Nothing to send (not a call, or a duplicate still executing).
    Silent,
    /// The stream cannot be trusted any more: close it.
    Close,
}

pub async fn dispatch(svc: &Service, record: &[u8], peer: IpAddr) -> Outcome {
    dispatch_with(svc, record, None, peer).await
}

/// [`dispatch`] for a record as the deframer hands it out: a payload kept
/// apart goes to WRITE as it is; any other call gets its bytes joined.
pub async fn dispatch_record(svc: &Service, record: Record, peer: IpAddr) -> Outcome {
    let Record { head, payload } = record;
    match payload {
        None => dispatch_with(svc, &head, None, peer).await,
        Some(payload) if is_nfs_write(&head) => dispatch_with(svc, &head, Some(payload), peer).await,
        Some(payload) => {
            let bytes = Record { head, payload: Some(payload) }.into_bytes();
            dispatch_with(svc, &bytes, None, peer).await
        }
    }
}

fn is_nfs_write(record: &[u8]) -> bool {
    CallHeader::decode(record).is_ok_and(|(h, _)| (h.prog, h.vers, h.proc_num) == (NFS_PROGRAM, NFS_V3, PROC_WRITE))
}

/// `payload`: a WRITE's data kept apart from `record` (only for NFS WRITE).
async fn dispatch_with(svc: &Service, record: &[u8], payload: Option<DmaBuf>, peer: IpAddr) -> Outcome {
    let (header, mut args) = match CallHeader::decode(record) {
        Ok(x) => x,
        Err(HeaderError::Unreadable) => return Outcome::Close,
        Err(HeaderError::NotACall { .. }) => return Outcome::Silent,
        Err(HeaderError::RpcMismatch { xid, .. }) => return Outcome::Reply(ReplyWriter::rpc_mismatch(xid).finish()),
        Err(HeaderError::Garbage { xid }) => {
            return Outcome::Reply(ReplyWriter::accepted(xid, AcceptStat::GarbageArgs).finish())
        }
    };
    let xid = header.xid;
    let credential = match Credential::decode(header.cred) {
        Ok(c) => c,
        Err(stat) => return Outcome::Reply(ReplyWriter::auth_error(xid, stat).finish()),
    };
    let reply = match (header.prog, header.vers) {
        (NFS_PROGRAM, NFS_V3) => {
            let call = Call { xid, proc_num: header.proc_num, peer, credential };
            if is_non_idempotent(call.proc_num) {
                return with_drc(svc, &header, peer, args.rest(), &call).await;
            }
            match payload {
                Some(payload) => nfs3::dispatch_write_payload(svc, &call, &mut args, payload).await,
                None => nfs3::dispatch(svc, &call, &mut args).await,
            }
        }
        (NFS_PROGRAM, _) => ReplyWriter::accepted(xid, AcceptStat::ProgMismatch { low: NFS_V3, high: NFS_V3 }),
        (MOUNT_PROGRAM, MOUNT_V1 | MOUNT_V3) => {
            let call = MountCall { xid, vers: header.vers, proc_num: header.proc_num, peer, credential };
            mount::dispatch(svc, &call, &mut args).await
        }
        (MOUNT_PROGRAM, _) => ReplyWriter::accepted(xid, AcceptStat::ProgMismatch { low: MOUNT_V1, high: MOUNT_V3 }),
        (PORTMAP_PROGRAM, PORTMAP_V2) if svc.ports.portmap.is_some() => {
            portmap::dispatch(&svc.ports, xid, header.proc_num, &mut args)
        }
        (PORTMAP_PROGRAM, _) if svc.ports.portmap.is_some() => {
            ReplyWriter::accepted(xid, AcceptStat::ProgMismatch { low: PORTMAP_V2, high: PORTMAP_V2 })
        }
        _ => ReplyWriter::accepted(xid, AcceptStat::ProgUnavail),
    };
    Outcome::Reply(reply.finish())
}

/// Runs a non-idempotent call through the duplicate-request cache.
async fn with_drc(svc: &Service, header: &CallHeader<'_>, peer: IpAddr, args: &[u8], call: &Call) -> Outcome {
    let key = DrcKey {
        client: peer,
        xid: header.xid,
        prog: header.prog,
        vers: header.vers,
        proc_num: header.proc_num,
        args_crc32c: crc32c::crc32c(args),
    };
    match svc.drc.begin(key) {
        DrcLookup::InProgress => return Outcome::Silent,
        DrcLookup::Replay(reply) => {
            tracing::debug!(xid = header.xid, "replaying a cached reply to a retransmission");
            return Outcome::Reply(reply.as_ref().clone());
        }
        DrcLookup::New => {}
    }
    let pending = Pending { svc, key, finished: false };
    let mut r = crate::xdr::Reader::new(args);
    let reply = nfs3::dispatch(svc, call, &mut r).await.finish();
    pending.finish(&reply);
    Outcome::Reply(reply)
}

/// A call marked in progress in the cache; forgotten again if it never
/// finishes (its task was cancelled), so a retransmission is executed.
struct Pending<'a> {
    svc: &'a Service,
    key: DrcKey,
    finished: bool,
}

impl Pending<'_> {
    fn finish(mut self, reply: &[u8]) {
        self.svc.drc.finish(self.key, Arc::new(reply.to_vec()));
        self.finished = true;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.svc.drc.abandon(self.key);
        }
    }
}
