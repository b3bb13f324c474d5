//! RPC call and reply headers (RFC 5531 section 9).

use crate::rpc::auth::AuthStat;
use crate::rpc::record::{seal_record, RECORD_MARK_BYTES};
use crate::xdr::{Reader, Writer, XdrError};

pub const RPC_VERSION: u32 = 2;
const MSG_CALL: u32 = 0;
const MSG_REPLY: u32 = 1;
const MSG_ACCEPTED: u32 = 0;
const MSG_DENIED: u32 = 1;
const RPC_MISMATCH: u32 = 0;
const AUTH_ERROR: u32 = 1;
/// The largest credential or verifier body (RFC 5531: 400 bytes).
pub const AUTH_BODY_BYTES_MAX: usize = 400;

pub const AUTH_NONE: u32 = 0;
pub const AUTH_SYS: u32 = 1;

/// A credential or verifier as it travels: a flavor and an opaque body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpaqueAuth<'a> {
    pub flavor: u32,
    pub body: &'a [u8],
}

impl<'a> OpaqueAuth<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, XdrError> {
        let flavor = r.u32()?;
        let body = r.opaque(AUTH_BODY_BYTES_MAX)?;
        Ok(OpaqueAuth { flavor, body })
    }
}

/// The header of a call; the procedure's arguments follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallHeader<'a> {
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_num: u32,
    pub cred: OpaqueAuth<'a>,
    pub verf: OpaqueAuth<'a>,
}

/// Why a message is not a call this server can answer normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not even a transaction id: the only safe answer is to close.
    #[error("message too short for an RPC header")]
    Unreadable,
    /// A reply, or an unknown message type: ignored (RFC 5531 gives no way to
    /// answer it).
    #[error("message {xid:#x} is not a call")]
    NotACall { xid: u32 },
    /// Answered with MSG_DENIED / RPC_MISMATCH.
    #[error("call {xid:#x} uses RPC version {version}")]
    RpcMismatch { xid: u32, version: u32 },
    /// The header itself is malformed after the xid: answered with
    /// GARBAGE_ARGS, the closest reply RFC 5531 offers.
    #[error("call {xid:#x} has a malformed header")]
    Garbage { xid: u32 },
}

impl<'a> CallHeader<'a> {
    /// Decodes the header at the start of `message`; the reader is left at
    /// the procedure's arguments.
    pub fn decode(message: &'a [u8]) -> Result<(CallHeader<'a>, Reader<'a>), HeaderError> {
        let mut r = Reader::new(message);
        let xid = r.u32().map_err(|_| HeaderError::Unreadable)?;
        let garbage = |_| HeaderError::Garbage { xid };
        if r.u32().map_err(|_| HeaderError::NotACall { xid })? != MSG_CALL {
            return Err(HeaderError::NotACall { xid });
        }
        let version = r.u32().map_err(garbage)?;
        if version != RPC_VERSION {
            return Err(HeaderError::RpcMismatch { xid, version });
        }
        let prog = r.u32().map_err(garbage)?;
        let vers = r.u32().map_err(garbage)?;
        let proc_num = r.u32().map_err(garbage)?;
        let cred = OpaqueAuth::decode(&mut r).map_err(garbage)?;
        let verf = OpaqueAuth::decode(&mut r).map_err(garbage)?;
        Ok((CallHeader { xid, prog, vers, proc_num, cred, verf }, r))
    }
}

/// Outcome of an accepted call (RFC 5531 `accept_stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptStat {
    Success,
    ProgUnavail,
    ProgMismatch { low: u32, high: u32 },
    ProcUnavail,
    GarbageArgs,
    SystemErr,
}

/// Builds one reply message, with room for its record mark in front.
#[derive(Debug)]
pub struct ReplyWriter {
    pub w: Writer,
}

fn reply_start(xid: u32) -> Writer {
    let mut w = Writer::with_capacity(256);
    w.fixed(&[0; RECORD_MARK_BYTES]);
    w.u32(xid).u32(MSG_REPLY);
    w
}

impl ReplyWriter {
    /// An accepted reply with `stat`; the caller appends the results after a
    /// `Success`.
    pub fn accepted(xid: u32, stat: AcceptStat) -> ReplyWriter {
        let mut w = reply_start(xid);
        w.u32(MSG_ACCEPTED).u32(AUTH_NONE).opaque(&[]);
        match stat {
            AcceptStat::Success => w.u32(0),
            AcceptStat::ProgUnavail => w.u32(1),
            AcceptStat::ProgMismatch { low, high } => w.u32(2).u32(low).u32(high),
            AcceptStat::ProcUnavail => w.u32(3),
            AcceptStat::GarbageArgs => w.u32(4),
            AcceptStat::SystemErr => w.u32(5),
        };
        ReplyWriter { w }
    }

