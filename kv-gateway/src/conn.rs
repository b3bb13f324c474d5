//! One client connection: read, decode, execute in order, wait for
//! durability, reply in order.
//!
//! Everything one read delivered (a pipeline) is decoded into a batch. The
//! batch runs in request order; consecutive single-key commands whose keys
//! live on the same reactor travel there together in one message and run
//! there one after the other, so a pipeline of 16 costs a few cross-core
//! hops, not 16. Replies are encoded in order; in `always` mode they are
//! written only once the highest LSN among them is durable — one wait covers
//! the whole batch, and concurrent connections share the journal's flushes
//! (group commit); the wait first yields so that the other connections a
//! reactor pass found ready join the same journal batch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keel_engine::route;
use keel_reactor::net::TcpStream;
use keel_reactor::{call_on, time, CallError};

use crate::cmd::{self, ExecLimits, Outcome, Route, Spec};
use crate::config::Durability;
use crate::duplex;
use crate::input::InputBuffer;
use crate::resp::{Decoder, Frame, Protocol, Reply};
use crate::server::{ClientSlot, Shared, TaskGuard, STOP_POLL};
use crate::session::Session;
use crate::stats::Stats;

/// Bytes read per system call, at least.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Replies are written out (after their durability wait) once this much
/// has accumulated, so one large pipeline does not hold them all.
const OUTPUT_FLUSH_BYTES: usize = 64 << 10;

/// Framing the input may hold beside a request's argument bytes: the decoder
/// keeps only the argument being received, with its `$N` line and CRLF. A
/// request of exactly the query buffer limit (keel serve sets the request
/// limit to it) fits with these.
const QUERY_FRAMING_BYTES: usize = 64;

/// Most commands sent to another reactor in one message: bounds the replies
/// one message brings back before the connection can flush them.
const GROUP_COMMANDS_MAX: usize = 128;

