//! Behaviour of the reactor: device I/O as futures, messages between reactors,
//! timers, sockets, idle sleeping and clean shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_drivers::memory::{MemoryDevice, MemoryDeviceConfig};
use keel_drivers::{BlockDevice, DmaPool, Op};
use keel_reactor::io::{self, DeviceId};
use keel_reactor::net::{TcpListener, TcpStream};
use keel_reactor::{block_on, call_on, spawn, time, CallError, IdlePolicy, Runtime, RuntimeConfig};

fn memory_device(reorder_seed: Option<u64>, queue_depth_max: u32) -> Arc<dyn BlockDevice> {
    let pool = Arc::new(DmaPool::for_tests(16 << 20));
    let config = MemoryDeviceConfig { reorder_seed, queue_depth_max, capacity_bytes: 64 << 20, ..Default::default() };
    Arc::new(MemoryDevice::new(&config, pool))
}

const DEV: DeviceId = DeviceId(0);

#[test]
fn a_write_then_read_returns_the_data() {
    let device = memory_device(None, 64);
    let got = block_on(&[device], async {
        let mut buf = io::alloc_buf(DEV, 4096).await.unwrap();
        buf.fill(0xAB);
        let (_, result) = io::write(DEV, 7, buf, false).await;
        result.unwrap();
        io::flush(DEV).await.unwrap();
        let buf = io::alloc_buf(DEV, 4096).await.unwrap();
        let (buf, result) = io::read(DEV, 7, buf).await;
        result.unwrap();
        buf.to_vec()
    })
    .unwrap();
    assert!(got.iter().all(|&b| b == 0xAB));
}

#[test]
fn more_requests_than_queue_slots_all_complete_in_any_order() {
    // Queue depth 4, 200 concurrent writes: the backlog must feed the queue as
    // slots free up, and reordered completions must reach the right tasks.
    let device = memory_device(Some(42), 4);
    block_on(&[device], async {
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            tasks.push(spawn(async move {
                let mut buf = io::alloc_buf(DEV, 4096).await.unwrap();
                buf.fill(i as u8);
                let (_, r) = io::write(DEV, i, buf, false).await;
                r.unwrap();
            }));
        }
        for t in tasks {
            t.await;
        }
        for i in 0..200u64 {
            let buf = io::alloc_buf(DEV, 4096).await.unwrap();
            let (buf, r) = io::read(DEV, i, buf).await;
            r.unwrap();
            assert!(buf.iter().all(|&b| b == i as u8), "block {i}");
        }
    })
    .unwrap();
}

#[test]
fn a_started_request_reaches_the_device_before_the_task_yields() {
    // `io::start` + `io::send_queued` hand the request to the device inside
    // the task's own step (the memory device performs it at its poll), not at
    // the end of the reactor's turn; awaiting afterwards returns it.
    let device = memory_device(None, 64);
    block_on(&[device], async {
        let mut buf = io::alloc_buf(DEV, 4096).await.unwrap();
        buf.fill(0x5A);
        let completed_before = keel_reactor::stats().io_completed;
        let write = io::start(DEV, Op::Write { lba: 3, buf, fua: false });
        io::send_queued();
        assert_eq!(keel_reactor::stats().io_completed, completed_before + 1, "performed without yielding");
        write.await.result.unwrap();
        // A started request whose future is dropped still completes and
        // leaves the queue usable.
        let buf = io::alloc_buf(DEV, 4096).await.unwrap();
        drop(io::start(DEV, Op::Read { lba: 3, buf }));
        let buf = io::alloc_buf(DEV, 4096).await.unwrap();
        let (buf, result) = io::read(DEV, 3, buf).await;
        result.unwrap();
        assert!(buf.iter().all(|&b| b == 0x5A));
    })
    .unwrap();
}

#[test]
fn an_out_of_range_read_is_a_typed_error() {
    let device = memory_device(None, 8);
    let capacity = device.info().capacity_blocks;
    let err = block_on(&[device], async move {
        let buf = io::alloc_buf(DEV, 4096).await.unwrap();
        io::read(DEV, capacity, buf).await.1.unwrap_err()
    })
    .unwrap();
    assert_eq!(err.kind, keel_drivers::IoErrorKind::OutOfRange);
}

#[test]
fn timers_fire_in_deadline_order() {
    let order = block_on(&[], async {
        let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, ms) in [30u64, 10, 20].into_iter().enumerate() {
            let log = log.clone();
            tasks.push(spawn(async move {
                time::sleep(Duration::from_millis(ms)).await;
                log.borrow_mut().push(i);
            }));
        }
        for t in tasks {
            t.await;
        }
        let v = log.borrow().clone();
        v
    })
    .unwrap();
    assert_eq!(order, vec![1, 2, 0]);
}

