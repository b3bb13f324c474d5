//! NFS version 3 (RFC 1813): the 22 procedures, decoded from XDR, carried
//! out on the file system, encoded back. Each procedure checks its handle
//! against the exports on every call (`Service::resolve`).

mod attrs;
mod dir;
mod info;
mod io;
mod names;
mod remove;
pub mod types;

use std::net::IpAddr;

use keel_engine::DmaBuf;

use crate::rpc::message::{AcceptStat, ReplyWriter};
use crate::rpc::Credential;
use crate::service::{Refusal, Service};
use crate::xdr::{Reader, Writer, XdrError};
use types::*;

/// One call as the procedures see it.
#[derive(Debug)]
pub struct Call {
    pub xid: u32,
    pub proc_num: u32,
    pub peer: IpAddr,
    pub credential: Credential,
}

/// What a failed procedure carries after its status (RFC 1813 `resfail`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Nothing (GETATTR).
    Nothing,
    /// One `post_op_attr`.
    Attr,
    /// One `wcc_data`.
    Wcc,
    /// Two `wcc_data` (RENAME).
    Wcc2,
    /// A `post_op_attr` and a `wcc_data` (LINK).
    AttrWcc,
}

pub(crate) type Handled = Result<ReplyWriter, XdrError>;

/// A success reply with its status written.
pub(crate) fn ok(call: &Call) -> ReplyWriter {
    let mut rw = ReplyWriter::accepted(call.xid, AcceptStat::Success);
    rw.w.u32(Status::Ok as u32);
    rw
}

/// A failure reply: the status and empty attributes of the procedure's shape.
pub(crate) fn failed(call: &Call, status: Status, shape: Shape) -> ReplyWriter {
    debug_assert_ne!(status, Status::Ok);
    let mut rw = ReplyWriter::accepted(call.xid, AcceptStat::Success);
    rw.w.u32(status as u32);
    write_empty(&mut rw.w, shape);
    rw
}

fn write_empty(w: &mut Writer, shape: Shape) {
    match shape {
        Shape::Nothing => {}
        Shape::Attr => {
            w.bool(false);
        }
        Shape::Wcc => encode_no_wcc(w),
        Shape::Wcc2 => {
            encode_no_wcc(w);
            encode_no_wcc(w);
        }
        Shape::AttrWcc => {
            w.bool(false);
            encode_no_wcc(w);
        }
    }
}

pub(crate) fn refused(call: &Call, refusal: Refusal, shape: Shape) -> ReplyWriter {
    match refusal {
        Refusal::Status(status) => failed(call, status, shape),
        Refusal::Auth(stat) => ReplyWriter::auth_error(call.xid, stat),
    }
}

/// Resolves a handle or returns the refusal reply from the procedure.
macro_rules! target {
    ($svc:expr, $call:expr, $fh:expr, $shape:expr) => {
        match $svc.resolve($fh, $call.peer, &$call.credential) {
            Ok(t) => t,
            Err(refusal) => return Ok($crate::nfs3::refused($call, refusal, $shape)),
        }
    };
}
pub(crate) use target;

/// Decodes a file handle argument.
pub(crate) fn fh<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], XdrError> {
    r.opaque(crate::handle::NFS3_FHSIZE)
}

/// Decodes `diropargs3`.
pub(crate) fn dirop<'a>(r: &mut Reader<'a>) -> Result<(&'a [u8], &'a [u8]), XdrError> {
    Ok((fh(r)?, r.string(NAME_WIRE_BYTES_MAX)?))
}

/// Runs NFS procedure `call.proc_num` with arguments in `r`.
pub async fn dispatch(svc: &Service, call: &Call, r: &mut Reader<'_>) -> ReplyWriter {
    let handled = match call.proc_num {
        PROC_NULL => Ok(ReplyWriter::accepted(call.xid, AcceptStat::Success)),
        PROC_GETATTR => attrs::getattr(svc, call, r).await,
        PROC_SETATTR => attrs::setattr(svc, call, r).await,
        PROC_LOOKUP => names::lookup(svc, call, r).await,
        PROC_ACCESS => attrs::access(svc, call, r).await,
        PROC_READLINK => attrs::readlink(svc, call, r).await,
        PROC_READ => io::read(svc, call, r).await,
        PROC_WRITE => io::write(svc, call, r).await,
        PROC_CREATE => names::create(svc, call, r).await,
        PROC_MKDIR => names::mkdir(svc, call, r).await,
        PROC_SYMLINK => names::symlink(svc, call, r).await,
        PROC_MKNOD => names::mknod(svc, call, r).await,
        PROC_REMOVE => remove::remove(svc, call, r, false).await,
        PROC_RMDIR => remove::remove(svc, call, r, true).await,
        PROC_RENAME => remove::rename(svc, call, r).await,
        PROC_LINK => names::link(svc, call, r).await,
        PROC_READDIR => dir::readdir(svc, call, r).await,
        PROC_READDIRPLUS => dir::readdirplus(svc, call, r).await,
        PROC_FSSTAT => info::fsstat(svc, call, r).await,
        PROC_FSINFO => info::fsinfo(svc, call, r).await,
        PROC_PATHCONF => info::pathconf(svc, call, r).await,
        PROC_COMMIT => io::commit(svc, call, r).await,
        _ => return ReplyWriter::accepted(call.xid, AcceptStat::ProcUnavail),
    };
    finish(call, handled)
}

/// Runs a WRITE whose data arrived apart from its record, in `payload`.
pub async fn dispatch_write_payload(svc: &Service, call: &Call, r: &mut Reader<'_>, payload: DmaBuf) -> ReplyWriter {
    finish(call, io::write_payload(svc, call, r, payload).await)
}

/// The reply of a procedure, or GARBAGE_ARGS.
fn finish(call: &Call, handled: Handled) -> ReplyWriter {
    match handled {
        Ok(reply) => reply,
        Err(e) => {
            tracing::debug!(xid = call.xid, proc_num = call.proc_num, error = %e, "garbage arguments");
            ReplyWriter::accepted(call.xid, AcceptStat::GarbageArgs)
        }
    }
}
