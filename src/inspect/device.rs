//! The device section: what the driver reports.

use super::table::Table;
use super::InspectContext;
use crate::format::human_bytes;

pub fn section(context: &InspectContext<'_>) -> Table {
    let info = context.storage.device.info();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut table = Table::new("Device");
    table.row(["name", &info.name]);
    table.row(["location", &context.storage.location]);
    table.row(["logical block size", &format!("{} bytes", info.block_size_bytes)]);
    table.row(["capacity", &format!("{} ({} blocks)", human_bytes(info.capacity_bytes()), info.capacity_blocks)]);
    table.row(["volatile write cache", yes_no(info.volatile_write_cache)]);
    table.row(["FUA", yes_no(info.fua)]);
    table.row(["max transfer", &human_bytes(u64::from(info.max_transfer_bytes))]);
    table.row(["queue depth max", &info.queue_depth_max.to_string()]);
    table.row(["atomic write unit", &format!("{} block(s)", info.atomic_write_blocks)]);
    let pool = &context.storage.pool;
    let backing = if pool.is_hugepage_backed() { "2 MiB hugepages" } else { "ordinary pages" };
    table.row(["DMA pool", &format!("{}, {backing}", human_bytes(pool.size_bytes() as u64))]);
    table
}