#[test]
fn timeout_cuts_a_slow_future() {
    let r = block_on(&[], async { time::timeout(Duration::from_millis(5), time::sleep(Duration::from_secs(5))).await })
        .unwrap();
    assert!(r.is_err());
}

#[test]
fn reactors_call_each_other_and_replies_come_back() {
    let config = RuntimeConfig { reactors: 2, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&config, &[]).unwrap();
    let sum = runtime
        .call_blocking(0, || async {
            let mut sum = 0usize;
            for i in 0..1000usize {
                sum += call_on(1, move || async move { keel_reactor::reactor_id() * 1000 + i }).await.unwrap();
            }
            sum
        })
        .unwrap();
    assert_eq!(sum, (0..1000).map(|i| 1000 + i).sum::<usize>());
    runtime.stop();
}

#[test]
fn a_call_that_panics_on_another_reactor_is_reported_as_a_panic_not_a_shutdown() {
    let config = RuntimeConfig { reactors: 2, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&config, &[]).unwrap();
    let outcome = runtime
        .call_blocking(0, || async {
            let panicked = call_on(1, || async { panic!("deliberate test panic") }).await;
            // The target goes on serving after the panic.
            let after = call_on(1, || async { 7 }).await;
            (panicked.map(|()| 0), after)
        })
        .unwrap();
    assert_eq!(outcome, (Err(CallError::Panicked(1)), Ok(7)));
    let blocking: Result<(), CallError> = runtime.call_blocking(1, || async { panic!("deliberate test panic") });
    assert_eq!(blocking, Err(CallError::Panicked(1)));
    assert!(CallError::Panicked(1).to_string().contains("panicked on reactor 1"));
    runtime.stop();
}

#[test]
fn a_panicking_task_does_not_stop_its_reactor() {
    let config = RuntimeConfig { reactors: 1, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&config, &[]).unwrap();
    runtime.spawn_on(0, || async { panic!("deliberate test panic") }).unwrap();
    let answer = runtime.call_blocking(0, || async { 42 }).unwrap();
    assert_eq!(answer, 42);
}

#[test]
fn sockets_echo_across_reactors() {
    let config = RuntimeConfig { reactors: 2, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&config, &[]).unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    runtime
        .spawn_on(0, move || async move {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap(), false, 16).unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            // Hand the connection to reactor 1, as a gateway spreading load would.
            let std_stream = stream.into_std().unwrap();
            call_on(1, move || async move {
                let stream = TcpStream::from_std(std_stream).unwrap();
                let mut buf = [0u8; 1024];
                loop {
                    let n = stream.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    stream.write_all(&buf[..n]).await.unwrap();
                }
            })
            .await
            .unwrap();
        })
        .unwrap();
    let addr = addr_rx.recv().unwrap();
    use std::io::{Read, Write};
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    let message = vec![7u8; 100_000];
    let writer = {
        let mut c = client.try_clone().unwrap();
        let m = message.clone();
        std::thread::spawn(move || c.write_all(&m).unwrap())
    };
    let mut echoed = vec![0u8; message.len()];
    client.read_exact(&mut echoed).unwrap();
    writer.join().unwrap();
    assert_eq!(echoed, message);
}

#[test]
fn end_of_stream_arriving_with_the_last_bytes_is_seen_after_a_short_read() {
    // The peer writes and closes its side before the reactor reads: epoll
    // reports the bytes and the end of stream in one edge. The short read
    // that drains the bytes must not make the next read wait for another.
    let config = RuntimeConfig { reactors: 1, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&config, &[]).unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (result_tx, result_rx) = std::sync::mpsc::channel();
    runtime
        .spawn_on(0, move || async move {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap(), false, 16).unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            time::sleep(Duration::from_millis(200)).await;
            let mut buf = [0u8; 1024];
            let first = stream.read(&mut buf).await.unwrap();
            let second = time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
            result_tx.send((first, second.map(Result::unwrap).ok())).unwrap();
        })
        .unwrap();
    use std::io::Write;
    let mut client = std::net::TcpStream::connect(addr_rx.recv().unwrap()).unwrap();
    client.write_all(b"last words").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let (first, second) = result_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(first, 10);
    assert_eq!(second, Some(0), "end of stream read at once, not after a timeout");
}

