//! Starting and stopping reactors: one pinned thread per configured core, or
//! one reactor on the calling thread for tests and tools (`block_on`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use keel_drivers::{BlockDevice, DeviceError};

use crate::core::{enter, Core, Counters, Envelope, Message, Shared};
use crate::executor::{spawn, spawn_detached_logged};
use crate::io::Devices;
use crate::mailbox::{answered_call, CallError};
use crate::net::Net;
use crate::oneshot::oneshot;
use crate::outbox::Outbox;
use crate::time::Timers;

/// What a reactor does when a turn finds no work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Spin: lowest latency, one whole core per reactor, always.
    Poll,
    /// Spin for `spin_us` microseconds, then sleep until something needs the
    /// reactor. An idle appliance costs nothing.
    Adaptive { spin_us: u32 },
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy::Adaptive { spin_us: 20 }
    }
}

/// How many reactors, where, and how they behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Number of reactors (threads).
    pub reactors: usize,
    /// Cores to pin reactor `i` to (`cores[i]`); `None` leaves threads unpinned.
    pub cores: Option<Vec<usize>>,
    pub idle: IdlePolicy,
    /// Messages a reactor's mailbox holds before senders wait.
    pub mailbox_capacity: usize,
    /// Requests in flight per device queue pair.
    pub queue_depth: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            reactors: 1,
            cores: None,
            idle: IdlePolicy::default(),
            mailbox_capacity: 4096,
            queue_depth: 128,
        }
    }
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("reactor {reactor}: cannot open a queue pair on {device}: {source}")]
    QueuePair { reactor: usize, device: String, source: DeviceError },
    #[error("reactor {reactor}: cannot set up its poller: {source}")]
    Poller { reactor: usize, source: std::io::Error },
    #[error("reactor {reactor}: cannot pin to core {core}: the core does not exist or is not allowed")]
    Pin { reactor: usize, core: usize },
    #[error("cannot start reactor thread {reactor}: {source}")]
    Thread { reactor: usize, source: std::io::Error },
    #[error("the configuration asks for {0} reactors; at least one is needed")]
    NoReactors(usize),
    #[error(transparent)]
    Call(#[from] CallError),
}

/// A snapshot of one reactor's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReactorStats {
    pub turns: u64,
    pub sleeps: u64,
    pub tasks_run: u64,
    /// Messages run (calls, replies, `send_to` closures).
    pub messages: u64,
    /// Mailbox entries those messages came in: one per message pushed from a
    /// thread that is not a reactor, one per outbox batch from a reactor.
    pub mailbox_entries: u64,
    pub io_submitted: u64,
    pub io_completed: u64,
    pub busy_ns: u64,
    pub idle_ns: u64,
    /// Eventfd writes other threads made to end this reactor's sleeps.
    pub wakes_written: u64,
}

/// Running reactors. Dropping it stops them.
#[derive(Debug)]
pub struct Runtime {
    handle: RuntimeHandle,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// A cheap, thread-safe handle for reaching reactors from any thread.
#[derive(Clone)]
pub struct RuntimeHandle {
    peers: Arc<[Arc<Shared>]>,
}

impl std::fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeHandle").field("reactors", &self.peers.len()).finish()
    }
}

fn build_core(
    id: usize,
    poll: mio::Poll,
    shared: Arc<Shared>,
    peers: Arc<[Arc<Shared>]>,
    idle: IdlePolicy,
    queue_depth: u32,
    devices: &[Arc<dyn BlockDevice>],
) -> Result<Rc<Core>, RuntimeError> {
    let mut queue_pairs = Vec::with_capacity(devices.len());
    for device in devices {
        let qp = device.open_queue_pair(queue_depth).map_err(|source| RuntimeError::QueuePair {
            reactor: id,
            device: device.info().name.clone(),
            source,
        })?;
        queue_pairs.push(qp);
    }
    let pools = devices.iter().map(|d| Arc::clone(d.dma_pool())).collect();
    let devices = Devices::new(queue_pairs, pools);
    let net = Net::new(poll, &devices).map_err(|source| RuntimeError::Poller { reactor: id, source })?;
    let outbox = Outbox::new(peers.len());
    Ok(Rc::new(Core {
        id,
        shared,
        peers,
        local: RefCell::new(VecDeque::new()),
        outbox,
        devices,
        timers: RefCell::new(Timers::default()),
        net,
        idle,
        stats: Counters::default(),
    }))
}

