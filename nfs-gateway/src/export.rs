//! Exports: which directory a client may mount, from which addresses, and
//! whose identity its requests carry after squashing. Checked on every
//! request, not only at MOUNT: a handle leaked to another host is refused.

use std::net::IpAddr;

use crate::fs::{Cred, InodeRef};
use crate::rpc::Credential;

/// Whose identity is replaced by the anonymous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Squash {
    #[default]
    Root,
    None,
    All,
}

/// A client pattern: any host, or an address with a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMatch {
    Any,
    Net { addr: IpAddr, prefix_bits: u8 },
}

impl ClientMatch {
    /// "*", "10.0.0.5", "10.0.0.0/24", "::1", "fd00::/8".
    pub fn parse(text: &str) -> Option<ClientMatch> {
        if text == "*" {
            return Some(ClientMatch::Any);
        }
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_bits = prefix.unwrap_or(bits);
        (prefix_bits <= bits).then_some(ClientMatch::Net { addr: canonical(addr), prefix_bits })
    }

    pub fn matches(&self, peer: IpAddr) -> bool {
        match *self {
            ClientMatch::Any => true,
            ClientMatch::Net { addr, prefix_bits } => match (addr, canonical(peer)) {
                (IpAddr::V4(a), IpAddr::V4(p)) => prefix_eq(&a.octets(), &p.octets(), prefix_bits),
                (IpAddr::V6(a), IpAddr::V6(p)) => prefix_eq(&a.octets(), &p.octets(), prefix_bits),
                _ => false,
            },
        }
    }
}

/// IPv4-mapped IPv6 addresses (from dual-stack sockets) as IPv4.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0
}

/// One export as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// Path inside the file system ("/" or "/projects"); created at start-up
    /// if missing.
    pub path: String,
    pub clients: Vec<ClientMatch>,
    pub squash: Squash,
    pub anon_uid: u32,
    pub anon_gid: u32,
    /// Answer metadata changes before they are durable. Stable writes and
    /// COMMIT still wait: the client asked for those explicitly.
    pub async_metadata: bool,
    pub read_only: bool,
    /// Accept AUTH_NONE calls (as the anonymous user).
    pub allow_auth_none: bool,
}

impl ExportConfig {
    /// An export of `path` to any client with root squashing.
    pub fn new(path: &str) -> ExportConfig {
        ExportConfig {
            path: path.to_owned(),
            clients: vec![ClientMatch::Any],
            squash: Squash::Root,
            anon_uid: 65534,
            anon_gid: 65534,
            async_metadata: false,
            read_only: false,
            allow_auth_none: false,
        }
    }
}

/// An export with its root resolved.
#[derive(Debug, Clone)]
pub struct Export {
    pub config: ExportConfig,
    pub root: InodeRef,
}

impl Export {
    pub fn allows(&self, peer: IpAddr) -> bool {
        self.config.clients.iter().any(|c| c.matches(peer))
    }

    fn anonymous(&self) -> Cred {
        Cred { uid: self.config.anon_uid, gid: self.config.anon_gid, gids: Vec::new() }
    }

    /// The identity a call acts as; `None` when its flavor is not accepted.
    pub fn cred(&self, credential: &Credential) -> Option<Cred> {
        match credential {
            Credential::None => self.config.allow_auth_none.then(|| self.anonymous()),
            Credential::Sys(sys) => {
                let squash = match self.config.squash {
                    Squash::All => true,
                    Squash::Root => sys.uid == 0,
                    Squash::None => false,
                };
                if squash {
                    return Some(self.anonymous());
                }
                // Root squash also covers the root group as a primary gid
                // (knfsd maps gid 0 too).
                let gid =
                    if self.config.squash == Squash::Root && sys.gid == 0 { self.config.anon_gid } else { sys.gid };
                Some(Cred { uid: sys.uid, gid, gids: sys.gids.clone() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::AuthSys;

    #[test]
    fn client_patterns_match_addresses_and_networks() {
        let net = ClientMatch::parse("10.1.0.0/16").unwrap();
        assert!(net.matches("10.1.200.3".parse().unwrap()));
        assert!(!net.matches("10.2.0.1".parse().unwrap()));
        assert!(net.matches("::ffff:10.1.0.9".parse().unwrap()));
        let host = ClientMatch::parse("127.0.0.1").unwrap();
        assert!(host.matches("127.0.0.1".parse().unwrap()) && !host.matches("127.0.0.2".parse().unwrap()));
        assert!(ClientMatch::parse("fd00::/8").unwrap().matches("fd12::1".parse().unwrap()));
        assert!(ClientMatch::parse("10.0.0.0/33").is_none() && ClientMatch::parse("x").is_none());
        assert!(ClientMatch::parse("10.0.0.0/9").unwrap().matches("10.127.0.1".parse().unwrap()));
        assert!(!ClientMatch::parse("10.0.0.0/9").unwrap().matches("10.128.0.1".parse().unwrap()));
    }

    #[test]
    fn squashing_replaces_the_right_identities() {
        let sys = |uid, gid| Credential::Sys(AuthSys { stamp: 0, machine_name: vec![], uid, gid, gids: vec![5] });
        let mut e = Export { config: ExportConfig::new("/"), root: InodeRef { ino: 1, generation: 1 } };
        assert_eq!(e.cred(&sys(0, 0)).unwrap().uid, 65534);
        assert_eq!(e.cred(&sys(1000, 100)).unwrap(), Cred { uid: 1000, gid: 100, gids: vec![5] });
        assert_eq!(e.cred(&Credential::None), None);
        e.config.squash = Squash::None;
        assert_eq!(e.cred(&sys(0, 0)).unwrap().uid, 0);
        e.config.squash = Squash::All;
        e.config.allow_auth_none = true;
        assert_eq!(e.cred(&sys(1000, 100)).unwrap().uid, 65534);
        assert_eq!(e.cred(&Credential::None).unwrap().gid, 65534);
    }
}
