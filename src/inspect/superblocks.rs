//! The superblock section: every field of both copies, side by side, and the
//! shard regions of the copy in force.

use keel_engine::layout::PAGE_BYTES;
use keel_engine::superblock::{Superblock, FLAG_CLEAN, FORMAT_VERSION};
use keel_engine::volume::{format_uuid, SlotContents};

use super::table::Table;
use super::InspectContext;
use crate::format::{human_bytes, unix_time};

type Field = (&'static str, fn(&Superblock) -> String);

fn pages(n: u64) -> String {
    format!("{n} ({})", human_bytes(n * PAGE_BYTES as u64))
}

const FIELDS: &[Field] = &[
    ("generation", |s| s.generation.to_string()),
    ("format version", |_| FORMAT_VERSION.to_string()),
    ("volume uuid", |s| format_uuid(&s.volume_uuid)),
    ("block size at mkfs", |s| format!("{} bytes", s.device_block_bytes)),
    ("capacity pages", |s| pages(s.layout.capacity_pages)),
    ("journal start page", |s| s.layout.journal_start_page.to_string()),
    ("journal pages", |s| pages(s.layout.journal_pages)),
    ("data start page", |s| s.layout.data_start_page.to_string()),
    ("pages per shard", |s| pages(s.layout.pages_per_shard)),
    ("shard count", |s| s.layout.shard_count.to_string()),
    ("flags", |s| format!("{:#x} ({})", s.flags, if s.flags & FLAG_CLEAN != 0 { "clean" } else { "not clean" })),
    ("journal epoch", |s| s.journal_epoch.to_string()),
    ("journal head LSN", |s| s.journal_head_lsn.to_string()),
    ("journal head offset", |s| s.journal_head_offset.to_string()),
    ("boot counter", |s| s.boot_counter.to_string()),
    ("created", |s| unix_time(s.created_unix_secs)),
    ("last checkpoint", |s| unix_time(s.checkpoint_unix_secs)),
];

pub fn section(context: &InspectContext<'_>) -> Table {
    let pair = &context.pair;
    let in_force = pair.newest().map(|(page, _)| page);
    let mut table = Table::new("Superblocks").header(["field", "copy 0 (page 0)", "copy 1 (page 1)"]);
    let state = |page: usize| match &pair.slots[page] {
        SlotContents::Blank => "blank (all zero)".to_owned(),
        SlotContents::Valid(_) if in_force == Some(page) => "valid, in force".to_owned(),
        SlotContents::Valid(_) => "valid, older".to_owned(),
        SlotContents::Invalid(e) => format!("invalid: {e}"),
    };
    table.row(["state".to_owned(), state(0), state(1)]);
    for (name, value) in FIELDS {
        let cell = |page: usize| match &pair.slots[page] {
            SlotContents::Valid(sb) => value(sb),
            _ => "-".to_owned(),
        };
        table.row([(*name).to_owned(), cell(0), cell(1)]);
    }
    table
}

pub fn shards(context: &InspectContext<'_>) -> Option<Table> {
    let (_, sb) = context.pair.newest()?;
    let mut table = Table::new("Shards (copy in force)").header(["shard", "first page", "pages", "checkpoint state"]);
    for (shard, state) in sb.shard_states.iter().enumerate() {
        let (first, count) = sb.layout.shard_region(shard as u32);
        let described = if state.iter().all(|&b| b == 0) {
            "empty".to_owned()
        } else {
            let head: String = state[..16].iter().map(|b| format!("{b:02x}")).collect();
            format!("{head}…")
        };
        table.row([shard.to_string(), first.to_string(), pages(count), described]);
    }
    Some(table)
}
