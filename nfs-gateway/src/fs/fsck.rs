//! A consistency check of the whole file system, from its keys: what every
//! crash state and every concurrent run must satisfy. Run it quiescent (no
//! operation in flight); it reads everything.
//!
//! Checks: records decode; entries by name and by cookie agree and point at
//! existing inodes of the right type; entry counts, cookies and link counts
//! match the entries; every directory has one name and its parent field is
//! that name's directory; no inode is unreachable; no chunk lies past its
//! file's end or belongs to nothing; used bytes match the chunks; the
//! per-shard space counters match the inodes and orphans.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use crate::fs::dirent::{ByCookie, ByName};
use crate::fs::error::FsResult;
use crate::fs::freer::Orphan;
use crate::fs::inode::{FileType, Inode, FLAG_SPARSE};
use crate::fs::keys::{self, CHUNK_BYTES};
use crate::fs::{Fs, ROOT_INO};

/// Keys read per scan call.
const SCAN_PAGE: usize = 10_000;

#[derive(Debug, Default)]
struct Seen {
    inodes: BTreeMap<u64, Inode>,
    by_name: BTreeMap<(u64, Vec<u8>), ByName>,
    by_cookie: BTreeMap<(u64, u64), ByCookie>,
    /// Stored chunk lengths per inode.
    chunks: HashMap<u64, Vec<(u64, u64)>>,
}

/// What fsck found: problems, one line each (empty when consistent).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FsckReport {
    pub inodes: usize,
    pub entries: usize,
    pub chunks: usize,
    pub orphans: usize,
    pub problems: Vec<String>,
}

fn u64_at(key: &[u8], at: usize) -> Option<u64> {
    key.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
}

fn round_up_4k(n: u64) -> u64 {
    n.div_ceil(4096) * 4096
}

