//! Checking the durable checkpoint on the device: every node and extent
//! reachable from the root read and verified against its reference, key
//! ranges and heights consistent, and every page accounted for exactly once
//! (no page both referenced and free, none in use and unreferenced).

use std::collections::HashSet;

use crate::checkpoint::{read_verified, Image};
use crate::error::{BlockKind, Result};
use crate::internal::NodeId;
use crate::leaf::ValueRef;
use crate::message::ExtentRef;
use crate::node::Node;
use crate::tree::Tree;

/// Problems past this many are counted, not listed.
const PROBLEMS_LISTED_MAX: usize = 100;

/// Where a check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsckProgress {
    pub nodes_checked: u64,
    pub nodes_total: u64,
}

/// One block of the durable checkpoint, as [`Tree::block_map`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    pub kind: BlockKind,
    /// First page, relative to the region.
    pub address: u64,
    pub pages: u64,
    /// The node id, for nodes.
    pub node: Option<u64>,
    /// For leaves and extents: a key whose reads need this block.
    pub key: Option<Vec<u8>>,
}

/// The nodes of one level of the tree (height 0: the leaves).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelShape {
    pub nodes: u64,
    /// Serialized bytes of those nodes, as their table entries give them.
    pub bytes: u64,
}

impl LevelShape {
    /// Mean serialized size over `target_bytes` (the configured node size).
    pub fn fill(&self, target_bytes: usize) -> f64 {
        if self.nodes == 0 || target_bytes == 0 {
            return 0.0;
        }
        self.bytes as f64 / (self.nodes as f64 * target_bytes as f64)
    }
}

/// What fsck found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// The LSN of the checkpoint checked (0 when there is none yet).
    pub lsn_applied: u64,
    pub height: u8,
    pub leaves: u64,
    pub internal_nodes: u64,
    pub entries: u64,
    pub buffered_messages: u64,
    pub extents: u64,
    pub extent_bytes: u64,
    pub pages_referenced: u64,
    pub pages_in_use: u64,
    /// Pages of the region (used and free).
    pub region_pages: u64,
    /// Pages of the checkpoint's metadata (table, space map, directory).
    pub metadata_pages: u64,
    /// Nodes and their bytes per level, by height (index 0: the leaves).
    pub levels: Vec<LevelShape>,
    pub problems: Vec<String>,
    pub problems_unlisted: u64,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.problems_unlisted == 0
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < PROBLEMS_LISTED_MAX {
            self.problems.push(p);
        } else {
            self.problems_unlisted += 1;
        }
    }
}

struct Pages {
    referenced: Vec<u64>,
    pages: u64,
}

impl Pages {
    fn mark(&mut self, report: &mut FsckReport, what: &str, address: u64, n: u64) {
        if address.checked_add(n).is_none_or(|end| end > self.pages) {
            report.problem(format!("{what} at page {address} (+{n}) lies outside the region"));
            return;
        }
        for p in address..address + n {
            let (w, m) = ((p / 64) as usize, 1u64 << (p % 64));
            if self.referenced[w] & m != 0 {
                report.problem(format!("page {p} is referenced twice (again by {what} at {address})"));
            }
            self.referenced[w] |= m;
        }
        report.pages_referenced += n;
    }

    fn is_marked(&self, p: u64) -> bool {
        self.referenced[(p / 64) as usize] & (1u64 << (p % 64)) != 0
    }
}

/// A node still to check: its id, its key range and the height it must have.
struct Pending {
    id: NodeId,
    low: Option<Vec<u8>>,
    high: Option<Vec<u8>>,
    height: u8,
}

impl Tree {
    /// Checks the durable checkpoint (the one a crash would recover). Run it
    /// while no checkpoint completes (`keel fsck` opens the volume and runs
    /// it first). Device errors and corruption are reported as problems.
    pub async fn fsck(&self, progress: &mut dyn FnMut(FsckProgress)) -> Result<FsckReport> {
        Ok(self.walk_durable(progress, None).await)
    }

    /// Every block of the durable checkpoint, for inspection tools and for
    /// tests that aim faults at one kind of block. Blocks that fail to read
    /// are listed without what lies below them.
    pub async fn block_map(&self) -> Result<Vec<BlockInfo>> {
        let mut blocks = Vec::new();
        self.walk_durable(&mut |_| {}, Some(&mut blocks)).await;
        Ok(blocks)
    }

    async fn walk_durable(
        &self,
        progress: &mut dyn FnMut(FsckProgress),
        mut blocks: Option<&mut Vec<BlockInfo>>,
    ) -> FsckReport {
        let image = self.sh.st.borrow().ckpt.durable.clone();
        let mut report = FsckReport::default();
        let Some(image) = image else { return report };
        if let Some(blocks) = blocks.as_deref_mut() {
            let meta = |kind, l: &crate::table::Location| BlockInfo {
                kind,
                address: l.address,
                pages: l.pages(),
                node: None,
                key: None,
            };
            blocks.extend(image.table_locs.iter().map(|l| meta(BlockKind::Table, l)));
            blocks.extend(image.chunk_locs.iter().map(|l| meta(BlockKind::SpaceMap, l)));
            blocks.push(meta(BlockKind::Directory, &image.directory));
        }
        report.lsn_applied = image.lsn_applied;
        report.height = image.height;
        let pages = self.sh.region.pages;
        let mut marks = Pages { referenced: vec![0u64; pages.div_ceil(64) as usize], pages };
        report.region_pages = pages;
        report.levels = vec![LevelShape::default(); usize::from(image.height) + 1];
        for (a, n) in image.metadata() {
            marks.mark(&mut report, "checkpoint metadata", a, n);
            report.metadata_pages += n;
        }
        let nodes_total = image.table.iter().count() as u64;
        let mut visited: HashSet<NodeId> = HashSet::new();
        let mut stack = vec![Pending { id: image.root, low: None, high: None, height: image.height }];
        while let Some(p) = stack.pop() {
            if !visited.insert(p.id) {
                report.problem(format!("node {} is reachable twice", p.id.0));
                continue;
            }
            self.check_node(&image, p, &mut report, &mut marks, &mut stack, blocks.as_deref_mut()).await;
            progress(FsckProgress { nodes_checked: visited.len() as u64, nodes_total });
        }
        for (id, _) in image.table.iter() {
            if !visited.contains(&id) {
                report.problem(format!("node {} has a table entry but is unreachable", id.0));
            }
        }
        self.check_accounting(&image, &marks, &mut report);
        report
    }

