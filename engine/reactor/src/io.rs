//! Device I/O as futures, on the calling reactor's queue pairs.
//!
//! A task builds a request with a buffer from the device's DMA pool and awaits
//! it; the reactor submits every request queued during a turn in one batch per
//! device, reaps completions and wakes the waiting tasks. When a queue pair is
//! full, requests wait in a reactor-local backlog (bounded by the number of
//! tasks) and go out as completions free slots.
//!
//! Dropping an I/O future does not cancel the request: the device still performs
//! it and the reactor discards the completion.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use keel_drivers::dma::DmaError;
use keel_drivers::{
    Completion, DeviceInfo, DmaBuf, DmaPool, IoError, IoErrorKind, Op, OpKind, QueuePair, Request, SubmitError,
};
use slab::Slab;

use crate::core::{with_core, Counters};

/// Index of a device in the runtime's device list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub usize);

const COMPLETIONS_PER_POLL_MAX: usize = 256;

enum Slot {
    Waiting(Option<Waker>),
    Done(Completion),
    Abandoned,
}

struct DeviceQueue {
    qp: Box<dyn QueuePair>,
    slots: Slab<Slot>,
    backlog: VecDeque<Request>,
    scratch: Vec<Completion>,
}

/// The queue pairs of one reactor, one per device.
pub(crate) struct Devices {
    queues: RefCell<Vec<DeviceQueue>>,
    infos: Vec<DeviceInfo>,
    pools: Vec<Arc<DmaPool>>,
}

impl Devices {
    pub fn new(queue_pairs: Vec<Box<dyn QueuePair>>, pools: Vec<Arc<DmaPool>>) -> Self {
        assert_eq!(queue_pairs.len(), pools.len());
        let infos = queue_pairs.iter().map(|qp| qp.info().clone()).collect();
        let queues = queue_pairs
            .into_iter()
            .map(|qp| DeviceQueue { qp, slots: Slab::new(), backlog: VecDeque::new(), scratch: Vec::new() })
            .collect();
        Devices { queues: RefCell::new(queues), infos, pools }
    }

    /// Raw completion descriptors, for registration with the poller.
    pub fn completion_fds(&self) -> Vec<(usize, RawFd)> {
        let queues = self.queues.borrow();
        queues.iter().enumerate().filter_map(|(i, q)| q.qp.completion_fd().map(|fd| (i, fd.as_raw_fd()))).collect()
    }

    pub fn in_flight(&self) -> u64 {
        let queues = self.queues.borrow();
        queues.iter().map(|q| u64::from(q.qp.in_flight()) + q.backlog.len() as u64).sum()
    }

    fn submit(&self, device: DeviceId, op: Op, waker: Option<Waker>, stats: &Counters) -> usize {
        let mut queues = self.queues.borrow_mut();
        let queue = &mut queues[device.0];
        let key = queue.slots.insert(Slot::Waiting(waker));
        let request = Request { tag: key as u64, op };
        if !queue.backlog.is_empty() {
            queue.backlog.push_back(request);
            return key;
        }
        Counters::bump(&stats.io_submitted, 1);
        if let Err(e) = queue.qp.submit(request) {
            handle_submit_error(queue, e);
        }
        key
    }

    /// Submits backlogged requests and reaps completions on every device.
    pub fn poll(&self, stats: &Counters) -> bool {
        let mut queues = self.queues.borrow_mut();
        let mut worked = false;
        for queue in queues.iter_mut() {
            while let Some(request) = queue.backlog.pop_front() {
                Counters::bump(&stats.io_submitted, 1);
                if let Err(e) = queue.qp.submit(request) {
                    if handle_submit_error(queue, e) {
                        break;
                    }
                }
            }
            if queue.qp.in_flight() == 0 {
                continue;
            }
            let mut completions = std::mem::take(&mut queue.scratch);
            let n = queue.qp.poll(&mut completions, COMPLETIONS_PER_POLL_MAX);
            Counters::bump(&stats.io_completed, n as u64);
            worked |= n > 0;
            for completion in completions.drain(..) {
                deliver(queue, completion);
            }
            queue.scratch = completions;
        }
        worked
    }

    /// Arms every device for sleeping; false when a device must keep being
    /// polled (requests in flight and no completion descriptor, or completions
    /// already pending).
    pub fn prepare_to_sleep(&self) -> bool {
        let mut queues = self.queues.borrow_mut();
        queues.iter_mut().all(|q| {
            if !q.backlog.is_empty() {
                return false;
            }
            if q.qp.in_flight() == 0 {
                return true;
            }
            q.qp.completion_fd().is_some() && q.qp.prepare_to_sleep()
        })
    }

    pub fn close(&self) {
        self.queues.borrow_mut().clear();
    }
}

/// Returns true when the queue is full and the request went back to the
/// backlog's front.
fn handle_submit_error(queue: &mut DeviceQueue, error: SubmitError) -> bool {
    match error {
        SubmitError::QueueFull(request) => {
            queue.backlog.push_front(request);
            true
        }
        SubmitError::Invalid(request, io_error) => {
            fail_request(queue, request, io_error);
            false
        }
        SubmitError::Gone(request) => {
            let kind = request.op.kind();
            let lba = request.op.lba();
            let name = queue.qp.info().name.clone();
            fail_request(queue, request, IoError::new(IoErrorKind::DeviceGone, kind, lba, &name));
            false
        }
    }
}

