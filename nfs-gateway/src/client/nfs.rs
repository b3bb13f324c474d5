//! NFSv3 procedures on an [`RpcClient`].

use std::net::SocketAddr;

use crate::fs::{FileType, Inode, SetAttrs, StableHow, Time};
use crate::mount::{MOUNT_PROGRAM, MOUNT_V3};
use crate::nfs3::types::*;
use crate::xdr::{Reader, Writer, XdrError};

use super::rpc::{Auth, ClientError, RpcClient};

type Result<T> = std::result::Result<T, ClientError>;

/// Attributes before (size, mtime, ctime) and after an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WccData {
    pub before: Option<(u64, Time, Time)>,
    pub after: Option<Inode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReply {
    pub wcc: WccData,
    pub count: u32,
    pub committed: StableHow,
    pub verifier: [u8; 8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub fileid: u64,
    pub name: Vec<u8>,
    pub cookie: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntryPlus {
    pub entry: Entry,
    pub attr: Option<Inode>,
    pub handle: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStat {
    pub tbytes: u64,
    pub fbytes: u64,
    pub abytes: u64,
    pub tfiles: u64,
    pub ffiles: u64,
    pub afiles: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsInfo {
    pub rtmax: u32,
    pub wtmax: u32,
    pub dtpref: u32,
    pub maxfilesize: u64,
    pub properties: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathConf {
    pub linkmax: u32,
    pub name_max: u32,
    pub no_trunc: bool,
}

fn status(r: &mut Reader<'_>) -> std::result::Result<Status, XdrError> {
    let v = r.u32()?;
    Status::from_u32(v).ok_or(XdrError::BadValue { value: v })
}

fn post_op_attr(r: &mut Reader<'_>) -> std::result::Result<Option<Inode>, XdrError> {
    r.optional(decode_fattr)
}

fn wcc(r: &mut Reader<'_>) -> std::result::Result<WccData, XdrError> {
    let before = r.optional(|r| Ok((r.u64()?, decode_time(r)?, decode_time(r)?)))?;
    Ok(WccData { before, after: post_op_attr(r)? })
}

fn fh_arg(w: &mut Writer, fh: &[u8]) {
    w.opaque(fh);
}

/// An NFSv3 client on one connection.
#[derive(Debug)]
pub struct Nfs3Client {
    pub rpc: RpcClient,
}

/// Runs `f` on the results if the status is OK, else returns the status
/// (after skipping nothing: callers that want failure bodies use `raw`).
fn ok_or_status<T>(body: &[u8], f: impl FnOnce(&mut Reader<'_>) -> std::result::Result<T, XdrError>) -> Result<T> {
    let mut r = Reader::new(body);
    match status(&mut r)? {
        Status::Ok => Ok(f(&mut r)?),
        s => Err(ClientError::Nfs(s)),
    }
}

impl Nfs3Client {
    pub fn connect(nfs: SocketAddr, auth: Auth) -> Result<Nfs3Client> {
        Ok(Nfs3Client { rpc: RpcClient::connect(nfs, auth)? })
    }

    /// Asks the MOUNT service at `mount` for the handle of `path`.
    pub fn mount(mount: SocketAddr, auth: Auth, path: &str) -> Result<Vec<u8>> {
        let mut rpc = RpcClient::connect(mount, auth)?;
        let mut w = Writer::new();
        w.string(path.as_bytes());
        let body = rpc.call(MOUNT_PROGRAM, MOUNT_V3, 1, w.as_slice())?;
        let mut r = Reader::new(&body);
        match r.u32()? {
            0 => Ok(r.opaque(64)?.to_vec()),
            s => Err(ClientError::Mount(s)),
        }
    }

    /// Calls procedure `proc_num` with `args` and returns the raw results.
    pub fn raw(&mut self, proc_num: u32, args: &[u8]) -> Result<Vec<u8>> {
        self.rpc.call(NFS_PROGRAM, NFS_V3, proc_num, args)
    }

    fn call<T>(
        &mut self,
        proc_num: u32,
        args: Writer,
        f: impl FnOnce(&mut Reader<'_>) -> std::result::Result<T, XdrError>,
    ) -> Result<T> {
        let body = self.raw(proc_num, args.as_slice())?;
        ok_or_status(&body, f)
    }

    pub fn null(&mut self) -> Result<()> {
        self.raw(PROC_NULL, &[]).map(|_| ())
    }

    pub fn getattr(&mut self, fh: &[u8]) -> Result<Inode> {
        let mut w = Writer::new();
        fh_arg(&mut w, fh);
        self.call(PROC_GETATTR, w, decode_fattr)
    }

    pub fn setattr(&mut self, fh: &[u8], set: &SetAttrs, guard: Option<Time>) -> Result<WccData> {
        let mut w = Writer::new();
        fh_arg(&mut w, fh);
        encode_sattr(&mut w, set);
        match guard {
            Some(t) => {
                w.bool(true);
                encode_time(&mut w, t);
            }
            None => {
                w.bool(false);
            }
        }
        self.call(PROC_SETATTR, w, wcc)
    }

    pub fn lookup(&mut self, dir: &[u8], name: &[u8]) -> Result<(Vec<u8>, Inode)> {
        let mut w = Writer::new();
        fh_arg(&mut w, dir);
        w.string(name);
        self.call(PROC_LOOKUP, w, |r| {
            let fh = r.opaque(64)?.to_vec();
            let attr = post_op_attr(r)?.ok_or(XdrError::BadValue { value: 0 })?;
            Ok((fh, attr))
        })
    }

    pub fn access(&mut self, fh: &[u8], mask: u32) -> Result<u32> {
        let mut w = Writer::new();
        fh_arg(&mut w, fh);
        w.u32(mask);
        self.call(PROC_ACCESS, w, |r| {
            post_op_attr(r)?;
            r.u32()
        })
    }

    pub fn readlink(&mut self, fh: &[u8]) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        fh_arg(&mut w, fh);
        self.call(PROC_READLINK, w, |r| {
            post_op_attr(r)?;
            Ok(r.string(4096)?.to_vec())
        })
    }

    pub fn read(&mut self, fh: &[u8], offset: u64, count: u32) -> Result<(Vec<u8>, bool)> {
        let mut w = Writer::new();
        fh_arg(&mut w, fh);
        w.u64(offset).u32(count);
        self.call(PROC_READ, w, |r| {
            post_op_attr(r)?;
            let _count = r.u32()?;
            let eof = r.bool()?;
            Ok((r.opaque(IO_BYTES_MAX as usize)?.to_vec(), eof))
        })
    }

    fn write_args(fh: &[u8], offset: u64, data: &[u8], stable: StableHow) -> Writer {
        let mut w = Writer::with_capacity(data.len() + 64);
        fh_arg(&mut w, fh);
        w.u64(offset).u32(data.len() as u32).u32(stable as u32).opaque(data);
        w
    }

    fn decode_write(r: &mut Reader<'_>) -> std::result::Result<WriteReply, XdrError> {
        let wcc = wcc(r)?;
        let count = r.u32()?;
        let committed = match r.u32()? {
            0 => StableHow::Unstable,
            1 => StableHow::DataSync,
            2 => StableHow::FileSync,
            value => return Err(XdrError::BadValue { value }),
        };
        Ok(WriteReply { wcc, count, committed, verifier: r.array::<8>()? })
    }

    pub fn write(&mut self, fh: &[u8], offset: u64, data: &[u8], stable: StableHow) -> Result<WriteReply> {
        self.call(PROC_WRITE, Self::write_args(fh, offset, data, stable), Self::decode_write)
    }

    /// Sends a WRITE without waiting for it (see [`Nfs3Client::finish_write`]).
    pub fn start_write(&mut self, fh: &[u8], offset: u64, data: &[u8], stable: StableHow) -> Result<u32> {
        self.rpc.send(NFS_PROGRAM, NFS_V3, PROC_WRITE, Self::write_args(fh, offset, data, stable).as_slice())
    }

    pub fn finish_write(&mut self, xid: u32) -> Result<WriteReply> {
        let body = self.rpc.recv(xid)?;
        ok_or_status(&body, Self::decode_write)
    }

    fn created(r: &mut Reader<'_>) -> std::result::Result<(Vec<u8>, Inode, WccData), XdrError> {
        let fh = r.optional(|r| Ok(r.opaque(64)?.to_vec()))?.ok_or(XdrError::BadValue { value: 0 })?;
        let attr = post_op_attr(r)?.ok_or(XdrError::BadValue { value: 0 })?;
        Ok((fh, attr, wcc(r)?))
    }

    /// CREATE: `how` 0 unchecked, 1 guarded (with `set`), or exclusive with
    /// `verf`.
    pub fn create(
        &mut self,
        dir: &[u8],
        name: &[u8],
        set: &SetAttrs,
        exclusive: Option<[u8; 8]>,
        guarded: bool,
    ) -> Result<(Vec<u8>, Inode, WccData)> {
        let mut w = Writer::new();
        fh_arg(&mut w, dir);
        w.string(name);
        match exclusive {
            Some(v) => {
                w.u32(2).fixed(&v);
            }
            None => {
                w.u32(u32::from(guarded));
                encode_sattr(&mut w, set);
            }
        }
        self.call(PROC_CREATE, w, Self::created)
    }

    pub fn mkdir(&mut self, dir: &[u8], name: &[u8], set: &SetAttrs) -> Result<(Vec<u8>, Inode, WccData)> {
        let mut w = Writer::new();
        fh_arg(&mut w, dir);
        w.string(name);
        encode_sattr(&mut w, set);
        self.call(PROC_MKDIR, w, Self::created)
    }

    pub fn symlink(&mut self, dir: &[u8], name: &[u8], target: &[u8]) -> Result<(Vec<u8>, Inode, WccData)> {
        let mut w = Writer::new();
        fh_arg(&mut w, dir);
        w.string(name);
        encode_sattr(&mut w, &SetAttrs::default());
        w.string(target);
        self.call(PROC_SYMLINK, w, Self::created)
    }

    pub fn mknod(
        &mut self,
        dir: &[u8],
        name: &[u8],
        ftype: FileType,
        rdev: (u32, u32),
    ) -> Result<(Vec<u8>, Inode, WccData)> {
        let mut w = Writer::new();
        fh_arg(&mut w, dir);
        w.string(name).u32(ftype as u32);
        match ftype {
            FileType::Character | FileType::Block => {
                encode_sattr(&mut w, &SetAttrs::default());
                w.u32(rdev.0).u32(rdev.1);
            }
            FileType::Socket | FileType::Fifo => encode_sattr(&mut w, &SetAttrs::default()),
            _ => {}
        }
        self.call(PROC_MKNOD, w, Self::created)
    }

    pub fn remove(&mut self, dir: &[u8], name: &[u8]) -> Result<WccData> {
        let mut w = Writer::new();
        fh_arg(&mut w, dir);
        w.string(name);
        self.call(PROC_REMOVE, w, wcc)
    }

    pub fn rmdir(&mut self, dir: &[u8], name: &[u8]) -> Result<WccData> {
        let mut w = Writer::new();
        fh_arg(&mut w, dir);
        w.string(name);
        self.call(PROC_RMDIR, w, wcc)
    }

    pub fn rename(&mut self, from: &[u8], from_name: &[u8], to: &[u8], to_name: &[u8]) -> Result<(WccData, WccData)> {
        let mut w = Writer::new();
        fh_arg(&mut w, from);
        w.string(from_name);
        fh_arg(&mut w, to);
        w.string(to_name);
        self.call(PROC_RENAME, w, |r| Ok((wcc(r)?, wcc(r)?)))
    }

    pub fn link(&mut self, file: &[u8], dir: &[u8], name: &[u8]) -> Result<(Option<Inode>, WccData)> {
        let mut w = Writer::new();
        fh_arg(&mut w, file);
        fh_arg(&mut w, dir);
        w.string(name);
        self.call(PROC_LINK, w, |r| Ok((post_op_attr(r)?, wcc(r)?)))
    }

    /// READDIR: (entries, eof, cookie verifier).
    pub fn readdir(
        &mut self,
        dir: &[u8],
        cookie: u64,
        verf: [u8; 8],
        count: u32,
    ) -> Result<(Vec<Entry>, bool, [u8; 8])> {
        let mut w = Writer::new();
        fh_arg(&mut w, dir);
        w.u64(cookie).fixed(&verf).u32(count);
        self.call(PROC_READDIR, w, |r| {
            post_op_attr(r)?;
            let verf = r.array::<8>()?;
            let mut entries = Vec::new();
            while r.bool()? {
                entries.push(Entry { fileid: r.u64()?, name: r.string(4096)?.to_vec(), cookie: r.u64()? });
            }
            Ok((entries, r.bool()?, verf))
        })
    }

    pub fn readdirplus(
        &mut self,
        dir: &[u8],
        cookie: u64,
        verf: [u8; 8],
        dircount: u32,
        maxcount: u32,
    ) -> Result<(Vec<DirEntryPlus>, bool, [u8; 8])> {
        let mut w = Writer::new();
        fh_arg(&mut w, dir);
        w.u64(cookie).fixed(&verf).u32(dircount).u32(maxcount);
        self.call(PROC_READDIRPLUS, w, |r| {
            post_op_attr(r)?;
            let verf = r.array::<8>()?;
            let mut entries = Vec::new();
            while r.bool()? {
                let entry = Entry { fileid: r.u64()?, name: r.string(4096)?.to_vec(), cookie: r.u64()? };
                let attr = post_op_attr(r)?;
                let handle = r.optional(|r| Ok(r.opaque(64)?.to_vec()))?;
                entries.push(DirEntryPlus { entry, attr, handle });
            }
            Ok((entries, r.bool()?, verf))
        })
    }

    /// Every entry of `dir`, by READDIR calls of `count` bytes.
    pub fn list_all(&mut self, dir: &[u8], count: u32) -> Result<Vec<Entry>> {
        let (mut all, mut cookie, mut verf) = (Vec::new(), 0, [0; 8]);
        loop {
            let (entries, eof, v) = self.readdir(dir, cookie, verf, count)?;
            verf = v;
            if let Some(last) = entries.last() {
                cookie = last.cookie;
            }
            let empty = entries.is_empty();
            all.extend(entries);
            if eof || empty {
                return Ok(all);
            }
        }
    }

    pub fn fsstat(&mut self, fh: &[u8]) -> Result<FsStat> {
        let mut w = Writer::new();
        fh_arg(&mut w, fh);
        self.call(PROC_FSSTAT, w, |r| {
            post_op_attr(r)?;
            Ok(FsStat {
                tbytes: r.u64()?,
                fbytes: r.u64()?,
                abytes: r.u64()?,
                tfiles: r.u64()?,
                ffiles: r.u64()?,
                afiles: r.u64()?,
            })
        })
    }

    pub fn fsinfo(&mut self, fh: &[u8]) -> Result<FsInfo> {
        let mut w = Writer::new();
        fh_arg(&mut w, fh);
        self.call(PROC_FSINFO, w, |r| {
            post_op_attr(r)?;
            let (rtmax, _rtpref, _rtmult) = (r.u32()?, r.u32()?, r.u32()?);
            let (wtmax, _wtpref, _wtmult) = (r.u32()?, r.u32()?, r.u32()?);
            let dtpref = r.u32()?;
            let maxfilesize = r.u64()?;
            let _delta = (r.u32()?, r.u32()?);
            Ok(FsInfo { rtmax, wtmax, dtpref, maxfilesize, properties: r.u32()? })
        })
    }

    pub fn pathconf(&mut self, fh: &[u8]) -> Result<PathConf> {
        let mut w = Writer::new();
        fh_arg(&mut w, fh);
        self.call(PROC_PATHCONF, w, |r| {
            post_op_attr(r)?;
            Ok(PathConf { linkmax: r.u32()?, name_max: r.u32()?, no_trunc: r.bool()? })
        })
    }

    pub fn commit(&mut self, fh: &[u8]) -> Result<[u8; 8]> {
        let mut w = Writer::new();
        fh_arg(&mut w, fh);
        w.u64(0).u32(0);
        self.call(PROC_COMMIT, w, |r| {
            wcc(r)?;
            r.array::<8>()
        })
    }
}
