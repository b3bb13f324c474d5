//! NFSv3 wire types (RFC 1813 section 2): statuses, attributes, WCC data,
//! set-attributes, and the limits this server advertises.

use crate::fs::{FileType, FsError, Inode, SetAttrs, SetTime, Time, Wcc, WccAttr};
use crate::xdr::{Reader, Writer, XdrError};

pub const NFS_PROGRAM: u32 = 100_003;
pub const NFS_V3: u32 = 3;

pub const PROC_NULL: u32 = 0;
pub const PROC_GETATTR: u32 = 1;
pub const PROC_SETATTR: u32 = 2;
pub const PROC_LOOKUP: u32 = 3;
pub const PROC_ACCESS: u32 = 4;
pub const PROC_READLINK: u32 = 5;
pub const PROC_READ: u32 = 6;
pub const PROC_WRITE: u32 = 7;
pub const PROC_CREATE: u32 = 8;
pub const PROC_MKDIR: u32 = 9;
pub const PROC_SYMLINK: u32 = 10;
pub const PROC_MKNOD: u32 = 11;
pub const PROC_REMOVE: u32 = 12;
pub const PROC_RMDIR: u32 = 13;
pub const PROC_RENAME: u32 = 14;
pub const PROC_LINK: u32 = 15;
pub const PROC_READDIR: u32 = 16;
pub const PROC_READDIRPLUS: u32 = 17;
pub const PROC_FSSTAT: u32 = 18;
pub const PROC_FSINFO: u32 = 19;
pub const PROC_PATHCONF: u32 = 20;
pub const PROC_COMMIT: u32 = 21;

/// Procedures whose repetition is not harmless: their replies go through
/// the duplicate-request cache.
pub fn is_non_idempotent(proc_num: u32) -> bool {
    matches!(
        proc_num,
        PROC_SETATTR
            | PROC_CREATE
            | PROC_MKDIR
            | PROC_SYMLINK
            | PROC_MKNOD
            | PROC_REMOVE
            | PROC_RMDIR
            | PROC_RENAME
            | PROC_LINK
    )
}

/// Largest READ and WRITE this server takes (FSINFO rtmax/wtmax).
pub const IO_BYTES_MAX: u32 = 1 << 20;
/// Preferred READDIR size (FSINFO dtpref).
pub const DIR_BYTES_PREF: u32 = 64 * 1024;
/// Longest name or path a request may carry before it is not even decoded
/// (longer valid-looking names get NAMETOOLONG from the file system).
pub const NAME_WIRE_BYTES_MAX: usize = 4096;
pub const PATH_WIRE_BYTES_MAX: usize = 4096;

/// NFS `nfsstat3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    Perm = 1,
    NoEnt = 2,
    Io = 5,
    NxIo = 6,
    Access = 13,
    Exist = 17,
    XDev = 18,
    NoDev = 19,
    NotDir = 20,
    IsDir = 21,
    Inval = 22,
    FBig = 27,
    NoSpc = 28,
    RoFs = 30,
    MLink = 31,
    NameTooLong = 63,
    NotEmpty = 66,
    DQuot = 69,
    Stale = 70,
    Remote = 71,
    BadHandle = 10001,
    NotSync = 10002,
    BadCookie = 10003,
    NotSupp = 10004,
    TooSmall = 10005,
    ServerFault = 10006,
    BadType = 10007,
    Jukebox = 10008,
}

impl From<&FsError> for Status {
    fn from(e: &FsError) -> Status {
        match e {
            FsError::Perm => Status::Perm,
            FsError::NoEnt => Status::NoEnt,
            FsError::Io(_) => Status::Io,
            FsError::Access => Status::Access,
            FsError::Exist => Status::Exist,
            FsError::XDev => Status::XDev,
            FsError::NotDir => Status::NotDir,
            FsError::IsDir => Status::IsDir,
            FsError::Inval => Status::Inval,
            FsError::FBig => Status::FBig,
            FsError::NoSpace => Status::NoSpc,
            FsError::ReadOnly => Status::RoFs,
            FsError::MLink => Status::MLink,
            FsError::NameTooLong => Status::NameTooLong,
            FsError::NotEmpty => Status::NotEmpty,
            FsError::Stale => Status::Stale,
            FsError::BadCookie => Status::BadCookie,
            FsError::NotSupp => Status::NotSupp,
            FsError::TooSmall => Status::TooSmall,
            FsError::NotSync => Status::NotSync,
            FsError::BadType => Status::BadType,
            FsError::ServerFault(_) => Status::ServerFault,
        }
    }
}

impl Status {
    pub fn from_u32(v: u32) -> Option<Status> {
        use Status::*;
        Some(match v {
            0 => Ok,
            1 => Perm,
            2 => NoEnt,
            5 => Io,
            6 => NxIo,
            13 => Access,
            17 => Exist,
            18 => XDev,
            19 => NoDev,
            20 => NotDir,
            21 => IsDir,
            22 => Inval,
            27 => FBig,
            28 => NoSpc,
            30 => RoFs,
            31 => MLink,
            63 => NameTooLong,
            66 => NotEmpty,
            69 => DQuot,
            70 => Stale,
            71 => Remote,
            10001 => BadHandle,
            10002 => NotSync,
            10003 => BadCookie,
            10004 => NotSupp,
            10005 => TooSmall,
            10006 => ServerFault,
            10007 => BadType,
            10008 => Jukebox,
            _ => return None,
        })
    }
}

/// Encoded size of `fattr3`.
pub const FATTR3_BYTES: usize = 84;

pub fn encode_time(w: &mut Writer, t: Time) {
    // nfstime3 seconds are 32 bits: times after 2106 wrap, as on every
    // NFSv3 server.
    w.u32(t.secs as u32).u32(t.nsecs);
}