#[test]
fn an_idle_adaptive_reactor_sleeps_and_wakes_for_messages() {
    let config = RuntimeConfig { reactors: 1, idle: IdlePolicy::Adaptive { spin_us: 100 }, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&config, &[]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let stats = runtime.call_blocking(0, || async { keel_reactor::stats() }).unwrap();
    // Asleep almost all of the 200 ms: a spinning reactor would turn millions
    // of times.
    assert!(stats.turns < 10_000, "reactor kept turning while idle: {stats:?}");
    assert!(stats.sleeps >= 1);
    let started = Instant::now();
    let v = runtime.call_blocking(0, || async { 5 }).unwrap();
    assert_eq!(v, 5);
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Two reactors that fall asleep between almost every message (no spinning):
/// bursts of calls and their replies, each burst sent while the other side
/// sleeps, must all arrive. Only the first notifier of a sleep writes the
/// waker; a lost wake-up would hang a round here.
#[test]
fn bursts_of_calls_to_a_sleeping_reactor_all_complete() {
    let config = RuntimeConfig { reactors: 2, idle: IdlePolicy::Adaptive { spin_us: 0 }, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&config, &[]).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    runtime
        .spawn_on(0, move || async move {
            let mut sum = 0u64;
            for round in 0..200u64 {
                // Let reactor 1 fall asleep, then send it a burst.
                time::sleep(Duration::from_micros(200)).await;
                let calls: Vec<_> = (0..32u64)
                    .map(|i| spawn(async move { call_on(1, move || async move { round * 32 + i }).await.unwrap() }))
                    .collect();
                for call in calls {
                    sum += call.await;
                }
            }
            let _ = tx.send(sum);
        })
        .unwrap();
    let sum = rx.recv_timeout(Duration::from_secs(60)).expect("every call answered");
    assert_eq!(sum, (0..200 * 32).sum::<u64>());
    let woken = runtime.call_blocking(1, || async { keel_reactor::stats() }).unwrap();
    assert!(woken.sleeps >= 1, "reactor 1 never slept: {woken:?}");
    // A burst is pushed within one turn of reactor 0, far faster than reactor
    // 1 wakes, so it costs about one waker write, not one per call.
    assert!(woken.wakes_written <= 200 * 32 / 2, "a waker write per call: {woken:?}");
}

#[test]
fn stop_waits_for_io_in_flight() {
    let device = memory_device(None, 32);
    let config = RuntimeConfig { reactors: 2, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&config, &[Arc::clone(&device)]).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for r in 0..2 {
        let done = Arc::clone(&done);
        runtime
            .spawn_on(r, move || async move {
                for i in 0..100u64 {
                    let buf = io::alloc_buf(DEV, 4096).await.unwrap();
                    let (_, res) = io::write(DEV, i, buf, false).await;
                    res.unwrap();
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    runtime.stop();
    // Every buffer is back in the pool: nothing was abandoned mid-flight.
    assert_eq!(device.dma_pool().allocated_bytes(), 0);
}

#[test]
fn block_on_re_raises_a_panic_instead_of_hanging() {
    let result = std::panic::catch_unwind(|| block_on(&[], async { panic!("deliberate test panic") }));
    assert!(result.is_err());
}

/// Blocks reactor `reactor`'s thread until the returned sender is dropped or
/// sent to; returns once the reactor is blocked, so nothing it receives
/// meanwhile is run.
fn block_reactor(runtime: &Runtime, reactor: usize) -> std::sync::mpsc::Sender<()> {
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (blocked_tx, blocked_rx) = std::sync::mpsc::channel::<()>();
    runtime
        .spawn_on(reactor, move || async move {
            blocked_tx.send(()).unwrap();
            let _ = release_rx.recv();
        })
        .unwrap();
    blocked_rx.recv_timeout(Duration::from_secs(10)).expect("the reactor took the blocking task");
    release_tx
}

/// The calls that a turn's tasks make to one reactor leave in mailbox
/// entries of 8 (the outbox sends a queue each time it holds a multiple of
/// 8, and the rest at the end of the turn), and their replies, made in one
/// turn there, come back the same way.
#[test]
fn a_turns_calls_to_another_reactor_arrive_in_mailbox_entries_of_eight() {
    let config = RuntimeConfig { reactors: 2, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&config, &[]).unwrap();
    let before = [0, 1].map(|r| runtime.call_blocking(r, || async { keel_reactor::stats() }).unwrap());
    // Reactor 1 is held still while reactor 0's 100 calls are made, so they
    // are certainly in its mailbox together when it runs them.
    let release = block_reactor(&runtime, 1);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    runtime
        .spawn_on(0, move || async move {
            let calls: Vec<_> =
                (0..100u64).map(|i| spawn(async move { call_on(1, move || async move { i * 2 }).await })).collect();
            let mut sum = 0;
            for call in calls {
                sum += call.await.unwrap();
            }
            done_tx.send(sum).unwrap();
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(release);
    assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)).unwrap(), (0..100u64).map(|i| i * 2).sum::<u64>());
    let after = [0, 1].map(|r| runtime.call_blocking(r, || async { keel_reactor::stats() }).unwrap());
    let entries = |r: usize| after[r].mailbox_entries - before[r].mailbox_entries;
    let messages = |r: usize| after[r].messages - before[r].messages;
    // 100 messages in entries of 8: twelve full ones and one of 4.
    let batches = 100usize.div_ceil(8) as u64;
    // Reactor 1: the blocking task, the batches of 100 calls, the stats call.
    assert_eq!(messages(1), 102, "{:?}", after[1]);
    assert_eq!(entries(1), 2 + batches, "the calls came in entries of 8: {:?}", after[1]);
    // Reactor 0: the spawn_on, the batches of 100 replies, the stats call.
    assert_eq!(messages(0), 102, "{:?}", after[0]);
    assert_eq!(entries(0), 2 + batches, "the replies came in entries of 8: {:?}", after[0]);
}

/// Messages from one reactor to another run in the order they were sent;
/// when the destination does not drain its mailbox, a sender waits once the
/// mailbox (here 1 entry, taken by the first 8 messages) and its outbox
/// queue (256) are full, and goes on when the destination drains.
#[test]
fn messages_between_two_reactors_keep_their_order_and_senders_wait_at_the_bound() {
    let config = RuntimeConfig { reactors: 2, mailbox_capacity: 1, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&config, &[]).unwrap();
    let release = block_reactor(&runtime, 1);
    let sent = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    runtime
        .spawn_on(0, {
            let sent = Arc::clone(&sent);
            let received = Arc::clone(&received);
            move || async move {
                for i in 0..2000usize {
                    let received = Arc::clone(&received);
                    keel_reactor::send_to(1, move || received.lock().unwrap().push(i)).await.unwrap();
                    sent.store(i + 1, Ordering::SeqCst);
                }
                let last = call_on(1, || async { 0usize }).await.unwrap();
                done_tx.send(last).unwrap();
            }
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // The first 8 in the mailbox, a full queue in the outbox; the 265th waits.
    assert_eq!(sent.load(Ordering::SeqCst), 8 + 256, "back-pressure at the bound");
    drop(release);
    done_rx.recv_timeout(Duration::from_secs(10)).expect("the sender went on once the mailbox drained");
    assert_eq!(sent.load(Ordering::SeqCst), 2000);
    assert_eq!(*received.lock().unwrap(), (0..2000).collect::<Vec<_>>(), "in the order sent");
}

/// A panic in one call of a batch fails that call only; the others in the
/// same batch, and the replies batched with its error, arrive.
#[test]
fn a_panicking_call_in_a_batch_fails_alone() {
    let config = RuntimeConfig { reactors: 2, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&config, &[]).unwrap();
    let release = block_reactor(&runtime, 1);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    runtime
        .spawn_on(0, move || async move {
            let calls: Vec<_> = (0..20u64)
                .map(|i| {
                    spawn(async move {
                        call_on(1, move || async move {
                            assert!(i != 7, "deliberate test panic");
                            i
                        })
                        .await
                    })
                })
                .collect();
            let mut outcomes = Vec::new();
            for call in calls {
                outcomes.push(call.await);
            }
            done_tx.send(outcomes).unwrap();
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    drop(release);
    let outcomes = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let expected = if i == 7 { Err(CallError::Panicked(1)) } else { Ok(i as u64) };
        assert_eq!(outcome, expected, "call {i}");
    }
}

/// Stopping a runtime while messages wait in outboxes and mailboxes loses
/// none silently: each is run or dropped, once.
#[test]
fn stopping_with_messages_queued_runs_or_drops_each_once() {
    struct Token {
        dropped: Arc<AtomicUsize>,
    }
    impl Drop for Token {
        fn drop(&mut self) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
    let config = RuntimeConfig { reactors: 2, mailbox_capacity: 1, ..RuntimeConfig::default() };
    let runtime = Runtime::start(&config, &[]).unwrap();
    let release = block_reactor(&runtime, 1);
    let created = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    runtime
        .spawn_on(0, {
            let (created, dropped, ran) = (Arc::clone(&created), Arc::clone(&dropped), Arc::clone(&ran));
            move || async move {
                for _ in 0..1000 {
                    let token = Token { dropped: Arc::clone(&dropped) };
                    created.fetch_add(1, Ordering::SeqCst);
                    let ran = Arc::clone(&ran);
                    let _ = keel_reactor::send_to(1, move || {
                        let _token = token;
                        ran.fetch_add(1, Ordering::SeqCst);
                    })
                    .await;
                }
            }
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    runtime.handle().request_stop();
    drop(release);
    runtime.stop();
    let created = created.load(Ordering::SeqCst);
    // The first 8 fill the one-entry mailbox, 256 more the outbox queue; the
    // next one's sender waits at the bound.
    assert!(created > 8 + 256, "the sender was waiting at the bound: {created}");
    assert_eq!(dropped.load(Ordering::SeqCst), created, "every message run or dropped");
    assert!(ran.load(Ordering::SeqCst) <= created);
}
