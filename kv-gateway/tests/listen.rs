//! The gateway refuses a port another server already answers on (its
//! SO_REUSEPORT listeners would otherwise share the connections silently).

mod common;

use common::Appliance;
use keel_engine::testing::{memory_engine, TestEngineSpec};
use keel_kv::{KvConfig, KvError, KvServer};
use redis::cmd;

#[test]
fn a_second_gateway_on_a_port_in_use_is_refused_and_the_first_keeps_serving() {
    let first = Appliance::start();
    let (runtime, engine, _device) = memory_engine(&TestEngineSpec { reactors: 1, shards: 1, ..Default::default() });
    let listen = format!("127.0.0.1:{}", first.port).parse().unwrap();
    let err = KvServer::start(&runtime, engine, KvConfig { listen, ..KvConfig::default() }).unwrap_err();
    assert!(matches!(err, KvError::InUse { .. }), "{err}");
    runtime.stop();
    let mut c = first.client();
    assert_eq!(cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
}
