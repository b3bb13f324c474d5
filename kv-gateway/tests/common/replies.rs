//! Reading RESP2/RESP3 replies off a raw socket, one whole reply at a time,
//! so a test can count replies and tell a reply from a closed connection.

use std::io::Read;
use std::net::TcpStream;

/// What the next read of a raw connection gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// One complete reply, as sent.
    Reply(Vec<u8>),
    /// The appliance closed the connection (or reset it).
    Closed,
}

/// Reads replies from a raw connection, keeping the bytes past the last one.
pub struct ReplyReader {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl ReplyReader {
    pub fn new(stream: TcpStream) -> ReplyReader {
        ReplyReader { stream, buf: Vec::new() }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// The next whole reply. Panics (the test fails, it does not hang) when
    /// nothing complete arrives within the stream's read timeout.
    pub fn next(&mut self) -> Next {
        loop {
            if let Some(n) = reply_len(&self.buf) {
                return Next::Reply(self.buf.drain(..n).collect());
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Next::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Next::Closed,
                Err(e) => panic!("no whole reply within the read timeout ({e}); partial: {:?}", clip(&self.buf)),
            }
        }
    }

    /// The next reply, which must exist (the connection must not close).
    pub fn reply(&mut self) -> Vec<u8> {
        match self.next() {
            Next::Reply(r) => r,
            Next::Closed => panic!("the connection closed where a reply was due"),
        }
    }

    /// The next reply as text, for assertions.
    pub fn text(&mut self) -> String {
        String::from_utf8_lossy(&self.reply()).into_owned()
    }
}

pub fn clip(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    if bytes.len() > 200 {
        format!("{text}... ({} bytes)", bytes.len())
    } else {
        text
    }
}

/// Length of the complete reply at the start of `buf`, if it is complete.
pub fn reply_len(buf: &[u8]) -> Option<usize> {
    let nl = buf.iter().position(|&b| b == b'\n')?;
    let head = &buf[1..nl.saturating_sub(1).max(1)];
    let number = || std::str::from_utf8(head).ok()?.parse::<i64>().ok();
    match buf[0] {
        b'+' | b'-' | b':' | b',' | b'_' | b'#' | b'(' => Some(nl + 1),
        b'$' | b'=' | b'!' => {
            let len = number()?;
            if len < 0 {
                return Some(nl + 1);
            }
            let total = nl + 1 + usize::try_from(len).ok()? + 2;
            (buf.len() >= total).then_some(total)
        }
        b'*' | b'~' | b'>' | b'%' => {
            let count = number()?;
            let items = if buf[0] == b'%' { 2 * count } else { count };
            let mut pos = nl + 1;
            for _ in 0..items.max(0) {
                pos += reply_len(&buf[pos..])?;
            }
            Some(pos)
        }
        other => panic!("not a RESP reply: starts with {:?}", char::from(other)),
    }
}

/// A request in RESP multibulk form.
pub fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}
