//! The NFS gateway as a `keel serve` service: the `[nfs]` configuration
//! mapped onto `keel_nfs::GatewayConfig`.

use std::time::Instant;

use keel_config::{NfsConfig, Squash as ConfigSquash};
use keel_nfs::{ClientMatch, ExportConfig, FsOptions, Gateway, GatewayConfig, Limits, Squash};
use keel_reactor::Runtime;

use crate::services::{Service, ServiceContext};

/// The port the portmapper answers on when `nfs.portmapper` is set.
const PORTMAP_PORT: u16 = 111;

#[derive(Debug)]
struct NfsService {
    gateway: Gateway,
    listen: std::net::IpAddr,
}

impl Service for NfsService {
    fn name(&self) -> &'static str {
        "nfs"
    }

    fn endpoints(&self) -> Vec<String> {
        let p = self.gateway.ports();
        let mut out = vec![format!("nfs {}:{}", self.listen, p.nfs), format!("mount {}:{}", self.listen, p.mount)];
        if let Some(pm) = p.portmap {
            out.push(format!("portmap {}:{pm}", self.listen));
        }
        out
    }

    fn stop(self: Box<Self>, _runtime: &Runtime, deadline: Instant) -> Result<(), String> {
        // Connections are closed at once; calls already running finish on
        // their own (each is one engine transaction, never half applied);
        // WRITEs answered before their commit are waited for until the
        // deadline (one lost after it changes the next write verifier).
        match self.gateway.stop_by(deadline) {
            0 => Ok(()),
            left => Err(format!("{left} WRITEs answered before their commit still in flight at the deadline")),
        }
    }
}

/// Maps `[nfs]` to the gateway's configuration.
pub fn gateway_config(nfs: &NfsConfig, data_bytes: u64) -> Result<GatewayConfig, String> {
    let mut exports = Vec::with_capacity(nfs.exports.len());
    for (i, e) in nfs.exports.iter().enumerate() {
        let mut clients = Vec::with_capacity(e.clients.len());
        for c in &e.clients {
            clients.push(ClientMatch::parse(c).ok_or_else(|| format!("nfs.export[{i}].clients: bad pattern {c:?}"))?);
        }
        exports.push(ExportConfig {
            path: e.path.clone(),
            clients,
            squash: match e.squash {
                ConfigSquash::Root => Squash::Root,
                ConfigSquash::None => Squash::None,
                ConfigSquash::All => Squash::All,
            },
            anon_uid: e.anon_uid,
            anon_gid: e.anon_gid,
            async_metadata: e.async_writes,
            read_only: e.read_only,
            allow_auth_none: e.allow_auth_none,
        });
    }
    Ok(GatewayConfig {
        listen: nfs.listen,
        nfs_port: nfs.nfs_port,
        mount_port: nfs.mount_port,
        portmap_port: nfs.portmapper.then_some(PORTMAP_PORT),
        exports,
        fs: FsOptions { capacity_bytes: data_bytes, ..FsOptions::default() },
        limits: Limits::default(),
    })
}

pub fn start(context: &ServiceContext<'_>) -> Result<Box<dyn Service>, String> {
    let config = gateway_config(&context.config.nfs, context.data_bytes)?;
    let gateway = Gateway::start(context.runtime, context.engine.clone(), config).map_err(|e| e.to_string())?;
    Ok(Box::new(NfsService { gateway, listen: context.config.nfs.listen }))
}