/// One decoded request, planned for execution.
enum Planned {
    /// A reply known without executing (arity errors, NOAUTH, refusals).
    Immediate(Reply),
    Session(&'static Spec, Vec<Vec<u8>>),
    /// A data command to run on `reactor`.
    Data(usize, Vec<Vec<u8>>),
}

/// Replies waiting to be written, and the LSN they wait for.
struct Output {
    bytes: Vec<u8>,
    lsn_needed: u64,
    /// Largest single reply among `bytes`: the output buffer limit applies
    /// to one reply. Replies together may pass it (a group run on another
    /// reactor comes back whole); they are written out as the batch goes.
    reply_bytes_max: usize,
}

pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    shared: Arc<Shared>,
    _slot: ClientSlot,
    _guard: TaskGuard,
) {
    let mut session = Session::new(id, peer, Arc::clone(&shared));
    match serve_loop(&stream, &mut session).await {
        Ok(()) => tracing::debug!(%peer, id, "client closed"),
        Err(e) => tracing::debug!(%peer, id, error = %e, "client connection ended"),
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

async fn serve_loop(stream: &TcpStream, session: &mut Session) -> std::io::Result<()> {
    let shared = Arc::clone(&session.shared);
    let config = &shared.config;
    let mut decoder = Decoder::new(config.decode);
    let mut input = InputBuffer::new(READ_CHUNK_BYTES);
    let mut output = Output { bytes: Vec::with_capacity(READ_CHUNK_BYTES), lsn_needed: 0, reply_bytes_max: 0 };
    loop {
        // Requests read while the last replies were written come first.
        if !input.undecoded() && read_some(stream, &mut input, session).await? == 0 {
            return Ok(());
        }
        let (batch, fatal) = decode_batch(&mut decoder, &mut input);
        if input.pending_len() > config.query_buffer_bytes_max.saturating_add(QUERY_FRAMING_BYTES) {
            Stats::add(&shared.stats.protocol_errors, 1);
            write_error_and_close(stream, session, "ERR Protocol error: query buffer limit exceeded").await;
            return Ok(());
        }
        run_batch(stream, session, batch, &mut output, &mut input).await?;
        if let Some(why) = fatal {
            Stats::add(&shared.stats.protocol_errors, 1);
            flush(stream, session, &mut output, &mut input).await?;
            write_error_and_close(stream, session, &format!("ERR {why}")).await;
            return Ok(());
        }
        flush(stream, session, &mut output, &mut input).await?;
        if session.closing {
            return Ok(());
        }
    }
}

/// Reads at least one byte into `input` (0 at end of stream), closing idle
/// connections and noticing a stopping gateway.
async fn read_some(stream: &TcpStream, input: &mut InputBuffer, session: &Session) -> std::io::Result<usize> {
    let idle_timeout = session.shared.config.idle_timeout;
    let mut idle = Duration::ZERO;
    let result = loop {
        if session.shared.stopping() || keel_reactor::stopping() {
            break Ok(0);
        }
        match time::timeout(STOP_POLL, stream.read(input.spare())).await {
            Ok(r) => break r,
            Err(_) => {
                idle += STOP_POLL;
                if idle_timeout.is_some_and(|limit| idle >= limit) {
                    tracing::debug!(peer = %session.peer, "closing idle client");
                    break Ok(0);
                }
            }
        }
    };
    input.filled(*result.as_ref().unwrap_or(&0));
    result
}

/// Decodes every complete request in `input`, dropping the bytes consumed.
/// Returns the requests and the fatal protocol error that ended decoding.
fn decode_batch(decoder: &mut Decoder, input: &mut InputBuffer) -> (Vec<Frame>, Option<String>) {
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut fatal = None;
    loop {
        let (n, frame) = decoder.decode(&input.pending()[pos..]);
        pos += n;
        match frame {
            Some(Frame::Fatal(why)) => {
                fatal = Some(why);
                break;
            }
            Some(f) => frames.push(f),
            None if n == 0 => break,
            None => {}
        }
    }
    input.consume(pos);
    (frames, fatal)
}

fn plan(session: &Session, frame: Frame) -> Planned {
    let args = match frame {
        Frame::Command(args) => args,
        Frame::Refused(why) => return Planned::Immediate(Reply::error(format!("ERR {why}"))),
        Frame::Fatal(why) => return Planned::Immediate(Reply::error(format!("ERR {why}"))),
    };
    let Some(spec) = cmd::lookup(&args[0]) else {
        return Planned::Immediate(unknown_command(&args));
    };
    if !cmd::arity_ok(spec, args.len()) {
        return Planned::Immediate(cmd::args::wrong_arity(spec.name));
    }
    if !session.authenticated && !Session::allowed_unauthenticated(spec.name) {
        return Planned::Immediate(Reply::error("NOAUTH Authentication required."));
    }
    let here = keel_reactor::reactor_id();
    let reactors = keel_reactor::reactor_count();
    // With one reactor every shard is here: no need to hash the key to know.
    let owner = |key: &[u8]| {
        if reactors == 1 {
            return here;
        }
        route::reactor_of(session.shared.db.shard_of_key(key), reactors)
    };
    match spec.route {
        Route::Session => Planned::Session(spec, args),
        Route::Key => Planned::Data(owner(&args[1]), args),
        Route::Keys if args.len() == 2 || (spec.name == "mset" && args.len() == 3) => {
            Planned::Data(owner(&args[1]), args)
        }
        Route::Keys | Route::Global => Planned::Data(here, args),
    }
}

fn unknown_command(args: &[Vec<u8>]) -> Reply {
    let mut text = format!("ERR unknown command '{}', with args beginning with: ", clip(&args[0]));
    for a in args.iter().skip(1).take(8) {
        text += &format!("'{}' ", clip(a));
    }
    Reply::error(text)
}

fn clip(arg: &[u8]) -> String {
    String::from_utf8_lossy(&arg[..arg.len().min(128)]).into_owned()
}

/// Runs a batch in order, appending replies to `output`.
async fn run_batch(
    stream: &TcpStream,
    session: &mut Session,
    frames: Vec<Frame>,
    output: &mut Output,
    input: &mut InputBuffer,
) -> std::io::Result<()> {
    let shared = Arc::clone(&session.shared);
    Stats::add(&shared.stats.commands_total, frames.len() as u64);
    let mut group: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut group_reactor = usize::MAX;
    for frame in frames {
        if session.closing {
            break;
        }
        let planned = plan(session, frame);
        if let Planned::Data(reactor, args) = planned {
            if (reactor != group_reactor || group.len() >= GROUP_COMMANDS_MAX) && !group.is_empty() {
                run_group(session, group_reactor, std::mem::take(&mut group), output).await;
                if output.bytes.len() >= OUTPUT_FLUSH_BYTES {
                    flush(stream, session, output, input).await?;
                }
            }
            group_reactor = reactor;
            group.push(args);
            continue;
        }
        if !group.is_empty() {
            run_group(session, group_reactor, std::mem::take(&mut group), output).await;
        }
        match planned {
            Planned::Immediate(reply) => push_reply(session, output, &reply, None),
            Planned::Session(spec, args) => {
                let reply = session.run(spec, &args).await;
                push_reply(session, output, &reply, None);
            }
            Planned::Data(..) => unreachable!("data commands are grouped above"),
        }
        if output.bytes.len() >= OUTPUT_FLUSH_BYTES {
            flush(stream, session, output, input).await?;
        }
    }
    if !group.is_empty() {
        run_group(session, group_reactor, group, output).await;
    }
    Ok(())
}

/// Runs consecutive data commands on `reactor`, in order, in one message.
async fn run_group(session: &mut Session, reactor: usize, group: Vec<Vec<Vec<u8>>>, output: &mut Output) {
    let shared = Arc::clone(&session.shared);
    let resp3 = session.protocol == Protocol::Resp3;
    let limits = ExecLimits { value_bytes_max: shared.config.decode.bulk_bytes_max };
    let count = group.len();
    let outcomes =
        call_on(reactor, move || async move { cmd::execute_group(&shared.db, &group, resp3, limits).await }).await;
    match outcomes {
        Ok(outcomes) => {
            for outcome in outcomes {
                push_outcome(session, output, outcome);
            }
        }
        Err(e) => {
            let reply = call_failed_reply(e);
            for _ in 0..count {
                push_reply(session, output, &reply, None);
            }
        }
    }
}

/// The reply to each command of a group whose call to its reactor failed:
/// the reactor is stopping, or (a bug) the commands panicked there; the
/// commands' outcome is then unknown, and the reply says so.
fn call_failed_reply(e: CallError) -> Reply {
    match e {
        CallError::Panicked(reactor) => {
            tracing::error!(reactor, "a command group panicked; its commands are answered with an error");
            Reply::error(format!(
                "ERR internal error: the command failed on reactor {reactor} and may or may not have been applied \
                 (a bug; it is logged)"
            ))
        }
        CallError::Stopped(_) | CallError::Cancelled | CallError::NoSuchReactor(_) => {
            Reply::error(format!("ERR the appliance is shutting down ({e})"))
        }
    }
}

fn push_outcome(session: &mut Session, output: &mut Output, outcome: Outcome) {
    push_reply(session, output, &outcome.reply, outcome.lsn);
}

fn push_reply(session: &mut Session, output: &mut Output, reply: &Reply, lsn: Option<u64>) {
    if let Some(lsn) = lsn {
        session.lsn_last_write = session.lsn_last_write.max(lsn);
        session.shared.note_write(lsn);
        if session.shared.config.durability == Durability::Always {
            output.lsn_needed = output.lsn_needed.max(lsn);
        }
    }
    let before = output.bytes.len();
    reply.encode(session.protocol, &mut output.bytes);
    output.reply_bytes_max = output.reply_bytes_max.max(output.bytes.len() - before);
}

/// Writes the pending replies once their writes are durable (in `always`
/// mode). A failed durability wait turns every pending reply into nothing:
/// the client must not be told a write succeeded, so the connection closes.
/// While the write waits for the socket, requests are read into `input`
/// (`duplex.rs`).
async fn flush(
    stream: &TcpStream,
    session: &Session,
    output: &mut Output,
    input: &mut InputBuffer,
) -> std::io::Result<()> {
    if output.bytes.is_empty() {
        return Ok(());
    }
    if output.reply_bytes_max > session.shared.config.output_buffer_bytes_max {
        tracing::warn!(peer = %session.peer, bytes = output.reply_bytes_max, "closing client: a reply over its output buffer limit");
        return Err(std::io::Error::other("output buffer limit exceeded"));
    }
    if output.lsn_needed > 0 {
        let engine = &session.shared.db.engine;
        if engine.lsn_durable() < output.lsn_needed {
            // The first durability wait of a reactor pass seals the journal's
            // open batch. Letting the other connections this pass found ready
            // commit first puts all their writes into that one batch (one
            // device write for the pass, as redis makes one fdatasync per
            // event-loop pass) instead of a batch for each connection.
            keel_reactor::yield_now().await;
        }
        if let Err(e) = engine.wait_durable(output.lsn_needed).await {
            tracing::error!(error = %e, "durability wait failed; closing the client without acknowledging");
            return Err(std::io::Error::other(e.to_string()));
        }
        output.lsn_needed = 0;
    }
    let input_bytes_max = session.shared.config.query_buffer_bytes_max;
    let result = duplex::write_all_reading(stream, &output.bytes, input, input_bytes_max).await;
    output.bytes.clear();
    output.reply_bytes_max = 0;
    if output.bytes.capacity() > 4 * OUTPUT_FLUSH_BYTES {
        output.bytes.shrink_to(OUTPUT_FLUSH_BYTES);
    }
    result
}

async fn write_error_and_close(stream: &TcpStream, session: &Session, text: &str) {
    let mut bytes = Vec::new();
    Reply::error(text.to_string()).encode(session.protocol, &mut bytes);
    let _ = time::timeout(Duration::from_secs(1), stream.write_all(&bytes)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(reply: Reply) -> String {
        let mut out = Vec::new();
        reply.encode(Protocol::Resp2, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn a_failed_call_says_whether_the_reactor_stopped_or_the_commands_panicked() {
        let panicked = text(call_failed_reply(CallError::Panicked(1)));
        assert!(panicked.starts_with("-ERR internal error"), "{panicked}");
        assert!(!panicked.contains("shutting down"), "{panicked}");
        for e in [CallError::Cancelled, CallError::Stopped(1)] {
            let stopping = text(call_failed_reply(e));
            assert!(stopping.contains("shutting down") && !stopping.contains("panicked"), "{stopping}");
        }
    }
}
