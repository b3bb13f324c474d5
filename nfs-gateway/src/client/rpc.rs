//! A blocking ONC RPC client over TCP, for tests and load generators: one
//! connection, calls sent and replies matched by xid, several calls may be
//! outstanding at once (pipelining, as kernel clients do).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::rpc::auth::AuthSys;
use crate::rpc::message::{decode_reply, encode_call, AcceptStat, OpaqueAuth, ReplyHeader, AUTH_NONE, AUTH_SYS};
use crate::rpc::record::{seal_record, RECORD_MARK_BYTES};
use crate::rpc::Deframer;
use crate::xdr::{Reader, XdrError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("RPC refused the call: {0:?}")]
    Rpc(ReplyHeader),
    #[error("reply does not decode: {0}")]
    Decode(#[from] XdrError),
    #[error("NFS status {0:?}")]
    Nfs(crate::nfs3::types::Status),
    #[error("MOUNT status {0}")]
    Mount(u32),
    #[error("bad reply record: {0}")]
    Record(#[from] crate::rpc::RecordError),
}

/// Who the calls claim to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Sys { uid: u32, gid: u32, gids: Vec<u32> },
}

impl Auth {
    pub fn root() -> Auth {
        Auth::Sys { uid: 0, gid: 0, gids: Vec::new() }
    }

    fn body(&self) -> (u32, Vec<u8>) {
        match self {
            Auth::None => (AUTH_NONE, Vec::new()),
            Auth::Sys { uid, gid, gids } => {
                let sys = AuthSys {
                    stamp: 0,
                    machine_name: b"keel-client".to_vec(),
                    uid: *uid,
                    gid: *gid,
                    gids: gids.clone(),
                };
                (AUTH_SYS, sys.encode())
            }
        }
    }
}

/// One RPC connection.
#[derive(Debug)]
pub struct RpcClient {
    stream: TcpStream,
    deframer: Deframer,
    next_xid: u32,
    pub auth: Auth,
    /// Replies that arrived while waiting for another xid.
    early: HashMap<u32, Vec<u8>>,
}

impl RpcClient {
    pub fn connect(addr: SocketAddr, auth: Auth) -> Result<RpcClient, ClientError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        // xids differ between connections so that a server-side cache keyed
        // by client address cannot mix two clients on one host.
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let next_xid = seed.subsec_nanos() ^ (std::process::id() << 16);
        Ok(RpcClient { stream, deframer: Deframer::new(64 << 20), next_xid, auth, early: HashMap::new() })
    }

    /// Sends a call without waiting; returns its xid.
    pub fn send(&mut self, prog: u32, vers: u32, proc_num: u32, args: &[u8]) -> Result<u32, ClientError> {
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1);
        self.send_as(xid, prog, vers, proc_num, args)
    }

    /// Sends a call with a chosen xid (a retransmission reuses its xid).
    pub fn send_as(&mut self, xid: u32, prog: u32, vers: u32, proc_num: u32, args: &[u8]) -> Result<u32, ClientError> {
        let (flavor, body) = self.auth.body();
        let mut w = encode_call(xid, prog, vers, proc_num, OpaqueAuth { flavor, body: &body });
        w.fixed(args);
        let mut bytes = w.into_vec();
        seal_record(&mut bytes);
        self.stream.write_all(&bytes)?;
        Ok(xid)
    }

    /// Sends raw bytes as one record (for malformed-call tests).
    pub fn send_raw_record(&mut self, message: &[u8]) -> Result<(), ClientError> {
        let mut bytes = vec![0u8; RECORD_MARK_BYTES];
        bytes.extend_from_slice(message);
        seal_record(&mut bytes);
        self.stream.write_all(&bytes)?;
        Ok(())
    }

    /// Sends raw bytes as they are (no record mark added).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// The next reply record, whatever its xid.
    pub fn recv_any(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            if let Some(record) = self.deframer.next_record()? {
                return Ok(record);
            }
            let n = self.stream.read(self.deframer.spare())?;
            self.deframer.filled(n);
            if n == 0 {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// The reply to `xid`: its results, or why the call was refused.
    pub fn recv(&mut self, xid: u32) -> Result<Vec<u8>, ClientError> {
        let record = match self.early.remove(&xid) {
            Some(r) => r,
            None => loop {
                let record = self.recv_any()?;
                let got = Reader::new(&record).u32()?;
                if got == xid {
                    break record;
                }
                self.early.insert(got, record);
            },
        };
        let (_, header, mut r) = decode_reply(&record)?;
        match header {
            ReplyHeader::Accepted(AcceptStat::Success) => Ok(r.rest().to_vec()),
            other => Err(ClientError::Rpc(other)),
        }
    }

    /// Sends a call and waits for its results.
    pub fn call(&mut self, prog: u32, vers: u32, proc_num: u32, args: &[u8]) -> Result<Vec<u8>, ClientError> {
        let xid = self.send(prog, vers, proc_num, args)?;
        self.recv(xid)
    }
}
