//! The seam where gateways plug into `keel serve`.
//!
//! A gateway is a [`Service`]: started after the reactors and the engine are
//! up, stopped before them, in reverse order of starting. Each slot in
//! [`SLOTS`] says whether the configuration enables the gateway and how to
//! start it; a gateway's crate provides the starter (`keel_kv`, `keel_nfs`),
//! and its slot names it. A slot without a starter is a gateway this build
//! does not have yet: `serve` says so rather than pretend to listen.

use std::time::Instant;

use keel_config::Config;
use keel_engine::Engine;
use keel_reactor::Runtime;

/// A running gateway.
pub trait Service: std::fmt::Debug {
    /// Short name for messages ("kv").
    fn name(&self) -> &'static str;
    /// Where clients reach it, one line each ("redis 127.0.0.1:6379").
    fn endpoints(&self) -> Vec<String>;
    /// Stops accepting connections, finishes the requests in flight, closes
    /// the connections; gives up on stragglers at `deadline`.
    fn stop(self: Box<Self>, runtime: &Runtime, deadline: Instant) -> Result<(), String>;
}

/// What a gateway is started with.
#[derive(Debug)]
pub struct ServiceContext<'a> {
    pub config: &'a Config,
    pub runtime: &'a Runtime,
    pub engine: &'a Engine,
    /// Bytes in the shards' data regions (what file data may fill).
    pub data_bytes: u64,
}

pub type Starter = fn(&ServiceContext<'_>) -> Result<Box<dyn Service>, String>;

/// One gateway this binary knows about.
#[derive(Debug)]
pub struct Slot {
    pub name: &'static str,
    pub enabled: fn(&Config) -> bool,
    /// `None` until the gateway exists.
    pub start: Option<Starter>,
}

/// The gateways, in start order.
pub const SLOTS: &[Slot] = &[
    Slot { name: "kv", enabled: |c| c.kv.enabled, start: Some(crate::kv_service::start) },
    Slot { name: "nfs", enabled: |c| c.nfs.enabled, start: Some(crate::nfs_service::start) },
];

/// What `serve` prints for each slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    Running {
        endpoints: Vec<String>,
    },
    Disabled,
    /// Enabled in the configuration, but this build has no such gateway yet.
    NotBuilt,
}

/// The gateways started, and what to say about every slot.
#[derive(Debug)]
pub struct Started {
    pub running: Vec<Box<dyn Service>>,
    pub states: Vec<(&'static str, SlotState)>,
}

/// A gateway that failed to start, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct StartError {
    pub service: &'static str,
    pub reason: String,
}

/// Starts the enabled gateways of `slots` in order. On a failure, the ones
/// already started are stopped before the error is returned.
pub fn start_all(slots: &[Slot], context: &ServiceContext<'_>) -> Result<Started, StartError> {
    let mut running: Vec<Box<dyn Service>> = Vec::new();
    let mut states = Vec::new();
    for slot in slots {
        if !(slot.enabled)(context.config) {
            states.push((slot.name, SlotState::Disabled));
            continue;
        }
        let Some(start) = slot.start else {
            states.push((slot.name, SlotState::NotBuilt));
            continue;
        };
        match start(context) {
            Ok(service) => {
                tracing::info!(service = slot.name, endpoints = ?service.endpoints(), "gateway started");
                states.push((slot.name, SlotState::Running { endpoints: service.endpoints() }));
                running.push(service);
            }
            Err(reason) => {
                stop_all(running, context.runtime, Instant::now() + std::time::Duration::from_secs(5));
                return Err(StartError { service: slot.name, reason });
            }
        }
    }
    Ok(Started { running, states })
}

/// Stops gateways in reverse order of starting; failures are logged.
pub fn stop_all(services: Vec<Box<dyn Service>>, runtime: &Runtime, deadline: Instant) {
    for service in services.into_iter().rev() {
        let name = service.name();
        match service.stop(runtime, deadline) {
            Ok(()) => tracing::info!(service = name, "gateway stopped"),
            Err(reason) => tracing::warn!(service = name, %reason, "gateway did not stop cleanly"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

    #[derive(Debug)]
    struct Recorder(&'static str);

    impl Service for Recorder {
        fn name(&self) -> &'static str {
            self.0
        }
        fn endpoints(&self) -> Vec<String> {
            vec![format!("{} endpoint", self.0)]
        }
        fn stop(self: Box<Self>, _: &Runtime, _: Instant) -> Result<(), String> {
            EVENTS.lock().unwrap().push(format!("stop {}", self.0));
            Ok(())
        }
    }

    fn start_a(_: &ServiceContext<'_>) -> Result<Box<dyn Service>, String> {
        EVENTS.lock().unwrap().push("start a".into());
        Ok(Box::new(Recorder("a")))
    }

    fn start_b(_: &ServiceContext<'_>) -> Result<Box<dyn Service>, String> {
        EVENTS.lock().unwrap().push("start b".into());
        Ok(Box::new(Recorder("b")))
    }

    fn fail(_: &ServiceContext<'_>) -> Result<Box<dyn Service>, String> {
        Err("port in use".into())
    }

    #[test]
    fn gateways_start_in_order_stop_in_reverse_and_a_failure_unwinds() {
        let spec = keel_engine::testing::TestEngineSpec { reactors: 1, shards: 1, ..Default::default() };
        let (runtime, engine, _device) = keel_engine::testing::memory_engine(&spec);
        let config = Config::default();
        let context = ServiceContext { config: &config, runtime: &runtime, engine: &engine, data_bytes: 0 };
        let slots = [
            Slot { name: "a", enabled: |_| true, start: Some(start_a) },
            Slot { name: "off", enabled: |_| false, start: Some(start_b) },
            Slot { name: "later", enabled: |_| true, start: None },
            Slot { name: "b", enabled: |_| true, start: Some(start_b) },
        ];
        let Started { running, states } = start_all(&slots, &context).unwrap();
        assert_eq!(states[1], ("off", SlotState::Disabled));
        assert_eq!(states[2], ("later", SlotState::NotBuilt));
        assert_eq!(states[3], ("b", SlotState::Running { endpoints: vec!["b endpoint".into()] }));
        stop_all(running, &runtime, Instant::now());
        assert_eq!(*EVENTS.lock().unwrap(), ["start a", "start b", "stop b", "stop a"]);

        EVENTS.lock().unwrap().clear();
        let slots = [
            Slot { name: "a", enabled: |_| true, start: Some(start_a) },
            Slot { name: "broken", enabled: |_| true, start: Some(fail) },
        ];
        let err = start_all(&slots, &context).unwrap_err();
        assert_eq!(err, StartError { service: "broken", reason: "port in use".into() });
        assert_eq!(*EVENTS.lock().unwrap(), ["start a", "stop a"]);
        engine.close(&runtime).unwrap();
        runtime.stop();
    }
}