fn new_shared(id: usize, mailbox_capacity: usize) -> Result<(mio::Poll, Arc<Shared>), RuntimeError> {
    let poll = mio::Poll::new().map_err(|source| RuntimeError::Poller { reactor: id, source })?;
    let waker = mio::Waker::new(poll.registry(), crate::net::WAKER_TOKEN)
        .map_err(|source| RuntimeError::Poller { reactor: id, source })?;
    Ok((poll, Arc::new(Shared::new(id, mailbox_capacity, waker))))
}

impl Runtime {
    /// Starts `config.reactors` reactor threads, each with a queue pair on
    /// every device, and returns once all are running (or the first error).
    pub fn start(config: &RuntimeConfig, devices: &[Arc<dyn BlockDevice>]) -> Result<Runtime, RuntimeError> {
        if config.reactors == 0 {
            return Err(RuntimeError::NoReactors(0));
        }
        let mut polls = Vec::new();
        let mut shareds = Vec::new();
        for id in 0..config.reactors {
            let (poll, shared) = new_shared(id, config.mailbox_capacity)?;
            polls.push(poll);
            shareds.push(shared);
        }
        let peers: Arc<[Arc<Shared>]> = shareds.into();
        let handle = RuntimeHandle { peers: Arc::clone(&peers) };
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), RuntimeError>>();
        let mut threads = Vec::new();
        for (id, poll) in polls.into_iter().enumerate() {
            let spawn_result = std::thread::Builder::new().name(format!("keel-reactor-{id}")).spawn({
                let peers = Arc::clone(&peers);
                let devices = devices.to_vec();
                let config = config.clone();
                let ready_tx = ready_tx.clone();
                move || reactor_thread(id, poll, peers, &config, &devices, &ready_tx)
            });
            match spawn_result {
                Ok(thread) => threads.push(thread),
                Err(source) => {
                    let runtime = Runtime { handle, threads };
                    runtime.stop();
                    return Err(RuntimeError::Thread { reactor: id, source });
                }
            }
        }
        drop(ready_tx);
        let runtime = Runtime { handle, threads };
        for _ in 0..config.reactors {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    runtime.stop();
                    return Err(e);
                }
                Err(_) => break,
            }
        }
        Ok(runtime)
    }

    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }

    pub fn reactor_count(&self) -> usize {
        self.handle.peers.len()
    }

    /// Builds the future made by `f` on reactor `target` and runs it there,
    /// detached.
    pub fn spawn_on<F, Fut>(&self, target: usize, f: F) -> Result<(), CallError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.handle.spawn_on(target, f)
    }

    /// Runs the future made by `f` on reactor `target` and blocks the calling
    /// (non-reactor) thread until it finishes.
    pub fn call_blocking<F, Fut, T>(&self, target: usize, f: F) -> Result<T, CallError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        self.handle.call_blocking(target, f)
    }

    /// Asks every reactor to stop and waits for them: each finishes the I/O it
    /// has in flight, drops its tasks and closes its queue pairs.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        for peer in self.handle.peers.iter() {
            peer.request_stop();
        }
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a reactor thread panicked");
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

impl RuntimeHandle {
    pub fn reactor_count(&self) -> usize {
        self.peers.len()
    }

