//! The tree sections: each shard's shape at its durable checkpoint (height,
//! nodes and fill per level), its space and what its cache budget covers,
//! and on request every block.

use keel_engine::layout::PAGE_BYTES;
use keel_tree::{FsckReport, LevelShape};

use super::table::Table;
use super::InspectContext;
use crate::format::human_bytes;

fn reports<'a>(context: &'a InspectContext<'_>) -> Option<impl Iterator<Item = (u32, &'a FsckReport)>> {
    let check = context.check.as_ref()?;
    Some(check.shards.iter().filter(|s| !s.never_checkpointed).filter_map(|s| Some((s.shard, s.result.as_ref().ok()?))))
}

/// "L2 1 / L1 12 / L0 800": nodes per level, root first.
fn per_level(levels: &[LevelShape], cell: impl Fn(usize, &LevelShape) -> String) -> String {
    let parts: Vec<String> = levels.iter().enumerate().rev().map(|(h, l)| format!("L{h} {}", cell(h, l))).collect();
    parts.join(" / ")
}

pub fn shape(context: &InspectContext<'_>) -> Option<Table> {
    let tree = crate::commands::serve::engine_config(context.config, context.shard_count()).tree;
    let mut table = Table::new("Trees (durable checkpoint; L0 = leaves, fill = mean node size / target)").header([
        "shard",
        "height",
        "nodes per level",
        "fill per level",
        "entries",
        "buffered messages",
        "extents",
    ]);
    for (shard, r) in reports(context)? {
        let target = |h: usize| if h == 0 { tree.leaf_bytes } else { tree.internal_bytes };
        table.row([
            shard.to_string(),
            r.height.to_string(),
            per_level(&r.levels, |_, l| l.nodes.to_string()),
            per_level(&r.levels, |h, l| format!("{:.0}%", 100.0 * l.fill(target(h)))),
            r.entries.to_string(),
            r.buffered_messages.to_string(),
            format!("{} ({})", r.extents, human_bytes(r.extent_bytes)),
        ]);
    }
    if let Some(check) = &context.check {
        for s in &check.shards {
            if let Err(e) = &s.result {
                table.row([s.shard.to_string(), format!("unreadable: {e}")]);
            } else if s.never_checkpointed {
                table.row([s.shard.to_string(), "empty (never checkpointed)".to_owned()]);
            }
        }
    }
    Some(table)
}

pub fn space(context: &InspectContext<'_>) -> Option<Table> {
    let tree = crate::commands::serve::engine_config(context.config, context.shard_count()).tree;
    let pages = |n: u64| human_bytes(n * PAGE_BYTES as u64);
    let mut table = Table::new(format!(
        "Space and cache per shard (cache budget {} per shard: engine.cache_size / shards)",
        human_bytes(tree.cache_bytes as u64)
    ))
    .header(["shard", "region", "in use", "free", "nodes", "extents", "metadata", "nodes / cache budget"]);
    for (shard, r) in reports(context)? {
        let node_bytes: u64 = r.levels.iter().map(|l| l.bytes).sum();
        let in_use_percent = 100.0 * r.pages_in_use as f64 / r.region_pages.max(1) as f64;
        table.row([
            shard.to_string(),
            pages(r.region_pages),
            format!("{} ({in_use_percent:.1}%)", pages(r.pages_in_use)),
            pages(r.region_pages - r.pages_in_use.min(r.region_pages)),
            human_bytes(node_bytes),
            human_bytes(r.extent_bytes),
            pages(r.metadata_pages),
            format!("{:.2}x", node_bytes as f64 / tree.cache_bytes.max(1) as f64),
        ]);
    }
    Some(table)
}

pub fn blocks(context: &InspectContext<'_>) -> Option<Table> {
    let maps = context.blocks.as_ref()?;
    let mut table = Table::new("Blocks of the durable checkpoints (absolute pages)")
        .header(["shard", "kind", "page", "pages", "node id"]);
    for m in maps {
        match &m.blocks {
            Ok(blocks) => {
                for b in blocks {
                    table.row([
                        m.shard.to_string(),
                        b.kind.to_string(),
                        (m.first_page + b.address).to_string(),
                        b.pages.to_string(),
                        b.node.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                    ]);
                }
            }
            Err(e) => table.row([m.shard.to_string(), format!("unreadable: {e}")]),
        }
    }
    Some(table)
}
