//! `keel fsck`: check a volume, read only, and say what is wrong.
//!
//! Exit status: 0 when everything checked is consistent, 4 when problems
//! were found (as fsck(8) uses it: errors left uncorrected), 1 when the check
//! could not run at all (no device, bad configuration: 78).

use keel_engine::layout::PAGE_BYTES;

use keel_engine::check::VolumeCheck;
use keel_engine::fsck::ShardCheck;

use crate::check;
use crate::cli::FsckArgs;
use crate::error::CliError;
use crate::format::human_bytes;
use crate::inspect::Table;
use crate::storage::{self, Create};
use crate::{progress, volume};

pub fn run(args: &FsckArgs) -> Result<(), CliError> {
    let config = args.config.load()?;
    crate::logging::init(&config.log);
    if config.device.backend == keel_config::Backend::Memory {
        return Err(CliError::Usage(
            "the memory backend keeps nothing between runs, so there is no volume to check".into(),
        ));
    }
    let storage = storage::open(&config, Create::Never)?;
    let pair = volume::read_superblocks(&storage)?;
    if pair.is_blank() {
        return Err(CliError::Usage(format!("{} is blank: it holds no Keel volume to check", storage.location)));
    }
    println!("Checking the Keel volume on {}", storage.location);
    let bar = progress::count(0, "checking");
    let found = check::check_volume(&storage, &config, &pair, &bar);
    bar.finish_and_clear();
    let found = found?;
    print!("{}", summary(&found));
    let problems = problem_lines(&found);
    let count = found.problem_count();
    if count == 0 {
        println!("\nClean: every checksum, reference and allocated page checked out.");
        return Ok(());
    }
    println!("\nProblems ({count}):");
    for line in &problems {
        println!("  {line}");
    }
    let listed = problems.len() as u64;
    if count > listed {
        println!("  ... and {} more", count - listed);
    }
    Err(CliError::Inconsistent { problems: count })
}

fn summary(found: &VolumeCheck) -> String {
    let mut table = Table::new("Shards").header([
        "shard",
        "checkpoint LSN",
        "height",
        "nodes",
        "entries",
        "extents",
        "pages in use",
        "problems",
    ]);
    for s in &found.shards {
        table.row(shard_row(s));
    }
    let mut text = table.to_string();
    match &found.journal {
        Some(Ok(j)) => text.push_str(&format!(
            "Journal: {} record(s) past the checkpoint, all decodable; next LSN {}; end: {}\n",
            j.records, j.next_lsn, j.end_reason
        )),
        Some(Err(_)) => text.push_str("Journal: unreadable (see the problems)\n"),
        None => {}
    }
    text
}

fn shard_row(s: &ShardCheck) -> Vec<String> {
    let Ok(r) = &s.result else {
        let mut row = vec![s.shard.to_string()];
        row.extend(std::iter::repeat_n("-".to_owned(), 6));
        row.push("cannot open".to_owned());
        return row;
    };
    if s.never_checkpointed {
        let mut row = vec![s.shard.to_string(), "none".to_owned()];
        row.extend(std::iter::repeat_n("-".to_owned(), 5));
        row.push("0".to_owned());
        return row;
    }
    let in_use = format!("{} ({})", r.pages_in_use, human_bytes(r.pages_in_use * PAGE_BYTES as u64));
    vec![
        s.shard.to_string(),
        r.lsn_applied.to_string(),
        r.height.to_string(),
        (r.leaves + r.internal_nodes).to_string(),
        r.entries.to_string(),
        r.extents.to_string(),
        in_use,
        (r.problems.len() as u64 + r.problems_unlisted).to_string(),
    ]
}

/// The problems, volume-level first, each shard's prefixed with its number.
fn problem_lines(found: &VolumeCheck) -> Vec<String> {
    let mut lines = found.problems.clone();
    for s in &found.shards {
        match &s.result {
            Ok(r) => lines.extend(r.problems.iter().map(|p| format!("shard {}: {p}", s.shard))),
            Err(e) => lines.push(format!("shard {} (first page {}): {e}", s.shard, s.first_page)),
        }
    }
    if let Some(Err(e)) = &found.journal {
        lines.push(e.clone());
    }
    lines
}
