//! What `keel serve` prints once it is serving: where the data lives, the
//! device, the reactors, and what it listens on.

use keel_config::{Config, IdleMode};
use keel_engine::volume::format_uuid;
use keel_reactor::Runtime;

use crate::format::{human_bytes, unix_time};
use crate::services::SlotState;
use crate::storage::Storage;
use crate::volume::Opened;

/// The line a supervisor or a test can wait for.
pub const READY_LINE_PREFIX: &str = "Ready";

pub fn print(
    config: &Config,
    storage: &Storage,
    opened: &Opened,
    runtime: &Runtime,
    services: &[(&'static str, SlotState)],
) {
    let info = storage.device.info();
    let sb = &opened.superblock;
    let page_bytes = keel_engine::layout::PAGE_BYTES as u64;
    println!("keel {}", env!("CARGO_PKG_VERSION"));
    println!("  data       {}", storage.location);
    println!(
        "  device     {}: {}, {}-byte blocks{}",
        info.name,
        human_bytes(info.capacity_bytes()),
        info.block_size_bytes,
        if info.volatile_write_cache { ", volatile write cache (flushes issued)" } else { "" }
    );
    println!(
        "  volume     {} ({}), boot {}, {} shard(s), journal {}",
        format_uuid(&sb.volume_uuid),
        if opened.created { "created now".to_owned() } else { format!("created {}", unix_time(sb.created_unix_secs)) },
        sb.boot_counter,
        sb.layout.shard_count,
        human_bytes(sb.layout.journal_pages * page_bytes)
    );
    println!("  reactors   {}", reactors_line(config, runtime));
    let pool = &storage.pool;
    let backing = if pool.is_hugepage_backed() { "2 MiB hugepages" } else { "ordinary pages" };
    println!("  dma pool   {}, {backing}", human_bytes(pool.size_bytes() as u64));
    for (name, state) in services {
        println!("  {name:<10} {}", service_line(name, state));
    }
    println!("{READY_LINE_PREFIX} (pid {}). Press Ctrl-C to stop.", std::process::id());
}

fn reactors_line(config: &Config, runtime: &Runtime) -> String {
    let idle = match config.reactors.idle {
        IdleMode::Adaptive => format!("adaptive idle (spin {} us, then sleep)", config.reactors.spin_us),
        IdleMode::Poll => "poll idle (busy-polling)".to_owned(),
    };
    let pinning = match &config.reactors.cores {
        Some(cores) => format!("pinned to cores {cores:?}"),
        None => "unpinned".to_owned(),
    };
    format!("{}, {idle}, {pinning}", runtime.reactor_count())
}

fn service_line(name: &str, state: &SlotState) -> String {
    match state {
        SlotState::Running { endpoints } => endpoints.join(", "),
        SlotState::Disabled => "disabled".to_owned(),
        SlotState::NotBuilt => format!("not built yet in this version ({name}.enabled has no effect; nothing listens)"),
    }
}
