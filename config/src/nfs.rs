//! `[nfs]` and `[[nfs.export]]`: the NFSv3 gateway and what it exports.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{check_range, Problem};

/// Whose credentials are replaced by the anonymous uid/gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Squash {
    /// Root (uid 0) becomes anonymous; everyone else keeps their ids.
    #[default]
    Root,
    /// Nobody is squashed (trusted clients only).
    None,
    /// Everyone becomes anonymous.
    All,
}

/// Most exports one server carries.
const EXPORTS_MAX: usize = 256;
/// Most client patterns one export lists.
const CLIENTS_MAX: usize = 256;

/// One `[[nfs.export]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [[nfs.export]] table")]
pub struct ExportConfig {
    /// The path clients mount ("/" or "/projects"), inside Keel's file system.
    pub path: String,
    /// Who may mount: "*", an address ("10.0.0.5"), or a network ("10.0.0.0/24").
    #[serde(default = "default_clients")]
    pub clients: Vec<String>,
    #[serde(default)]
    pub squash: Squash,
    /// Uid and gid squashed users get.
    #[serde(default = "default_anon_id")]
    pub anon_uid: u32,
    #[serde(default = "default_anon_id")]
    pub anon_gid: u32,
    /// Answer metadata changes (create, remove, rename, setattr...) before
    /// they are durable. Faster; a crash can lose the last changes. Stable
    /// writes and COMMIT still wait: the client asked for those explicitly.
    #[serde(default, rename = "async")]
    pub async_writes: bool,
    #[serde(default)]
    pub read_only: bool,
    /// Accept AUTH_NONE calls, as the anonymous uid/gid.
    #[serde(default)]
    pub allow_auth_none: bool,
}

fn default_clients() -> Vec<String> {
    vec!["127.0.0.1".to_owned()]
}

fn default_anon_id() -> u32 {
    65534
}

/// `[nfs]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table of [nfs] settings")]
pub struct NfsConfig {
    pub enabled: bool,
    /// Address the NFS and MOUNT services listen on.
    pub listen: IpAddr,
    pub nfs_port: u16,
    pub mount_port: u16,
    /// Also answer portmapper (rpcbind) queries on port 111, for clients that
    /// do not take explicit ports. Needs privileges for port 111.
    pub portmapper: bool,
    #[serde(rename = "export")]
    pub exports: Vec<ExportConfig>,
}

impl Default for NfsConfig {
    fn default() -> Self {
        NfsConfig {
            enabled: false,
            listen: IpAddr::from([127, 0, 0, 1]),
            nfs_port: 2049,
            mount_port: 20048,
            portmapper: false,
            exports: Vec::new(),
        }
    }
}

impl NfsConfig {
    pub fn validate(&self) -> Result<(), Problem> {
        check_range("nfs.nfs_port", self.nfs_port, 1, u16::MAX)?;
        check_range("nfs.mount_port", self.mount_port, 1, u16::MAX)?;
        if self.nfs_port == self.mount_port {
            return Err(Problem::new("nfs.mount_port", format!("{} is also nfs.nfs_port", self.mount_port)));
        }
        if self.enabled && self.exports.is_empty() {
            return Err(Problem::new("nfs.export", "nfs.enabled = true needs at least one [[nfs.export]]"));
        }
        if self.exports.len() > EXPORTS_MAX {
            return Err(Problem::new("nfs.export", format!("at most {EXPORTS_MAX} exports")));
        }
        for (i, export) in self.exports.iter().enumerate() {
            if self.exports[..i].iter().any(|e| e.path == export.path) {
                return Err(Problem::new(
                    format!("nfs.export[{i}].path"),
                    format!("\"{}\" is exported twice", export.path),
                ));
            }
            export.validate(&format!("nfs.export[{i}]"))?;
        }
        Ok(())
    }
}

impl ExportConfig {
    fn validate(&self, key: &str) -> Result<(), Problem> {
        let path_ok = self.path.starts_with('/')
            && self.path.len() <= 1024
            && (self.path == "/" || !self.path.ends_with('/'))
            && self.path.split('/').skip(1).all(|c| self.path == "/" || (!c.is_empty() && c != "." && c != ".."));
        if !path_ok {
            return Err(Problem::new(
                format!("{key}.path"),
                format!("\"{}\" is not a clean absolute path (like \"/\" or \"/projects\")", self.path),
            ));
        }
        if self.clients.is_empty() || self.clients.len() > CLIENTS_MAX {
            return Err(Problem::new(format!("{key}.clients"), format!("must list 1 to {CLIENTS_MAX} clients")));
        }
        for (j, client) in self.clients.iter().enumerate() {
            check_client(client).map_err(|reason| Problem::new(format!("{key}.clients[{j}]"), reason))?;
        }
        Ok(())
    }
}

/// "*", an IP address, or an IP network in CIDR form.
fn check_client(text: &str) -> Result<(), String> {
    if text == "*" {
        return Ok(());
    }
    let (address, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let address: IpAddr = address
        .parse()
        .map_err(|_| format!("\"{text}\" is not \"*\", an IP address, or a network like 10.0.0.0/24"))?;
    let bits = if address.is_ipv4() { 32 } else { 128 };
    match prefix.map(str::parse::<u8>) {
        None => Ok(()),
        Some(Ok(p)) if p <= bits => Ok(()),
        Some(_) => Err(format!("\"{text}\" has a bad prefix length (0 to {bits})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_patterns_are_star_address_or_network() {
        for good in ["*", "10.0.0.5", "10.0.0.0/24", "::1", "fd00::/8"] {
            assert!(check_client(good).is_ok(), "{good}");
        }
        for bad in ["", "10.0.0", "10.0.0.0/33", "host.example", "::/129", "10.0.0.0/x"] {
            assert!(check_client(bad).is_err(), "{bad}");
        }
    }
}