impl Fs {
    /// Every key under `prefix`, in order.
    async fn scan_all(&self, start: Vec<u8>, end: Vec<u8>) -> FsResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut from = Bound::Included(start);
        loop {
            let page = self.shared.engine.scan(from, Bound::Excluded(end.clone()), SCAN_PAGE).await?;
            let full = page.len() == SCAN_PAGE;
            let last = page.last().map(|(k, _)| k.clone());
            out.extend(page);
            match (full, last) {
                (true, Some(k)) => from = Bound::Excluded(k),
                _ => return Ok(out),
            }
        }
    }

    /// Checks the whole file system (see the module documentation).
    pub async fn fsck(&self) -> FsResult<FsckReport> {
        let mut report = FsckReport::default();
        let mut seen = Seen::default();
        let all = self.scan_all(vec![keys::TAG_INODE], vec![keys::TAG_INODE + 1]).await?;
        for (key, value) in all {
            self.classify(&key, &value, &mut seen, &mut report.problems);
        }
        let orphans = self.orphans(&mut report.problems).await?;
        report.inodes = seen.inodes.len();
        report.entries = seen.by_name.len();
        report.chunks = seen.chunks.values().map(Vec::len).sum();
        report.orphans = orphans.len();
        check_entries(&seen, &mut report.problems);
        check_links(&seen, &mut report.problems);
        check_chunks(&seen, &orphans, &mut report.problems);
        self.check_space(&seen, &orphans, &mut report.problems).await?;
        Ok(report)
    }

    fn classify(&self, key: &[u8], value: &[u8], seen: &mut Seen, problems: &mut Vec<String>) {
        let (Some(ino), Some(&kind)) = (u64_at(key, 1), key.get(9)) else {
            problems.push(format!("short inode key {key:02x?}"));
            return;
        };
        match kind {
            keys::KIND_ATTR => match Inode::decode(ino, value) {
                Ok(i) => {
                    seen.inodes.insert(ino, i);
                }
                Err(e) => problems.push(e),
            },
            keys::KIND_ENTRY_BY_NAME => match ByName::decode(value) {
                Some(e) => {
                    seen.by_name.insert((ino, key[10..].to_vec()), e);
                }
                None => problems.push(format!("directory {ino:#x}: bad by-name entry")),
            },
            keys::KIND_ENTRY_BY_COOKIE => match (u64_at(key, 10), ByCookie::decode(value)) {
                (Some(c), Some(e)) => {
                    seen.by_cookie.insert((ino, c), e);
                }
                _ => problems.push(format!("directory {ino:#x}: bad by-cookie entry")),
            },
            keys::KIND_CHUNK => match u64_at(key, 10) {
                Some(index) => seen.chunks.entry(ino).or_default().push((index, value.len() as u64)),
                None => problems.push(format!("inode {ino:#x}: bad chunk key")),
            },
            other => problems.push(format!("inode {ino:#x}: unknown key kind {other}")),
        }
    }

    /// Orphans of every shard: inode -> progress.
    async fn orphans(&self, problems: &mut Vec<String>) -> FsResult<HashMap<u64, (u32, Orphan)>> {
        let mut out = HashMap::new();
        for shard in 0..self.shared.shard_count {
            let (start, end) = keys::orphan_range(self.anchor(shard));
            for (key, value) in self.scan_all(start, end).await? {
                match (keys::orphan_ino_of(&key), Orphan::decode(&value)) {
                    (Some(ino), Some(o)) => {
                        out.insert(ino, (shard, o));
                    }
                    _ => problems.push(format!("shard {shard}: bad orphan record")),
                }
            }
        }
        Ok(out)
    }

    async fn check_space(
        &self,
        seen: &Seen,
        orphans: &HashMap<u64, (u32, Orphan)>,
        problems: &mut Vec<String>,
    ) -> FsResult<()> {
        let mut used_expected = vec![0i64; self.shared.shard_count as usize];
        let mut inodes_expected = vec![0i64; self.shared.shard_count as usize];
        for i in seen.inodes.values() {
            let s = self.shard_of(i.ino) as usize;
            used_expected[s] += i.used_bytes as i64;
            inodes_expected[s] += 1;
        }
        for (&ino, &(shard, o)) in orphans {
            if self.shard_of(ino) != shard {
                problems.push(format!("orphan {ino:#x} is recorded on shard {shard}, not its own"));
            }
            used_expected[shard as usize] += o.used_bytes as i64;
        }
        for shard in 0..self.shared.shard_count {
            let a = self.anchor(shard);
            let read = |v: Option<Vec<u8>>| v.and_then(|b| b.try_into().ok()).map(i64::from_le_bytes).unwrap_or(0);
            let used = read(self.shared.engine.get(&keys::shard_used_bytes(a)).await?);
            let inodes = read(self.shared.engine.get(&keys::shard_inodes(a)).await?);
            let s = shard as usize;
            if used != used_expected[s] || inodes != inodes_expected[s] {
                problems.push(format!(
                    "shard {shard}: counters say {used} bytes and {inodes} inodes; the records say {} and {}",
                    used_expected[s], inodes_expected[s]
                ));
            }
        }
        Ok(())
    }
}

fn check_entries(seen: &Seen, problems: &mut Vec<String>) {
    let mut per_dir: HashMap<u64, u64> = HashMap::new();
    for ((dir, name), e) in &seen.by_name {
        *per_dir.entry(*dir).or_default() += 1;
        match seen.by_cookie.get(&(*dir, e.cookie)) {
            Some(c) if c.ino == e.ino && c.ftype == e.ftype && &c.name == name => {}
            _ => problems.push(format!(
                "directory {dir:#x}: {:?} has no matching by-cookie entry",
                String::from_utf8_lossy(name)
            )),
        }
        match seen.inodes.get(&e.ino) {
            Some(i) if i.ftype == e.ftype => {}
            Some(_) => problems
                .push(format!("directory {dir:#x}: entry {:?} has the wrong type", String::from_utf8_lossy(name))),
            None => problems.push(format!(
                "directory {dir:#x}: entry {:?} points at missing inode {:#x}",
                String::from_utf8_lossy(name),
                e.ino
            )),
        }
        match seen.inodes.get(dir) {
            Some(d) if d.is_dir() && e.cookie >= 3 && e.cookie < d.next_cookie => {}
            _ => problems.push(format!(
                "entry {:?} is in {dir:#x}, not a directory that could have made its cookie",
                String::from_utf8_lossy(name)
            )),
        }
    }
    for ((dir, cookie), c) in &seen.by_cookie {
        if seen.by_name.get(&(*dir, c.name.clone())).is_none_or(|n| n.cookie != *cookie) {
            problems.push(format!("directory {dir:#x}: cookie {cookie} has no matching by-name entry"));
        }
    }
    for d in seen.inodes.values().filter(|i| i.is_dir()) {
        let n = per_dir.get(&d.ino).copied().unwrap_or(0);
        if n != d.entries {
            problems.push(format!("directory {:#x}: {} entries recorded, {n} present", d.ino, d.entries));
        }
    }
}