fn fail_request(queue: &mut DeviceQueue, request: Request, error: IoError) {
    let kind = request.op.kind();
    let completion = Completion { tag: request.tag, kind, buf: request.op.into_buf(), result: Err(error) };
    deliver(queue, completion);
}

fn deliver(queue: &mut DeviceQueue, completion: Completion) {
    let key = completion.tag as usize;
    let Some(slot) = queue.slots.get_mut(key) else {
        tracing::error!(tag = key, "completion for an unknown request tag; dropped");
        return;
    };
    match std::mem::replace(slot, Slot::Abandoned) {
        Slot::Waiting(waker) => {
            *slot = Slot::Done(completion);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        Slot::Abandoned => {
            queue.slots.remove(key);
        }
        Slot::Done(_) => unreachable!("request {key} completed twice"),
    }
}

/// A request in flight on the calling reactor.
#[must_use = "I/O futures do nothing unless awaited"]
#[derive(Debug)]
pub struct IoFuture {
    device: DeviceId,
    op: Option<Op>,
    key: Option<usize>,
}

impl IoFuture {
    fn new(device: DeviceId, op: Op) -> Self {
        IoFuture { device, op: Some(op), key: None }
    }
}

impl Future for IoFuture {
    type Output = Completion;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion> {
        let device = self.device;
        if let Some(op) = self.op.take() {
            let key = with_core(|core| core.devices.submit(device, op, Some(cx.waker().clone()), &core.stats));
            self.key = Some(key);
        }
        let Some(key) = self.key else { panic!("IoFuture polled after completion") };
        with_core(|core| {
            let mut queues = core.devices.queues.borrow_mut();
            let queue = &mut queues[device.0];
            match queue.slots.get_mut(key) {
                Some(Slot::Done(_)) => {
                    let Slot::Done(completion) = queue.slots.remove(key) else { unreachable!() };
                    self.key = None;
                    Poll::Ready(completion)
                }
                Some(Slot::Waiting(waker)) => {
                    match waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => *waker = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
                Some(Slot::Abandoned) | None => unreachable!("request {key} lost its slot"),
            }
        })
    }
}

impl Drop for IoFuture {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let device = self.device;
        crate::core::try_with_core(|core| {
            let mut queues = core.devices.queues.borrow_mut();
            let Some(queue) = queues.get_mut(device.0) else {
                return;
            };
            match queue.slots.get_mut(key) {
                Some(Slot::Done(_)) => {
                    queue.slots.remove(key);
                }
                Some(slot) => *slot = Slot::Abandoned,
                None => {}
            }
        });
    }
}

/// Submits `op` on `device` and waits for its completion.
pub fn submit(device: DeviceId, op: Op) -> IoFuture {
    IoFuture::new(device, op)
}

/// Queues `op` on `device` now, not when the returned future is first
/// polled; await the future for the completion. With [`send_queued`] right
/// after, the device sees the request at once instead of at the end of the
/// reactor's turn, which may be long: for I/O that others wait on, such as a
/// journal's batch write issued while committers keep copying records.
pub fn start(device: DeviceId, op: Op) -> IoFuture {
    let key = with_core(|core| core.devices.submit(device, op, None, &core.stats));
    IoFuture { device, op: None, key: Some(key) }
}

/// Makes every device see the requests queued on this reactor so far (one
/// system call per device with queued requests) and reaps the completions
/// that are ready, as the reactor's turn does after running its tasks.
pub fn send_queued() {
    with_core(|core| core.devices.poll(&core.stats));
}

/// Reads `buf.len()` bytes at block `lba` into `buf`. The buffer comes back
/// whatever the result.
pub async fn read(device: DeviceId, lba: u64, buf: DmaBuf) -> (DmaBuf, Result<(), IoError>) {
    let completion = submit(device, Op::Read { lba, buf }).await;
    (completion.buf.expect("a read completion carries its buffer"), completion.result)
}

/// Writes `buf` at block `lba`; with `fua`, durable when it completes.
pub async fn write(device: DeviceId, lba: u64, buf: DmaBuf, fua: bool) -> (DmaBuf, Result<(), IoError>) {
    let completion = submit(device, Op::Write { lba, buf, fua }).await;
    (completion.buf.expect("a write completion carries its buffer"), completion.result)
}

/// Makes every write that completed before this call durable.
pub async fn flush(device: DeviceId) -> Result<(), IoError> {
    let completion = submit(device, Op::Flush).await;
    debug_assert_eq!(completion.kind, OpKind::Flush);
    completion.result
}

/// What the calling reactor's runtime knows about `device`.
pub fn device_info(device: DeviceId) -> DeviceInfo {
    with_core(|core| core.devices.infos[device.0].clone())
}

/// How many devices the runtime has.
pub fn device_count() -> usize {
    with_core(|core| core.devices.infos.len())
}

/// The DMA pool of `device`.
pub fn dma_pool(device: DeviceId) -> Arc<DmaPool> {
    with_core(|core| Arc::clone(&core.devices.pools[device.0]))
}

/// A buffer of `len_bytes` from `device`'s pool, waiting while the pool is
/// exhausted (back-pressure). Fails only for a length no buffer can have.
pub async fn alloc_buf(device: DeviceId, len_bytes: usize) -> Result<DmaBuf, DmaError> {
    let pool = dma_pool(device);
    std::future::poll_fn(|cx| pool.poll_alloc(len_bytes, cx)).await
}
