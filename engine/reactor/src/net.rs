//! Network readiness on the reactor: sockets registered with the reactor's
//! epoll instance (through `mio`, edge-triggered), wrapped as async types.
//!
//! The same epoll instance carries the reactor's cross-thread waker and the
//! devices' completion descriptors, so that an idle reactor sleeps in one
//! `epoll_wait` and anything that needs it wakes it.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use slab::Slab;

use crate::core::{current_uid, try_with_core, with_core};
use crate::io::Devices;

pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);
const DEVICE_TOKEN_BASE: usize = usize::MAX - 1024;
const EVENTS_PER_POLL_MAX: usize = 1024;

#[derive(Default)]
struct SourceState {
    readable: bool,
    writable: bool,
    /// The peer closed its side (or the socket failed): reads return at once
    /// from now on (end of stream or the error), so a short read does not
    /// clear read readiness. Edge-triggered epoll reports this only once.
    read_closed: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

/// One reactor's poller and the readiness of its sockets.
pub(crate) struct Net {
    poll: RefCell<mio::Poll>,
    events: RefCell<Events>,
    sources: RefCell<Slab<SourceState>>,
}

impl Net {
    pub fn new(poll: mio::Poll, devices: &Devices) -> io::Result<Self> {
        let fds = devices.completion_fds();
        for &(index, fd) in &fds {
            let token = Token(DEVICE_TOKEN_BASE + index);
            poll.registry().register(&mut SourceFd(&fd), token, Interest::READABLE)?;
        }
        Ok(Net {
            poll: RefCell::new(poll),
            events: RefCell::new(Events::with_capacity(EVENTS_PER_POLL_MAX)),
            sources: RefCell::new(Slab::new()),
        })
    }

    /// Waits up to `timeout` (`None`: forever) for readiness and wakes the
    /// tasks waiting on it. A zero timeout is skipped entirely when nothing
    /// is registered, to spare the system call.
    pub fn poll(&self, timeout: Option<Duration>, _devices: &Devices) -> bool {
        if timeout == Some(Duration::ZERO) && self.sources.borrow().is_empty() {
            return false;
        }
        let mut events = self.events.borrow_mut();
        if let Err(e) = self.poll.borrow_mut().poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!(error = %e, "epoll_wait failed");
            }
            return false;
        }
        let mut worked = false;
        let mut sources = self.sources.borrow_mut();
        for event in events.iter() {
            let token = event.token();
            if token == WAKER_TOKEN || token.0 >= DEVICE_TOKEN_BASE {
                // Devices are polled every turn; waking is all this was for.
                worked = true;
                continue;
            }
            let Some(state) = sources.get_mut(token.0) else {
                continue;
            };
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                state.readable = true;
                state.read_closed |= event.is_read_closed() || event.is_error();
                if let Some(w) = state.read_waker.take() {
                    w.wake();
                }
            }
            if event.is_writable() || event.is_write_closed() || event.is_error() {
                state.writable = true;
                if let Some(w) = state.write_waker.take() {
                    w.wake();
                }
            }
            worked = true;
        }
        worked
    }

    pub fn clear_wakers(&self) {
        for (_, state) in self.sources.borrow_mut().iter_mut() {
            state.read_waker = None;
            state.write_waker = None;
        }
    }

    fn register(&self, source: &mut impl Source) -> io::Result<usize> {
        let mut sources = self.sources.borrow_mut();
        let entry = sources.vacant_entry();
        let key = entry.key();
        assert!(key < DEVICE_TOKEN_BASE, "socket table overflow");
        self.poll.borrow().registry().register(source, Token(key), Interest::READABLE | Interest::WRITABLE)?;
        entry.insert(SourceState { readable: true, writable: true, ..SourceState::default() });
        Ok(key)
    }

    fn deregister(&self, source: &mut impl Source, key: usize) {
        let _ = self.poll.borrow().registry().deregister(source);
        let mut sources = self.sources.borrow_mut();
        if sources.contains(key) {
            sources.remove(key);
        }
    }
}

/// An I/O object registered with the calling reactor. It must be used and
/// dropped on that reactor.
#[derive(Debug)]
pub struct Async<T: Source> {
    io: Option<T>,
    key: usize,
    uid: u64,
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

impl<T: Source> Async<T> {
    /// Registers `io` (already non-blocking) with the calling reactor.
    pub fn new(mut io: T) -> io::Result<Self> {
        let key = with_core(|core| core.net.register(&mut io))?;
        Ok(Async { io: Some(io), key, uid: current_uid() })
    }

