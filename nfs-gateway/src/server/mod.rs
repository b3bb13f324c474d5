//! The gateway's life: open the file system, resolve the exports, listen on
//! every reactor (SO_REUSEPORT, so the kernel spreads connections), serve,
//! and stop.

mod bulk;
mod conn;
pub mod dispatch;
mod signal;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_engine::Engine;
use keel_reactor::net::TcpListener;
use keel_reactor::{CallError, Runtime};

use crate::export::{canonical, Export, ExportConfig};
use crate::fs::{Cred, Fs, FsError, FsOptions, InodeRef};
use crate::rpc::Drc;
use crate::service::{Ports, Service};
use signal::StopSignal;

/// Per-connection and per-gateway bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest call record (a 1 MiB WRITE and its header fit).
    pub record_bytes_max: usize,
    pub requests_in_flight_max: usize,
    pub bytes_in_flight_max: usize,
    pub connections_max: usize,
    pub drc_entries_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            record_bytes_max: (1 << 20) + 64 * 1024,
            requests_in_flight_max: 128,
            bytes_in_flight_max: 16 << 20,
            connections_max: 1024,
            drc_entries_max: 8192,
        }
    }
}

/// Everything the gateway needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    pub listen: IpAddr,
    /// 0: any free port (tests); [`Gateway::ports`] tells which.
    pub nfs_port: u16,
    pub mount_port: u16,
    /// Serve the portmapper on this port (111 for clients that need it).
    pub portmap_port: Option<u16>,
    pub exports: Vec<ExportConfig>,
    pub fs: FsOptions,
    pub limits: Limits,
}