    /// MSG_DENIED / RPC_MISMATCH: we speak version 2 only.
    pub fn rpc_mismatch(xid: u32) -> ReplyWriter {
        let mut w = reply_start(xid);
        w.u32(MSG_DENIED).u32(RPC_MISMATCH).u32(RPC_VERSION).u32(RPC_VERSION);
        ReplyWriter { w }
    }

    /// MSG_DENIED / AUTH_ERROR.
    pub fn auth_error(xid: u32, stat: AuthStat) -> ReplyWriter {
        let mut w = reply_start(xid);
        w.u32(MSG_DENIED).u32(AUTH_ERROR).u32(stat as u32);
        ReplyWriter { w }
    }

    /// The finished message, record mark included.
    pub fn finish(self) -> Vec<u8> {
        let mut bytes = self.w.into_vec();
        seal_record(&mut bytes);
        bytes
    }
}

/// A decoded reply header, for the client side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyHeader {
    Accepted(AcceptStat),
    RpcMismatch { low: u32, high: u32 },
    AuthError(u32),
}

/// Decodes a reply's header; the reader is left at the results.
pub fn decode_reply(message: &[u8]) -> Result<(u32, ReplyHeader, Reader<'_>), XdrError> {
    let mut r = Reader::new(message);
    let xid = r.u32()?;
    let kind = r.u32()?;
    if kind != MSG_REPLY {
        return Err(XdrError::BadValue { value: kind });
    }
    let header = match r.u32()? {
        MSG_ACCEPTED => {
            OpaqueAuth::decode(&mut r)?;
            let stat = match r.u32()? {
                0 => AcceptStat::Success,
                1 => AcceptStat::ProgUnavail,
                2 => AcceptStat::ProgMismatch { low: r.u32()?, high: r.u32()? },
                3 => AcceptStat::ProcUnavail,
                4 => AcceptStat::GarbageArgs,
                5 => AcceptStat::SystemErr,
                value => return Err(XdrError::BadValue { value }),
            };
            ReplyHeader::Accepted(stat)
        }
        MSG_DENIED => match r.u32()? {
            RPC_MISMATCH => ReplyHeader::RpcMismatch { low: r.u32()?, high: r.u32()? },
            AUTH_ERROR => ReplyHeader::AuthError(r.u32()?),
            value => return Err(XdrError::BadValue { value }),
        },
        value => return Err(XdrError::BadValue { value }),
    };
    Ok((xid, header, r))
}

/// Encodes a call header (client side), with room for the record mark.
pub fn encode_call(xid: u32, prog: u32, vers: u32, proc_num: u32, cred: OpaqueAuth<'_>) -> Writer {
    let mut w = Writer::with_capacity(256);
    w.fixed(&[0; RECORD_MARK_BYTES]);
    w.u32(xid).u32(MSG_CALL).u32(RPC_VERSION).u32(prog).u32(vers).u32(proc_num);
    w.u32(cred.flavor).opaque(cred.body);
    w.u32(AUTH_NONE).opaque(&[]);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_header_round_trips() {
        let mut w = encode_call(42, 100003, 3, 1, OpaqueAuth { flavor: AUTH_NONE, body: &[] });
        w.u32(0xABCD);
        let bytes = w.into_vec();
        let (h, mut args) = CallHeader::decode(&bytes[RECORD_MARK_BYTES..]).unwrap();
        assert_eq!((h.xid, h.prog, h.vers, h.proc_num), (42, 100003, 3, 1));
        assert_eq!(args.u32().unwrap(), 0xABCD);
    }

    #[test]
    fn malformed_headers_are_classified() {
        assert_eq!(CallHeader::decode(&[1, 2]).unwrap_err(), HeaderError::Unreadable);
        assert_eq!(CallHeader::decode(&[0, 0, 0, 9, 0, 0, 0, 1]).unwrap_err(), HeaderError::NotACall { xid: 9 });
        let v3 = [0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 3];
        assert_eq!(CallHeader::decode(&v3).unwrap_err(), HeaderError::RpcMismatch { xid: 9, version: 3 });
        let cut = [0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0];
        assert_eq!(CallHeader::decode(&cut).unwrap_err(), HeaderError::Garbage { xid: 9 });
    }

    #[test]
    fn replies_decode_as_they_were_built() {
        let bytes = ReplyWriter::accepted(7, AcceptStat::ProgMismatch { low: 3, high: 3 }).finish();
        let (xid, header, _) = decode_reply(&bytes[RECORD_MARK_BYTES..]).unwrap();
        assert_eq!((xid, header), (7, ReplyHeader::Accepted(AcceptStat::ProgMismatch { low: 3, high: 3 })));
        let bytes = ReplyWriter::auth_error(8, AuthStat::TooWeak).finish();
        let (_, header, _) = decode_reply(&bytes[RECORD_MARK_BYTES..]).unwrap();
        assert_eq!(header, ReplyHeader::AuthError(5));
    }
}