    pub fn get_ref(&self) -> &T {
        self.io.as_ref().expect("Async used after into_inner")
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.io.as_mut().expect("Async used after into_inner")
    }

    /// Deregisters and returns the inner object.
    pub fn into_inner(mut self) -> T {
        let mut io = self.io.take().expect("Async used after into_inner");
        let key = self.key;
        with_core(|core| core.net.deregister(&mut io, key));
        io
    }

    fn poll_ready(&self, direction: Direction, cx: &Context<'_>) -> Poll<()> {
        assert_eq!(self.uid, current_uid(), "an Async socket was used off the reactor that registered it");
        with_core(|core| {
            let mut sources = core.net.sources.borrow_mut();
            let state = sources.get_mut(self.key).expect("registered source");
            let (ready, waker) = match direction {
                Direction::Read => (state.readable, &mut state.read_waker),
                Direction::Write => (state.writable, &mut state.write_waker),
            };
            if ready {
                return Poll::Ready(());
            }
            match waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }

    fn clear_ready(&self, direction: Direction) {
        with_core(|core| {
            if let Some(state) = core.net.sources.borrow_mut().get_mut(self.key) {
                match direction {
                    Direction::Read => state.readable = false,
                    Direction::Write => state.writable = false,
                }
            }
        });
    }

    /// After a short read: the receive queue is empty, so the next read may
    /// wait for epoll — unless the peer has closed its side, which
    /// edge-triggered epoll reported once, maybe together with the bytes this
    /// read took: then the next read must run at once and see end of stream.
    fn clear_read_ready_unless_closed(&self) {
        with_core(|core| {
            if let Some(state) = core.net.sources.borrow_mut().get_mut(self.key) {
                state.readable = state.read_closed;
            }
        });
    }

    /// Runs `op` until it stops returning `WouldBlock`, sleeping on read
    /// readiness in between.
    pub async fn read_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.io_with(Direction::Read, |io| op(io)).await
    }

    /// Runs `op` until it stops returning `WouldBlock`, sleeping on write
    /// readiness in between.
    pub async fn write_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.io_with(Direction::Write, |io| op(io)).await
    }

    async fn io_with<R>(&self, direction: Direction, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        loop {
            std::future::poll_fn(|cx| self.poll_ready(direction, cx)).await;
            match op(self.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear_ready(direction),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }
}

impl<T: Source> Drop for Async<T> {
    fn drop(&mut self) {
        if let Some(mut io) = self.io.take() {
            let key = self.key;
            try_with_core(|core| core.net.deregister(&mut io, key));
        }
    }
}

/// A TCP listener on the calling reactor.
#[derive(Debug)]
pub struct TcpListener {
    inner: Async<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds `addr`. With `reuse_port`, several reactors may each bind the same
    /// address and the kernel spreads connections over them.
    pub fn bind(addr: SocketAddr, reuse_port: bool, backlog: u32) -> io::Result<Self> {
        let domain = socket2::Domain::for_address(addr);
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        Self::from_std(socket.into())
    }

    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener { inner: Async::new(mio::net::TcpListener::from_std(listener))? })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Waits for a connection. The stream is registered with the calling
    /// reactor; use [`TcpStream::into_std`] to hand it to another one.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = self.inner.read_with(|l| l.accept()).await?;
        Ok((TcpStream { inner: Async::new(stream)? }, addr))
    }
}

/// A TCP connection on the calling reactor.
#[derive(Debug)]
pub struct TcpStream {
    inner: Async<mio::net::TcpStream>,
}

impl TcpStream {
    /// Adopts a connected std stream (for example one handed over by another
    /// reactor).
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(TcpStream { inner: Async::new(mio::net::TcpStream::from_std(stream))? })
    }

    /// Deregisters the stream so that it can move to another reactor.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        let stream = self.inner.into_inner();
        let fd = std::os::fd::OwnedFd::from(stream);
        Ok(std::net::TcpStream::from(fd))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.get_ref().set_nodelay(nodelay)
    }

    /// Reads what is available (at least one byte), or 0 at end of stream.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        let n = self.inner.read_with(|mut s| s.read(buf)).await?;
        if n > 0 && n < len {
            // A short read emptied the receive queue: the next read waits for
            // readiness instead of spending a system call on EWOULDBLOCK (one
            // per request of a request-reply client). Edge-triggered epoll
            // reports data that arrives after this read as a new event.
            self.inner.clear_read_ready_unless_closed();
        }
        Ok(n)
    }

    /// Writes some of `buf`.
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_with(|mut s| s.write(buf)).await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Shuts down one or both halves.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.inner.get_ref().shutdown(how)
    }
}