fn check_links(seen: &Seen, problems: &mut Vec<String>) {
    let mut names: HashMap<u64, u32> = HashMap::new();
    let mut subdirs: HashMap<u64, u32> = HashMap::new();
    let mut parent_of: HashMap<u64, u64> = HashMap::new();
    for ((dir, _), e) in &seen.by_name {
        *names.entry(e.ino).or_default() += 1;
        if e.ftype == FileType::Directory {
            *subdirs.entry(*dir).or_default() += 1;
            parent_of.insert(e.ino, *dir);
        }
    }
    match seen.inodes.get(&ROOT_INO) {
        Some(r) if r.is_dir() && r.parent == ROOT_INO => {}
        _ => problems.push("the root directory is missing or damaged".into()),
    }
    for i in seen.inodes.values() {
        let n = names.get(&i.ino).copied().unwrap_or(0);
        if i.ino != ROOT_INO && n == 0 {
            problems.push(format!("inode {:#x} has no name (leaked)", i.ino));
        }
        if i.is_dir() {
            let expected = 2 + subdirs.get(&i.ino).copied().unwrap_or(0);
            if i.nlink != expected {
                problems.push(format!("directory {:#x}: nlink {} but {expected} links", i.ino, i.nlink));
            }
            if i.ino != ROOT_INO && (n != 1 || parent_of.get(&i.ino) != Some(&i.parent)) {
                problems.push(format!("directory {:#x}: {n} names, parent field {:#x}", i.ino, i.parent));
            }
        } else if i.nlink != n {
            problems.push(format!("inode {:#x}: nlink {} but {n} names", i.ino, i.nlink));
        }
    }
}

fn check_chunks(seen: &Seen, orphans: &HashMap<u64, (u32, Orphan)>, problems: &mut Vec<String>) {
    for (ino, chunks) in &seen.chunks {
        if let Some((_, o)) = orphans.get(ino) {
            if chunks.iter().any(|&(index, _)| index < o.next_chunk || index >= o.end_chunk) {
                problems.push(format!("orphan {ino:#x}: a chunk outside the range left to free"));
            }
            continue;
        }
        let Some(i) = seen.inodes.get(ino).filter(|i| i.ftype == FileType::Regular) else {
            problems.push(format!("{} chunks belong to {ino:#x}, which is no file and no orphan", chunks.len()));
            continue;
        };
        let end = i.size.div_ceil(CHUNK_BYTES);
        if chunks.iter().any(|&(index, len)| index >= end || len > CHUNK_BYTES) {
            problems.push(format!("file {ino:#x}: a chunk past its end ({} bytes) or too long", i.size));
        }
        let stored: u64 = chunks.iter().map(|&(_, len)| round_up_4k(len)).sum();
        let exact = i.flags & FLAG_SPARSE == 0;
        if (exact && stored != i.used_bytes) || (!exact && stored > i.used_bytes) {
            problems.push(format!("file {ino:#x}: used bytes {} but chunks take {stored}", i.used_bytes));
        }
    }
    for i in seen.inodes.values().filter(|i| i.ftype == FileType::Regular && i.flags & FLAG_SPARSE == 0) {
        if i.used_bytes > 0 && !seen.chunks.contains_key(&i.ino) {
            problems.push(format!("file {:#x}: used bytes {} but no chunks", i.ino, i.used_bytes));
        }
    }
    for ino in orphans.keys() {
        if seen.inodes.contains_key(ino) {
            problems.push(format!("orphan {ino:#x} still has an inode record"));
        }
    }
}
