//! One client connection on a reactor: a reader that reassembles records
//! and starts a task per call (several calls of one client run at once, as
//! the Linux client pipelines them), and a writer that sends replies as
//! they finish, coalescing small ones into one system call.
//!
//! Bounded: at most `requests_in_flight_max` calls and
//! `bytes_in_flight_max` bytes of call records per connection; beyond
//! that the reader stops reading and TCP pushes back on the client.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use keel_reactor::net::TcpStream;

use crate::rpc::record::Record;
use crate::rpc::Deframer;
use crate::server::bulk;
use crate::server::dispatch::{dispatch_record, Outcome};
use crate::server::signal::{Notify, StopSignal};
use crate::server::Limits;
use crate::service::Service;

/// Replies smaller than this are gathered into one write.
const COALESCE_BYTES_MAX: usize = 64 * 1024;

struct Conn {
    stream: TcpStream,
    peer: IpAddr,
    outbox: RefCell<VecDeque<Vec<u8>>>,
    writer_wake: Notify,
    slot_freed: Notify,
    in_flight: Cell<usize>,
    in_flight_bytes: Cell<usize>,
    reading_done: Cell<bool>,
    broken: Cell<bool>,
}

/// Serves one connection until the client closes it, it breaks, or `stop`.
pub async fn serve(stream: TcpStream, peer: IpAddr, svc: Arc<Service>, limits: Limits, stop: Rc<StopSignal>) {
    let _ = stream.set_nodelay(true);
    let conn = Rc::new(Conn {
        stream,
        peer,
        outbox: RefCell::new(VecDeque::new()),
        writer_wake: Notify::default(),
        slot_freed: Notify::default(),
        in_flight: Cell::new(0),
        in_flight_bytes: Cell::new(0),
        reading_done: Cell::new(false),
        broken: Cell::new(false),
    });
    let writer = keel_reactor::spawn(write_loop(Rc::clone(&conn)));
    stop.run_until_stopped(read_loop(Rc::clone(&conn), svc, limits)).await;
    conn.reading_done.set(true);
    conn.writer_wake.notify();
    stop.run_until_stopped(writer).await;
    let _ = conn.stream.shutdown(std::net::Shutdown::Both);
    tracing::debug!(peer = %conn.peer, "connection closed");
}

async fn read_loop(conn: Rc<Conn>, svc: Arc<Service>, limits: Limits) {
    let splitter = bulk::splitter(svc.fs.engine().clone());
    let mut deframer = Deframer::with_splitter(limits.record_bytes_max, splitter);
    loop {
        while conn.in_flight.get() >= limits.requests_in_flight_max
            || conn.in_flight_bytes.get() >= limits.bytes_in_flight_max
        {
            conn.slot_freed.notified().await;
        }
        if conn.broken.get() {
            return;
        }
        match deframer.next_split_record() {
            Ok(Some(record)) => start_call(&conn, &svc, record),
            Ok(None) => match conn.stream.read(deframer.spare()).await {
                Ok(0) | Err(_) => {
                    deframer.filled(0);
                    return;
                }
                Ok(n) => deframer.filled(n),
            },
            Err(e) => {
                tracing::warn!(peer = %conn.peer, error = %e, "closing a connection with a bad record");
                return;
            }
        }
    }
}

fn start_call(conn: &Rc<Conn>, svc: &Arc<Service>, record: Record) {
    let len_bytes = record.head.len() + record.payload.as_ref().map_or(0, |p| p.len());
    conn.in_flight.set(conn.in_flight.get() + 1);
    conn.in_flight_bytes.set(conn.in_flight_bytes.get() + len_bytes);
    let (conn, svc) = (Rc::clone(conn), Arc::clone(svc));
    keel_reactor::spawn(async move {
        let outcome = dispatch_record(&svc, record, conn.peer).await;
        match outcome {
            Outcome::Reply(bytes) if !conn.broken.get() => conn.outbox.borrow_mut().push_back(bytes),
            Outcome::Reply(_) | Outcome::Silent => {}
            Outcome::Close => {
                tracing::warn!(peer = %conn.peer, "closing a connection after an unreadable message");
                conn.broken.set(true);
                let _ = conn.stream.shutdown(std::net::Shutdown::Read);
            }
        }
        conn.in_flight.set(conn.in_flight.get() - 1);
        conn.in_flight_bytes.set(conn.in_flight_bytes.get() - len_bytes);
        conn.slot_freed.notify();
        conn.writer_wake.notify();
    })
    .detach();
}

/// The next bytes to send: one reply, or several small ones joined.
fn next_batch(conn: &Conn) -> Option<Vec<u8>> {
    let mut outbox = conn.outbox.borrow_mut();
    let mut batch = outbox.pop_front()?;
    while let Some(next) = outbox.front() {
        if batch.len() + next.len() > COALESCE_BYTES_MAX {
            break;
        }
        batch.extend_from_slice(next);
        outbox.pop_front();
    }
    Some(batch)
}

async fn write_loop(conn: Rc<Conn>) {
    loop {
        match next_batch(&conn) {
            Some(batch) => {
                if conn.stream.write_all(&batch).await.is_err() {
                    conn.broken.set(true);
                    conn.outbox.borrow_mut().clear();
                    conn.slot_freed.notify();
                    return;
                }
            }
            None if conn.reading_done.get() && conn.in_flight.get() == 0 => return,
            None => conn.writer_wake.notified().await,
        }
    }
}
