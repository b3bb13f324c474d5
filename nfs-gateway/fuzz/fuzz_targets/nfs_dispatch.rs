//! Whole calls (any program, procedure and arguments) through the real
//! dispatcher of a running gateway on an in-memory engine: no input may
//! panic or wedge it; every call gets a reply, nothing, or a close.
#![no_main]

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use keel_engine::{Engine, Limits};
use keel_nfs::server::dispatch::dispatch;
use keel_nfs::service::Service;
use keel_nfs::{Gateway, GatewayConfig};
use keel_reactor::{Runtime, RuntimeConfig};
use libfuzzer_sys::fuzz_target;

struct World {
    runtime: Runtime,
    service: Arc<Service>,
    _gateway: Gateway,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = Runtime::start(&RuntimeConfig::default(), &[]).expect("runtime");
        let engine = Engine::open(&runtime, 2, Limits::default()).expect("engine");
        let mut config = GatewayConfig::for_tests();
        config.exports[0].allow_auth_none = true;
        let gateway = Gateway::start(&runtime, engine, config).expect("gateway");
        let service = Arc::clone(gateway.service());
        World { runtime, service, _gateway: gateway }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let service = Arc::clone(&w.service);
    let record = data.to_vec();
    w.runtime
        .call_blocking(0, move || async move {
            let _ = dispatch(&service, &record, IpAddr::from([127, 0, 0, 1])).await;
        })
        .expect("the reactor answers");
});