impl GatewayConfig {
    /// Loopback, ephemeral ports, one export of "/" to anyone.
    pub fn for_tests() -> GatewayConfig {
        GatewayConfig {
            listen: IpAddr::from([127, 0, 0, 1]),
            nfs_port: 0,
            mount_port: 0,
            portmap_port: None,
            exports: vec![ExportConfig::new("/")],
            fs: FsOptions::default(),
            limits: Limits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot open the file system: {0}")]
    Fs(#[from] FsError),
    #[error("cannot prepare export {path}: {source}")]
    Export { path: String, source: FsError },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("the reactors are not running: {0}")]
    Reactor(#[from] CallError),
}

static NEXT_GATEWAY_UID: AtomicU64 = AtomicU64::new(1);

/// How long [`Gateway::stop`] waits for writes behind: a few device writes
/// and commits each, far less unless the device is failing.
pub const DRAIN_MAX: Duration = Duration::from_secs(10);

thread_local! {
    /// Stop signals of the gateways with tasks on this reactor.
    static STOPS: RefCell<HashMap<u64, Rc<StopSignal>>> = RefCell::new(HashMap::new());
}

fn local_stop(uid: u64) -> Rc<StopSignal> {
    STOPS.with(|s| Rc::clone(s.borrow_mut().entry(uid).or_default()))
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    uid: u64,
    service: Arc<Service>,
    runtime: keel_reactor::RuntimeHandle,
}

impl Gateway {
    /// Opens the file system on `engine` and starts serving on every reactor
    /// of `runtime`. Call from a thread that is not a reactor.
    pub fn start(runtime: &Runtime, engine: Engine, config: GatewayConfig) -> Result<Gateway, GatewayError> {
        let uid = NEXT_GATEWAY_UID.fetch_add(1, Ordering::Relaxed);
        let first = config.clone();
        let service = runtime.call_blocking(0, move || async move { start_first(uid, engine, first).await })??;
        let ports = service.ports;
        for reactor in 1..runtime.reactor_count() {
            let (svc, limits, listen) = (Arc::clone(&service), config.limits, config.listen);
            runtime.call_blocking(reactor, move || async move { listen_all(uid, svc, limits, listen, ports) })??;
        }
        tracing::info!(nfs = ports.nfs, mount = ports.mount, portmap = ?ports.portmap, "NFS gateway serving");
        Ok(Gateway { uid, service, runtime: runtime.handle() })
    }

    pub fn ports(&self) -> Ports {
        self.service.ports
    }

    pub fn fs(&self) -> &Fs {
        &self.service.fs
    }

    /// What every connection shares (for tools that call the dispatcher
    /// directly, such as the fuzz target).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Stops listening, closes every connection and waits for the WRITEs
    /// answered before their commit (at most [`DRAIN_MAX`]).
    pub fn stop(self) {
        self.stop_by(Instant::now() + DRAIN_MAX);
    }

    /// [`Gateway::stop`], waiting for writes behind until `deadline`;
    /// returns how many were still in flight then.
    pub fn stop_by(self, deadline: Instant) -> usize {
        let uid = self.uid;
        for reactor in 0..self.runtime.reactor_count() {
            let _ = self.runtime.call_blocking(reactor, move || async move {
                if let Some(stop) = STOPS.with(|s| s.borrow_mut().remove(&uid)) {
                    stop.stop();
                }
            });
        }
        // No call starts a write behind now; those running finish first.
        let mut left = 0;
        for reactor in 0..self.runtime.reactor_count() {
            let fs = self.service.fs.clone();
            let within = deadline.saturating_duration_since(Instant::now());
            let drained =
                self.runtime.call_blocking(reactor, move || async move { fs.drain_writes_behind(within).await });
            left += drained.unwrap_or(0);
        }
        if left > 0 {
            tracing::warn!(
                left,
                "writes behind still in flight at the stop deadline; the next open changes the write verifier"
            );
        }
        left
    }
}

async fn start_first(uid: u64, engine: Engine, config: GatewayConfig) -> Result<Arc<Service>, GatewayError> {
    let fs = Fs::open(engine, config.fs.clone()).await?;
    let mut exports = Vec::with_capacity(config.exports.len());
    for e in &config.exports {
        let root = prepare_export(&fs, &e.path)
            .await
            .map_err(|source| GatewayError::Export { path: e.path.clone(), source })?;
        exports.push(Export { config: e.clone(), root });
    }
    let bind = |port: u16| {
        let addr = SocketAddr::new(config.listen, port);
        TcpListener::bind(addr, true, 1024).map_err(|source| GatewayError::Listen { addr, source })
    };
    let nfs = bind(config.nfs_port)?;
    let mount = bind(config.mount_port)?;
    let portmap = config.portmap_port.map(bind).transpose()?;
    let port_of = |l: &TcpListener| l.local_addr().map(|a| a.port()).unwrap_or(0);
    let ports = Ports { nfs: port_of(&nfs), mount: port_of(&mount), portmap: portmap.as_ref().map(port_of) };
    let service = Arc::new(Service {
        fs,
        exports,
        drc: Drc::new(config.limits.drc_entries_max),
        mounts: Mutex::new(BTreeSet::new()),
        ports,
        connections: AtomicUsize::new(0),
    });
    for listener in [Some(nfs), Some(mount), portmap].into_iter().flatten() {
        spawn_acceptor(uid, listener, Arc::clone(&service), config.limits);
    }
    Ok(service)
}

fn listen_all(uid: u64, svc: Arc<Service>, limits: Limits, listen: IpAddr, ports: Ports) -> Result<(), GatewayError> {
    for port in [Some(ports.nfs), Some(ports.mount), ports.portmap].into_iter().flatten() {
        let addr = SocketAddr::new(listen, port);
        let listener = TcpListener::bind(addr, true, 1024).map_err(|source| GatewayError::Listen { addr, source })?;
        spawn_acceptor(uid, listener, Arc::clone(&svc), limits);
    }
    Ok(())
}

/// The inode of an export's path, making missing directories (owned by
/// root, mode 0755) on the way.
async fn prepare_export(fs: &Fs, path: &str) -> Result<InodeRef, FsError> {
    let mut dir = fs.root();
    for name in path.split('/').filter(|c| !c.is_empty()) {
        let name = name.as_bytes().to_vec();
        dir = match fs.lookup(Cred::root(), dir, name.clone()).await {
            Ok((child, _)) if child.is_dir() => InodeRef { ino: child.ino, generation: child.generation },
            Ok(_) => return Err(FsError::NotDir),
            Err(FsError::NoEnt) => {
                let spec = crate::fs::NodeSpec::of(crate::fs::FileType::Directory, Default::default());
                let done = fs.make(Cred::root(), dir, name, spec, crate::fs::CreateMode::Guarded).await?;
                fs.wait_durable(done.lsn).await?;
                InodeRef { ino: done.value.0.ino, generation: done.value.0.generation }
            }
            Err(e) => return Err(e),
        };
    }
    Ok(dir)
}

/// Pause after a failed accept (out of descriptors, say) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

fn spawn_acceptor(uid: u64, listener: TcpListener, svc: Arc<Service>, limits: Limits) {
    let stop = local_stop(uid);
    keel_reactor::spawn(async move {
        loop {
            let accepted = stop.run_until_stopped(listener.accept()).await;
            match accepted {
                None => return,
                Some(Ok((stream, addr))) => {
                    if svc.connections.load(Ordering::Relaxed) >= limits.connections_max {
                        tracing::warn!(peer = %addr, max = limits.connections_max, "refusing a connection over the limit");
                        continue;
                    }
                    svc.connections.fetch_add(1, Ordering::Relaxed);
                    let (svc, stop) = (Arc::clone(&svc), Rc::clone(&stop));
                    keel_reactor::spawn(async move {
                        conn::serve(stream, canonical(addr.ip()), Arc::clone(&svc), limits, stop).await;
                        svc.connections.fetch_sub(1, Ordering::Relaxed);
                    })
                    .detach();
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "accept failed");
                    keel_reactor::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    })
    .detach();
}
