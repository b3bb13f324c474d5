//! Credentials: AUTH_NONE and AUTH_SYS (RFC 5531 appendix A).
//!
//! AUTH_SYS proves nothing (the client asserts ids); what it gives the
//! server is whose permissions to apply. Exports decide whether to trust it
//! (squashing) and whether AUTH_NONE is acceptable at all.

use crate::rpc::message::{OpaqueAuth, AUTH_NONE, AUTH_SYS};
use crate::xdr::Reader;

/// The machine name in AUTH_SYS is at most this long.
pub const MACHINE_NAME_BYTES_MAX: usize = 255;
/// AUTH_SYS carries at most this many supplementary groups.
pub const GIDS_MAX: usize = 16;

/// RFC 5531 `auth_stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStat {
    BadCred = 1,
    RejectedCred = 2,
    BadVerf = 3,
    RejectedVerf = 4,
    TooWeak = 5,
}

/// An AUTH_SYS credential as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSys {
    pub stamp: u32,
    pub machine_name: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
}

/// A decoded credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    Sys(AuthSys),
}

impl AuthSys {
    pub fn decode(body: &[u8]) -> Option<AuthSys> {
        let mut r = Reader::new(body);
        let stamp = r.u32().ok()?;
        let machine_name = r.string(MACHINE_NAME_BYTES_MAX).ok()?.to_vec();
        let uid = r.u32().ok()?;
        let gid = r.u32().ok()?;
        let count = r.array_len(GIDS_MAX, 4).ok()?;
        let mut gids = Vec::with_capacity(count);
        for _ in 0..count {
            gids.push(r.u32().ok()?);
        }
        Some(AuthSys { stamp, machine_name, uid, gid, gids })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = crate::xdr::Writer::new();
        w.u32(self.stamp).string(&self.machine_name).u32(self.uid).u32(self.gid);
        w.u32(self.gids.len() as u32);
        for &g in &self.gids {
            w.u32(g);
        }
        w.into_vec()
    }
}

impl Credential {
    /// Decodes a call's credential. Flavors other than AUTH_NONE and AUTH_SYS
    /// are refused as too weak... for us: we cannot check them.
    pub fn decode(cred: OpaqueAuth<'_>) -> Result<Credential, AuthStat> {
        match cred.flavor {
            AUTH_NONE => Ok(Credential::None),
            AUTH_SYS => AuthSys::decode(cred.body).map(Credential::Sys).ok_or(AuthStat::BadCred),
            _ => Err(AuthStat::RejectedCred),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_sys_round_trips_and_limits_groups() {
        let a = AuthSys { stamp: 1, machine_name: b"host".to_vec(), uid: 1000, gid: 100, gids: vec![4, 24] };
        assert_eq!(AuthSys::decode(&a.encode()), Some(a.clone()));
        let many = AuthSys { gids: (0..17).collect(), ..a };
        assert_eq!(AuthSys::decode(&many.encode()), None);
        assert_eq!(Credential::decode(OpaqueAuth { flavor: 6, body: &[] }), Err(AuthStat::RejectedCred));
    }
}