pub fn decode_time(r: &mut Reader<'_>) -> Result<Time, XdrError> {
    let secs = u64::from(r.u32()?);
    let nsecs = r.u32()?;
    if nsecs >= 1_000_000_000 {
        return Err(XdrError::BadValue { value: nsecs });
    }
    Ok(Time { secs, nsecs })
}

/// `fattr3`.
pub fn encode_fattr(w: &mut Writer, i: &Inode, fsid: u64) {
    let start = w.len();
    w.u32(i.ftype as u32).u32(i.mode).u32(i.nlink).u32(i.uid).u32(i.gid);
    w.u64(i.reported_size()).u64(i.used_bytes.max(if i.is_dir() { 4096 } else { 0 }));
    w.u32(i.rdev.0).u32(i.rdev.1);
    w.u64(fsid).u64(i.ino);
    encode_time(w, i.atime);
    encode_time(w, i.mtime);
    encode_time(w, i.ctime);
    debug_assert_eq!(w.len() - start, FATTR3_BYTES);
}

/// `post_op_attr`.
pub fn encode_post_op_attr(w: &mut Writer, i: Option<&Inode>, fsid: u64) {
    match i {
        Some(i) => {
            w.bool(true);
            encode_fattr(w, i, fsid);
        }
        None => {
            w.bool(false);
        }
    }
}

fn encode_pre_op_attr(w: &mut Writer, a: Option<&WccAttr>) {
    match a {
        Some(a) => {
            w.bool(true).u64(a.size);
            encode_time(w, a.mtime);
            encode_time(w, a.ctime);
        }
        None => {
            w.bool(false);
        }
    }
}

/// `wcc_data`.
pub fn encode_wcc(w: &mut Writer, wcc: &Wcc, fsid: u64) {
    encode_pre_op_attr(w, wcc.before.as_ref());
    encode_post_op_attr(w, wcc.after.as_ref(), fsid);
}

/// An empty `wcc_data` (no attributes before or after).
pub fn encode_no_wcc(w: &mut Writer) {
    w.bool(false).bool(false);
}

fn decode_set_time(r: &mut Reader<'_>) -> Result<SetTime, XdrError> {
    match r.u32()? {
        0 => Ok(SetTime::Keep),
        1 => Ok(SetTime::ServerNow),
        2 => Ok(SetTime::Client(decode_time(r)?)),
        value => Err(XdrError::BadValue { value }),
    }
}

/// `sattr3`.
pub fn decode_sattr(r: &mut Reader<'_>) -> Result<SetAttrs, XdrError> {
    Ok(SetAttrs {
        mode: r.optional(Reader::u32)?,
        uid: r.optional(Reader::u32)?,
        gid: r.optional(Reader::u32)?,
        size: r.optional(Reader::u64)?,
        atime: decode_set_time(r)?,
        mtime: decode_set_time(r)?,
    })
}

/// `sattr3`, for the client side.
pub fn encode_sattr(w: &mut Writer, s: &SetAttrs) {
    for v in [s.mode, s.uid, s.gid] {
        match v {
            Some(v) => w.bool(true).u32(v),
            None => w.bool(false),
        };
    }
    match s.size {
        Some(v) => w.bool(true).u64(v),
        None => w.bool(false),
    };
    for t in [s.atime, s.mtime] {
        match t {
            SetTime::Keep => {
                w.u32(0);
            }
            SetTime::ServerNow => {
                w.u32(1);
            }
            SetTime::Client(t) => {
                w.u32(2);
                encode_time(w, t);
            }
        }
    }
}

/// `fattr3`, for the client side.
pub fn decode_fattr(r: &mut Reader<'_>) -> Result<Inode, XdrError> {
    let ftype = r.u32()?;
    let ftype = FileType::from_u32(ftype).ok_or(XdrError::BadValue { value: ftype })?;
    let mode = r.u32()?;
    let nlink = r.u32()?;
    let uid = r.u32()?;
    let gid = r.u32()?;
    let size = r.u64()?;
    let used = r.u64()?;
    let rdev = (r.u32()?, r.u32()?);
    let _fsid = r.u64()?;
    let ino = r.u64()?;
    let (atime, mtime, ctime) = (decode_time(r)?, decode_time(r)?, decode_time(r)?);
    let mut i = Inode::new(ino, ftype, mode, uid, gid, 0, atime);
    i.nlink = nlink;
    i.size = size;
    i.used_bytes = used;
    i.rdev = rdev;
    i.mtime = mtime;
    i.ctime = ctime;
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sattr_round_trips() {
        let s = SetAttrs {
            mode: Some(0o640),
            uid: None,
            gid: Some(7),
            size: Some(1 << 40),
            atime: SetTime::ServerNow,
            mtime: SetTime::Client(Time { secs: 5, nsecs: 6 }),
        };
        let mut w = Writer::new();
        encode_sattr(&mut w, &s);
        assert_eq!(decode_sattr(&mut Reader::new(w.as_slice())).unwrap(), s);
    }

    #[test]
    fn fattr_is_84_bytes_and_decodes_back() {
        let mut i = Inode::new(42, FileType::Regular, 0o644, 1, 2, 1, Time { secs: 9, nsecs: 1 });
        i.size = 12345;
        let mut w = Writer::new();
        encode_fattr(&mut w, &i, 7);
        assert_eq!(w.len(), FATTR3_BYTES);
        let back = decode_fattr(&mut Reader::new(w.as_slice())).unwrap();
        assert_eq!((back.ino, back.size, back.mode, back.mtime), (42, 12345, 0o644, i.mtime));
    }
}