    async fn check_node(
        &self,
        image: &Image,
        p: Pending,
        report: &mut FsckReport,
        marks: &mut Pages,
        stack: &mut Vec<Pending>,
        mut blocks: Option<&mut Vec<BlockInfo>>,
    ) {
        let at = image.table.get(p.id);
        if at.is_none() {
            report.problem(format!("node {} is referenced but has no table entry", p.id.0));
            return;
        }
        marks.mark(report, &format!("node {}", p.id.0), at.address, at.pages());
        let node = match read_verified(&self.sh.region, BlockKind::Node, &at).await {
            Ok(bytes) => Node::verify_and_decode(&bytes, p.id, &at),
            Err(e) => Err(e),
        };
        let node = match node {
            Ok(n) => n,
            Err(e) => return report.problem(format!("node {}: {e}", p.id.0)),
        };
        if let Some(blocks) = blocks.as_deref_mut() {
            let key = node.as_leaf().and_then(|l| l.first_key()).map(<[u8]>::to_vec);
            blocks.push(BlockInfo {
                kind: node.kind(),
                address: at.address,
                pages: at.pages(),
                node: Some(p.id.0),
                key,
            });
        }
        if node.height() != p.height {
            report.problem(format!("node {} has height {}, expected {}", p.id.0, node.height(), p.height));
            return;
        }
        if let Some(level) = report.levels.get_mut(usize::from(p.height)) {
            level.nodes += 1;
            level.bytes += u64::from(at.length);
        }
        let in_range = |k: &[u8]| p.low.as_deref().is_none_or(|l| l <= k) && p.high.as_deref().is_none_or(|h| k < h);
        let mut extents: Vec<(ExtentRef, Option<Vec<u8>>)> = Vec::new();
        match &node {
            Node::Leaf(l) => {
                report.leaves += 1;
                report.entries += l.len() as u64;
                for i in 0..l.len() {
                    let e = l.entry(i);
                    if !in_range(e.key) {
                        report.problem(format!("leaf {} holds a key outside its range", p.id.0));
                    }
                    if let ValueRef::Extent(x) = e.value {
                        extents.push((x, Some(e.key.to_vec())));
                    }
                }
            }
            Node::Internal(n) => {
                report.internal_nodes += 1;
                if n.pivots().iter().any(|k| !in_range(k))
                    || p.low.as_deref().zip(n.pivots().first()).is_some_and(|(l, f)| f.as_slice() <= l)
                {
                    report.problem(format!("internal node {} has a pivot outside its range", p.id.0));
                }
                for (i, child) in n.children.iter().enumerate() {
                    let b = &n.buffers[i];
                    report.buffered_messages += (b.point_count() + b.tombstones().len()) as u64;
                    if b.keys().any(|k| !in_range(k)) {
                        report.problem(format!("internal node {} buffers a key outside its range", p.id.0));
                    }
                    stack.push(Pending {
                        id: *child,
                        low: n.child_low(i).map(<[u8]>::to_vec).or_else(|| p.low.clone()),
                        high: n.child_high(i).map(<[u8]>::to_vec).or_else(|| p.high.clone()),
                        height: n.height - 1,
                    });
                }
                extents.extend(n.extents().map(|x| (x, None)));
            }
        }
        for (x, key) in extents {
            if let Some(blocks) = blocks.as_deref_mut() {
                blocks.push(BlockInfo {
                    kind: BlockKind::Extent,
                    address: x.address,
                    pages: x.pages(),
                    node: None,
                    key,
                });
            }
            report.extents += 1;
            report.extent_bytes += u64::from(x.length);
            marks.mark(report, "extent", x.address, x.pages());
            if let Err(e) = self.read_extent(x).await {
                report.problem(format!("extent referenced by node {}: {e}", p.id.0));
            }
        }
    }

    fn check_accounting(&self, image: &Image, marks: &Pages, report: &mut FsckReport) {
        let (mut leaked, mut unmarked) = (0u64, 0u64);
        for page in 0..marks.pages {
            let used = image.map.bit(page);
            report.pages_in_use += u64::from(used);
            match (used, marks.is_marked(page)) {
                (true, false) => leaked += 1,
                (false, true) => unmarked += 1,
                _ => {}
            }
        }
        if leaked > 0 {
            report.problem(format!("{leaked} pages are marked in use but nothing references them"));
        }
        if unmarked > 0 {
            report.problem(format!("{unmarked} referenced pages are marked free"));
        }
    }
}
