//! A small blocking RESP2 client: enough to drive any Redis-protocol server
//! (Keel or redis-server) from benchmark threads without an async runtime.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A reply from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

/// Longest bulk or array the client accepts (a bound against a broken peer).
const REPLY_ELEMENTS_MAX: usize = 64 << 20;

/// One connection.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    request: Vec<u8>,
}

impl Client {
    pub fn connect(addr: &str, password: Option<&str>) -> Result<Client, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut c = Client { reader: BufReader::with_capacity(64 << 10, stream), writer, request: Vec::new() };
        if let Some(p) = password {
            c.call(&[b"AUTH", p.as_bytes()])?;
        }
        Ok(c)
    }

    /// Sends one command and reads its reply; an error reply is an `Err`.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Value, String> {
        self.request.clear();
        self.request.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            self.request.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            self.request.extend_from_slice(a);
            self.request.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&self.request).map_err(|e| format!("write: {e}"))?;
        match self.read_value()? {
            Value::Error(e) => Err(e),
            v => Ok(v),
        }
    }

    fn read_line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    fn read_value(&mut self) -> Result<Value, String> {
        let line = self.read_line()?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let int = |s: &str| s.parse::<i64>().map_err(|_| format!("bad reply line {line:?}"));
        match kind {
            "+" => Ok(Value::Simple(rest.to_string())),
            "-" => Ok(Value::Error(rest.to_string())),
            ":" => Ok(Value::Integer(int(rest)?)),
            "$" => {
                let n = int(rest)?;
                if n < 0 {
                    return Ok(Value::Bulk(None));
                }
                let n = usize::try_from(n).map_err(|e| e.to_string())?.min(REPLY_ELEMENTS_MAX);
                let mut buf = vec![0u8; n + 2];
                self.reader.read_exact(&mut buf).map_err(|e| format!("read: {e}"))?;
                buf.truncate(n);
                Ok(Value::Bulk(Some(buf)))
            }
            "*" => {
                let n = int(rest)?;
                if n < 0 {
                    return Ok(Value::Array(None));
                }
                let n = usize::try_from(n).map_err(|e| e.to_string())?.min(REPLY_ELEMENTS_MAX);
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.read_value()?);
                }
                Ok(Value::Array(Some(items)))
            }
            _ => Err(format!("unexpected reply line {line:?}")),
        }
    }
}

impl Value {
    /// The elements of an array reply (empty for anything else).
    pub fn into_items(self) -> Vec<Value> {
        match self {
            Value::Array(Some(items)) => items,
            _ => Vec::new(),
        }
    }

    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Value::Bulk(b) => b,
            Value::Simple(s) => Some(s.into_bytes()),
            _ => None,
        }
    }
}
