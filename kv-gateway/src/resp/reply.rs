//! Replies and their encoding in RESP2 or RESP3.
//!
//! Commands build a protocol-neutral [`Reply`]; the connection encodes it in
//! the protocol the client chose with HELLO. RESP3-only types degrade to their
//! RESP2 forms: maps become flat arrays, doubles become bulk strings, null
//! becomes the null bulk string, booleans become integers.

use std::io::Write;

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// A reply to one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`.
    Ok,
    Simple(String),
    /// An error line; the text starts with its code (`ERR`, `WRONGTYPE`, ...).
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// Absent value: `$-1` in RESP2, `_` in RESP3.
    Nil,
    /// Absent array: `*-1` in RESP2, `_` in RESP3.
    NilArray,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Double(f64),
}

impl Reply {
    pub fn error(code_and_text: impl Into<String>) -> Reply {
        Reply::Error(code_and_text.into())
    }

    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(bytes.into())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the encoding of `self` to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut Vec<u8>) {
        match self {
            Reply::Ok => out.extend_from_slice(b"+OK\r\n"),
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Error(s) => line(out, b'-', s.as_bytes()),
            Reply::Integer(v) => header(out, b':', *v),
            Reply::Bulk(b) => bulk(out, b),
            Reply::Nil => out.extend_from_slice(if protocol == Protocol::Resp3 { b"_\r\n" } else { b"$-1\r\n" }),
            Reply::NilArray => out.extend_from_slice(if protocol == Protocol::Resp3 { b"_\r\n" } else { b"*-1\r\n" }),
            Reply::Array(items) => {
                header(out, b'*', items.len() as i64);
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Reply::Map(pairs) => {
                if protocol == Protocol::Resp3 {
                    header(out, b'%', pairs.len() as i64);
                } else {
                    header(out, b'*', 2 * pairs.len() as i64);
                }
                for (k, v) in pairs {
                    k.encode(protocol, out);
                    v.encode(protocol, out);
                }
            }
            Reply::Double(d) => {
                let text = format_double(*d);
                if protocol == Protocol::Resp3 {
                    line(out, b',', text.as_bytes());
                } else {
                    bulk(out, text.as_bytes());
                }
            }
        }
    }

    /// An upper estimate of the encoded size, used to bound output buffers
    /// before encoding.
    pub fn size_hint_bytes(&self) -> usize {
        match self {
            Reply::Bulk(b) => b.len() + 16,
            Reply::Simple(s) | Reply::Error(s) => s.len() + 3,
            Reply::Array(items) => 16 + items.iter().map(Reply::size_hint_bytes).sum::<usize>(),
            Reply::Map(pairs) => {
                16 + pairs.iter().map(|(k, v)| k.size_hint_bytes() + v.size_hint_bytes()).sum::<usize>()
            }
            _ => 32,
        }
    }
}

fn line(out: &mut Vec<u8>, marker: u8, text: &[u8]) {
    out.push(marker);
    // A status or error line must not contain CR or LF: it would break framing.
    out.extend(text.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.extend_from_slice(b"\r\n");
}

fn header(out: &mut Vec<u8>, marker: u8, value: i64) {
    out.push(marker);
    let _ = write!(out, "{value}");
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    header(out, b'$', bytes.len() as i64);
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Formats a score as Redis does: integers without a fraction, `inf`/`-inf`,
/// otherwise the shortest text that reads back to the same double.
pub fn format_double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d == d.trunc() && d.abs() < 1e17 {
        return format!("{}", d as i64);
    }
    format!("{d}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, p: Protocol) -> String {
        let mut out = Vec::new();
        r.encode(p, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn resp3_types_degrade_to_resp2_forms() {
        let map = Reply::Map(vec![(Reply::bulk("f"), Reply::Double(1.5))]);
        assert_eq!(enc(&map, Protocol::Resp3), "%1\r\n$1\r\nf\r\n,1.5\r\n");
        assert_eq!(enc(&map, Protocol::Resp2), "*2\r\n$1\r\nf\r\n$3\r\n1.5\r\n");
        assert_eq!(enc(&Reply::Nil, Protocol::Resp2), "$-1\r\n");
        assert_eq!(enc(&Reply::Nil, Protocol::Resp3), "_\r\n");
    }

    #[test]
    fn error_lines_cannot_break_framing() {
        assert_eq!(enc(&Reply::error("ERR a\r\nb"), Protocol::Resp2), "-ERR a  b\r\n");
    }

    #[test]
    fn doubles_format_like_redis() {
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(-0.25), "-0.25");
        assert_eq!(format_double(f64::INFINITY), "inf");
    }
}
