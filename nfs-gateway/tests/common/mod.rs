//! A running gateway on an in-memory engine, and clients for it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use keel_drivers::memory::MemoryDevice;
use keel_drivers::BlockDevice;
use keel_engine::testing::{memory_device, memory_engine, start_on, TestEngineSpec};
use keel_engine::Engine;
use keel_nfs::client::{Auth, Nfs3Client};
use keel_nfs::{Fs, FsOptions};
use keel_nfs::{Gateway, GatewayConfig};
use keel_reactor::Runtime;

pub struct Server {
    pub gateway: Option<Gateway>,
    pub engine: Engine,
    pub runtime: Runtime,
}

impl Server {
    pub fn start(config: GatewayConfig) -> Server {
        Self::start_with(2, 4, config)
    }

    pub fn start_with(reactors: usize, shards: u32, config: GatewayConfig) -> Server {
        let (runtime, engine, _device) =
            memory_engine(&TestEngineSpec { reactors, shards, ..TestEngineSpec::default() });
        let gateway = Gateway::start(&runtime, engine.clone(), config).unwrap();
        Server { gateway: Some(gateway), engine, runtime }
    }

    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().unwrap()
    }

    pub fn nfs_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.gateway().ports().nfs))
    }

    pub fn mount_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.gateway().ports().mount))
    }

    /// A client as `auth`, and the handle of `path`.
    pub fn client(&self, auth: Auth, path: &str) -> (Nfs3Client, Vec<u8>) {
        let root = Nfs3Client::mount(self.mount_addr(), auth.clone(), path).unwrap();
        (Nfs3Client::connect(self.nfs_addr(), auth).unwrap(), root)
    }

    /// Stops the gateway and starts a new one on the same engine (a restart
    /// of the gateway; the in-memory engine keeps its data).
    pub fn restart(&mut self, config: GatewayConfig) {
        self.gateway.take().unwrap().stop();
        self.gateway = Some(Gateway::start(&self.runtime, self.engine.clone(), config).unwrap());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(g) = self.gateway.take() {
            g.stop();
        }
    }
}

pub fn user(uid: u32) -> Auth {
    Auth::Sys { uid, gid: uid, gids: vec![] }
}

/// Configuration with squashing off, so tests can act as root.
pub fn trusting() -> GatewayConfig {
    let mut config = GatewayConfig::for_tests();
    config.exports[0].squash = keel_nfs::Squash::None;
    config
}

/// The NFS status of a failed call (panics on success or other errors).
pub fn status<T: std::fmt::Debug>(r: Result<T, keel_nfs::client::ClientError>) -> keel_nfs::nfs3::types::Status {
    match r {
        Err(keel_nfs::client::ClientError::Nfs(s)) => s,
        other => panic!("expected an NFS error status, got {other:?}"),
    }
}

/// A memory device holding a formatted volume with a created file system and
/// nothing else: crash tests record from here, so every crash point has one.
pub fn formatted_memory(spec: &TestEngineSpec) -> Arc<MemoryDevice> {
    let memory = memory_device(spec);
    let (runtime, engine) = start_on(Arc::clone(&memory) as Arc<dyn BlockDevice>, spec, true).unwrap();
    let e = engine.clone();
    runtime.call_blocking(0, move || async move { drop(Fs::open(e, FsOptions::default()).await.unwrap()) }).unwrap();
    engine.close(&runtime).unwrap();
    runtime.stop();
    memory
}
