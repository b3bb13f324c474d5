//! A running appliance for tests: reactors, an engine and the gateway on an
//! ephemeral port of 127.0.0.1.
#![allow(dead_code)]

pub mod replies;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use keel_engine::testing::{memory_engine, TestEngineSpec};
use keel_engine::Engine;
use keel_kv::{KvConfig, KvServer};
use keel_reactor::Runtime;

pub struct Appliance {
    pub server: Option<KvServer>,
    pub engine: Engine,
    pub runtime: Option<Runtime>,
    pub port: u16,
}

impl Appliance {
    pub fn start() -> Appliance {
        Self::start_with(KvConfig::default())
    }

    pub fn start_with(mut config: KvConfig) -> Appliance {
        let (runtime, engine, _device) =
            memory_engine(&TestEngineSpec { reactors: 2, shards: 4, ..Default::default() });
        config.listen = "127.0.0.1:0".parse().unwrap();
        let server = KvServer::start(&runtime, engine.clone(), config).unwrap();
        let port = server.local_addr().port();
        Appliance { server: Some(server), engine, runtime: Some(runtime), port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }

    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.stop();
        }
    }
}

/// Sends raw bytes and reads until `expect_bytes` arrived or the peer closed.
pub fn exchange(stream: &mut TcpStream, request: &[u8], expect_bytes: usize) -> Vec<u8> {
    stream.write_all(request).unwrap();
    read_at_least(stream, expect_bytes)
}

pub fn read_at_least(stream: &mut TcpStream, expect_bytes: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.len() < expect_bytes {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read failed after {:?}: {e}", String::from_utf8_lossy(&got)),
        }
    }
    got
}

/// True when the peer has closed the connection.
pub fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}
