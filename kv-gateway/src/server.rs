//! Starting and stopping the gateway: a listener on every reactor (the same
//! port, SO_REUSEPORT, so the kernel spreads connections), the bookkeeping
//! of clients, and the per-reactor background tasks (expiry sweep, periodic
//! durability in `everysec` mode).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_engine::{Engine, Lsn};
use keel_reactor::net::{TcpListener, TcpStream};
use keel_reactor::{time, Runtime};

use crate::config::{Durability, KvConfig};
use crate::conn;
use crate::db::Db;
use crate::expiry;
use crate::stats::Stats;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("cannot listen on {addr} (reactor {reactor}): {source}")]
    Listen { addr: SocketAddr, reactor: usize, source: std::io::Error },
    #[error(
        "another server already answers on {addr}; the gateway's listeners use SO_REUSEPORT, so \
         starting would silently share its connections"
    )]
    InUse { addr: SocketAddr },
    #[error("reactor call failed: {0}")]
    Reactor(#[from] keel_reactor::CallError),
}

/// What every reactor's gateway tasks share.
#[derive(Debug)]
pub struct Shared {
    pub config: KvConfig,
    pub db: Db,
    pub stats: Stats,
    pub started: Instant,
    pub port: AtomicU32,
    stop: AtomicBool,
    clients: AtomicU32,
    next_client_id: AtomicU64,
    /// Gateway tasks still running (listeners, connections, background).
    tasks: AtomicUsize,
    /// Highest LSN any write produced (the `everysec` flusher's target).
    pub lsn_written: AtomicU64,
}

impl Shared {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub fn clients(&self) -> u32 {
        self.clients.load(Ordering::Relaxed)
    }

    pub fn note_write(&self, lsn: Lsn) {
        self.lsn_written.fetch_max(lsn, Ordering::Relaxed);
    }
}

/// Counts a gateway task while it lives.
pub struct TaskGuard(Arc<Shared>);

impl TaskGuard {
    pub fn new(shared: &Arc<Shared>) -> TaskGuard {
        shared.tasks.fetch_add(1, Ordering::AcqRel);
        TaskGuard(Arc::clone(shared))
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.tasks.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A client slot, released on drop.
pub struct ClientSlot(Arc<Shared>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running gateway.
#[derive(Debug)]
pub struct KvServer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

/// How long `stop` waits for connections to close.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// How often blocked loops look at the stop flag.
pub const STOP_POLL: Duration = Duration::from_millis(200);

impl KvServer {
    /// Binds the listeners and starts serving. Call from a thread that is
    /// not a reactor.
    pub fn start(runtime: &Runtime, engine: Engine, config: KvConfig) -> Result<KvServer, KvError> {
        refuse_if_in_use(config.listen)?;
        let shared = Arc::new(Shared {
            db: Db::new(engine, config.meta_cache_bytes),
            stats: Stats::default(),
            started: Instant::now(),
            port: AtomicU32::new(0),
            stop: AtomicBool::new(false),
            clients: AtomicU32::new(0),
            next_client_id: AtomicU64::new(1),
            tasks: AtomicUsize::new(0),
            lsn_written: AtomicU64::new(0),
            config,
        });
        let mut addr = shared.config.listen;
        for reactor in 0..runtime.reactor_count() {
            let s = Arc::clone(&shared);
            let bound = runtime.call_blocking(reactor, move || async move { start_on_reactor(s, addr) })?;
            addr = bound.map_err(|source| KvError::Listen { addr, reactor, source })?;
        }
        shared.port.store(u32::from(addr.port()), Ordering::Relaxed);
        tracing::info!(%addr, durability = shared.config.durability.name(), "kv gateway listening");
        Ok(KvServer { shared, local_addr: addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting, closes connections (each finishes the request it is
    /// running), and waits for the gateway's tasks to end.
    pub fn stop(self) {
        self.stop_by(Instant::now() + STOP_WAIT);
    }

    /// [`KvServer::stop`], giving up at `deadline`. Returns how many gateway
    /// tasks were still running then (0: a clean stop).
    pub fn stop_by(self, deadline: Instant) -> usize {
        self.shared.stop.store(true, Ordering::Release);
        while self.shared.tasks.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = self.shared.tasks.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!(tasks = left, "kv gateway tasks still running after stop");
        }
        left
    }
}

/// Refuses a fixed port on which something already accepts connections: the
/// listeners set SO_REUSEPORT (one per reactor), so the kernel would let a
/// second appliance of the same user bind it and split the clients between
/// the two. (A check before binding: a server starting at the same instant
/// is not caught.)
fn refuse_if_in_use(addr: SocketAddr) -> Result<(), KvError> {
    if addr.port() == 0 {
        return Ok(());
    }
    let mut probe = addr;
    if probe.ip().is_unspecified() {
        probe.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    match std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(500)) {
        Ok(_) => Err(KvError::InUse { addr }),
        Err(_) => Ok(()),
    }
}

/// Binds `addr` on the calling reactor and spawns its listener and
/// background tasks. Returns the bound address (port 0 resolved).
fn start_on_reactor(shared: Arc<Shared>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr, true, shared.config.backlog)?;
    let bound = listener.local_addr()?;
    let guard = TaskGuard::new(&shared);
    keel_reactor::spawn(accept_loop(Rc::new(listener), Arc::clone(&shared), guard)).detach();
    let guard = TaskGuard::new(&shared);
    keel_reactor::spawn(expiry::sweep_loop(Arc::clone(&shared), guard)).detach();
    if shared.config.durability == Durability::Everysec && keel_reactor::reactor_id() == 0 {
        let guard = TaskGuard::new(&shared);
        keel_reactor::spawn(everysec_loop(shared, guard)).detach();
    }
    Ok(bound)
}

async fn accept_loop(listener: Rc<TcpListener>, shared: Arc<Shared>, _guard: TaskGuard) {
    while !shared.stopping() && !keel_reactor::stopping() {
        let (stream, peer) = match time::timeout(STOP_POLL, listener.accept()).await {
            Err(_) => continue,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "accept failed");
                time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Ok(Ok(pair)) => pair,
        };
        admit(stream, peer, &shared);
    }
}

/// Takes a client slot for a new connection, or refuses it with an error
/// when `max_clients` are connected.
fn admit(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    Stats::add(&shared.stats.connections_total, 1);
    let max = shared.config.max_clients;
    let admitted = shared.clients.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
    if admitted.is_err() {
        Stats::add(&shared.stats.connections_rejected, 1);
        tracing::debug!(%peer, "refusing connection: max clients reached");
        keel_reactor::spawn(async move {
            let _ = time::timeout(Duration::from_secs(1), stream.write_all(b"-ERR max number of clients reached\r\n"))
                .await;
        })
        .detach();
        return;
    }
    let slot = ClientSlot(Arc::clone(shared));
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    let guard = TaskGuard::new(shared);
    keel_reactor::spawn(conn::serve(stream, peer, id, Arc::clone(shared), slot, guard)).detach();
}

/// `everysec`: makes everything written so far durable about once a second.
async fn everysec_loop(shared: Arc<Shared>, _guard: TaskGuard) {
    let mut lsn_flushed = 0;
    while !shared.stopping() && !keel_reactor::stopping() {
        time::sleep(Duration::from_secs(1)).await;
        let target = shared.lsn_written.load(Ordering::Relaxed);
        if target > lsn_flushed {
            match shared.db.engine.wait_durable(target).await {
                Ok(()) => lsn_flushed = target,
                Err(e) => tracing::error!(error = %e, "everysec: journal flush failed"),
            }
        }
    }
}
