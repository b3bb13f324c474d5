//! `keel serve`: run the appliance until SIGINT or SIGTERM.
//!
//! Start-up: configuration, logging, signal handlers, the device, the volume
//! (created if the device is blank), the reactors, the engine, the gateways;
//! then the banner and READY=1. Shutdown, in reverse: STOPPING=1, the
//! watchdog, the gateways (stop accepting, drain), the engine, the volume
//! marked clean, the reactors (each finishes its I/O in flight).

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_config::{Config, IdleMode};
use keel_engine::{Engine, EngineConfig};
use keel_reactor::io::DeviceId;
use keel_reactor::{IdlePolicy, Runtime, RuntimeConfig};

use crate::cli::ServeArgs;
use crate::error::CliError;
use crate::services::{self, ServiceContext, SlotState};
use crate::storage::{self, Create};
use crate::systemd::{self, Notifier};
use crate::watchdog::Watchdog;
use crate::{banner, signals, volume};

/// How long gateways get to finish the requests in flight at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: &ServeArgs) -> Result<(), CliError> {
    let config = args.config.load()?;
    crate::logging::init(&config.log);
    let shutdown = signals::install().map_err(CliError::Signals)?;
    let notifier = Arc::new(Notifier::from_env());

    let storage = storage::open(&config, Create::IfMissing)?;
    let opened = volume::open_or_create(&storage, &config)?;
    let runtime = Runtime::start(&runtime_config(&config), &storage.devices())?;
    let shard_count = opened.superblock.layout.shard_count;
    let (engine, report) = Engine::open(&runtime, DeviceId(0), engine_config(&config, shard_count))?;
    if !report.was_clean {
        println!(
            "Recovered after an unclean shutdown: {} journal records replayed ({}).",
            report.records_replayed, report.journal_end_reason
        );
    }
    let opened = volume::Opened { superblock: engine.superblock(), ..opened };
    let layout = &opened.superblock.layout;
    let data_bytes = layout.pages_per_shard * u64::from(layout.shard_count) * keel_engine::layout::PAGE_BYTES as u64;
    let context = ServiceContext { config: &config, runtime: &runtime, engine: &engine, data_bytes };
    let services::Started { running, states } = services::start_all(services::SLOTS, &context)
        .map_err(|e| CliError::Service { service: e.service.to_owned(), reason: e.reason })?;
    for (name, state) in &states {
        if *state == SlotState::NotBuilt {
            tracing::warn!(gateway = name, "enabled in the configuration, but this build has no such gateway yet");
        }
    }

    banner::print(&config, &storage, &opened, &runtime, &states);
    notifier.notify(&format!("READY=1\nSTATUS=serving on {}", storage.location));
    let watchdog = match systemd::watchdog_timeout().filter(|_| notifier.is_active()) {
        Some(timeout) => {
            Some(Watchdog::start(runtime.handle(), Arc::clone(&notifier), timeout).map_err(CliError::Signals)?)
        }
        None => None,
    };

    let signal = shutdown.recv().ok();
    println!("{}: stopping (press Ctrl-C again to exit at once)", signal.map_or("shutdown", signals::name));
    tracing::info!("shutting down");
    notifier.notify("STOPPING=1\nSTATUS=stopping");
    if let Some(watchdog) = watchdog {
        watchdog.stop();
    }
    services::stop_all(running, &runtime, Instant::now() + DRAIN_TIMEOUT);
    // The final checkpoint marks the volume clean: nothing to replay next time.
    engine.close(&runtime)?;
    runtime.stop();
    println!("Stopped cleanly.");
    Ok(())
}

/// The engine's settings from `[engine]`. The cache budget is shared by all
/// shards; the node size is the internal node size (leaves stay small, see
/// the tree's configuration).
pub(crate) fn engine_config(config: &Config, shard_count: u32) -> EngineConfig {
    let mut engine = EngineConfig::default();
    engine.tree.cache_bytes = (config.engine.cache_size.bytes() / u64::from(shard_count.max(1))) as usize;
    engine.tree.internal_bytes = config.engine.node_size.bytes() as usize;
    engine.checkpoint_interval = config.engine.checkpoint_interval.get();
    engine.tree.background_maintenance = config.engine.background_maintenance;
    engine
}

fn runtime_config(config: &Config) -> RuntimeConfig {
    let reactors = &config.reactors;
    RuntimeConfig {
        reactors: reactors.effective_count(),
        cores: reactors.cores.clone(),
        idle: match reactors.idle {
            IdleMode::Poll => IdlePolicy::Poll,
            IdleMode::Adaptive => IdlePolicy::Adaptive { spin_us: reactors.spin_us },
        },
        mailbox_capacity: reactors.mailbox_capacity,
        queue_depth: reactors.queue_depth,
    }
}