    /// The direct path, for threads that are not reactors: the message is
    /// one mailbox entry of its own.
    fn push_blocking(&self, target: usize, message: Message) -> Result<(), CallError> {
        let peer = self.peers.get(target).ok_or(CallError::NoSuchReactor(target))?;
        let mut envelope = Envelope::One(message);
        loop {
            if peer.has_exited() {
                return Err(CallError::Stopped(target));
            }
            match peer.deliver(envelope) {
                Ok(()) => return Ok(()),
                Err(back) => {
                    envelope = back;
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
    }

    /// See [`Runtime::spawn_on`].
    pub fn spawn_on<F, Fut>(&self, target: usize, f: F) -> Result<(), CallError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.push_blocking(target, Box::new(move || spawn_detached_logged(f())))
    }

    /// See [`Runtime::call_blocking`].
    pub fn call_blocking<F, Fut, T>(&self, target: usize, f: F) -> Result<T, CallError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot();
        self.push_blocking(target, answered_call(target, f, tx, None))?;
        rx.recv_blocking().map_err(|_| CallError::Cancelled)?
    }

    /// Asks every reactor to stop without waiting.
    pub fn request_stop(&self) {
        for peer in self.peers.iter() {
            peer.request_stop();
        }
    }

    /// Asks one reactor to stop, leaving the others running (tests of what
    /// its callers see).
    #[cfg(test)]
    pub(crate) fn request_stop_of(&self, reactor: usize) {
        self.peers[reactor].request_stop();
    }
}

fn reactor_thread(
    id: usize,
    poll: mio::Poll,
    peers: Arc<[Arc<Shared>]>,
    config: &RuntimeConfig,
    devices: &[Arc<dyn BlockDevice>],
    ready: &mpsc::Sender<Result<(), RuntimeError>>,
) {
    if let Some(cores) = &config.cores {
        let core = cores[id % cores.len()];
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            let _ = ready.send(Err(RuntimeError::Pin { reactor: id, core }));
            return;
        }
    }
    let shared = Arc::clone(&peers[id]);
    let core = match build_core(id, poll, Arc::clone(&shared), peers, config.idle, config.queue_depth, devices) {
        Ok(core) => core,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _guard = enter(Rc::clone(&core));
    let _ = ready.send(Ok(()));
    tracing::debug!(reactor = id, "reactor running");
    core.run_until(|| shared.stop_requested());
    tracing::debug!(reactor = id, "reactor stopping");
}

/// Runs `future` to completion on a single reactor on the calling thread, with
/// a queue pair on each of `devices`. For tests and command-line tools.
pub fn block_on<F: Future + 'static>(devices: &[Arc<dyn BlockDevice>], future: F) -> Result<F::Output, RuntimeError>
where
    F::Output: 'static,
{
    let config = RuntimeConfig { idle: IdlePolicy::Poll, ..RuntimeConfig::default() };
    block_on_with(&config, devices, future)
}

/// [`block_on`] with an explicit configuration (only `idle`, `queue_depth`
/// and `mailbox_capacity` apply).
pub fn block_on_with<F: Future + 'static>(
    config: &RuntimeConfig,
    devices: &[Arc<dyn BlockDevice>],
    future: F,
) -> Result<F::Output, RuntimeError>
where
    F::Output: 'static,
{
    let (poll, shared) = new_shared(0, config.mailbox_capacity)?;
    let peers: Arc<[Arc<Shared>]> = vec![Arc::clone(&shared)].into();
    let core = build_core(0, poll, shared, peers, config.idle, config.queue_depth, devices)?;
    let _guard = enter(Rc::clone(&core));
    // A panic in `future` is caught and re-raised here, rather than leaving
    // the loop waiting forever for an output.
    let done = Rc::new(RefCell::new(None));
    let watcher = spawn({
        let done = Rc::clone(&done);
        async move {
            let mut future = std::pin::pin!(future);
            let result = std::future::poll_fn(|cx| {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                    Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
                    Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
                    Err(panic) => std::task::Poll::Ready(Err(panic)),
                }
            })
            .await;
            *done.borrow_mut() = Some(result);
        }
    });
    watcher.detach();
    core.run_until(|| done.borrow().is_some());
    let result = done.borrow_mut().take().expect("block_on finished without output");
    let value = match result {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    Ok(value)
}
