//! The fault matrix at the tree's level: every kind of block the tree writes
//! (leaf, internal node, indirection-table page, space-map page, checkpoint
//! directory, out-of-line value) under every fault the fault injector makes
//! (bit flips, zeroed blocks, torn, lost and misdirected writes, EIO), on
//! reads and on writes. Each case then opens the tree, reads every key,
//! scans everything and runs fsck. Required: no wrong answer and no panic,
//! ever; every fault that changed bytes the tree relies on is reported as a
//! typed error. The matrix is printed.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use common::{memory_device, memory_device_over, run, Oracle, DEV, REGION_FIRST_PAGE};
use keel_drivers::memory::{MemoryDevice, MemoryStore};
use keel_drivers::test_devices::{CrashRecorder, Fault, FaultInjector, FaultRule, Misdirect};
use keel_drivers::{BlockDevice, IoErrorKind};
use keel_reactor::io;
use keel_tree::{Admission, BlockKind, MergeOp, Message, Tree, TreeConfig, TreeError, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DEVICE_BYTES: u64 = 32 << 20;
const REGION_PAGES: u64 = 4096;

/// What the setup leaves behind: the durable state and what it must hold.
struct Setup {
    state: [u8; 96],
    oracle: Oracle,
}

/// Runs the workload on `device`. `arm` is called at the start of the final
/// extent write and of the final checkpoint, with the target it is for.
/// A media error during the workload ends it: the fault was detected where
/// it was read.
async fn workload(device_arm: impl Fn(&str), config: TreeConfig) -> Result<Setup, TreeError> {
    let tree = Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &[0u8; 96], config).await.unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut oracle = Oracle::default();
    let mut lsn = 0u64;
    for phase in 0..2 {
        if phase == 1 {
            device_arm("phase 2");
        }
        for i in 0..if phase == 0 { 900 } else { 250 } {
            let k = format!("k{:05}", if phase == 0 { i } else { rng.gen_range(0..900) }).into_bytes();
            lsn += 1;
            let roll = rng.gen_range(0..100);
            let (m, bytes) = if roll < 12 {
                let v: Vec<u8> = (0..rng.gen_range(200..3000)).map(|_| rng.gen()).collect();
                let e = tree.write_extent(&v).await?;
                (Message::Put(Value::Extent(e)), Some(v))
            } else if roll < 20 && phase == 1 {
                (Message::Merge(MergeOp::Append(b"+more".to_vec())), None)
            } else if roll < 25 && phase == 1 {
                (Message::Delete, None)
            } else {
                (Message::Put(Value::Inline(vec![b'a' + (i % 26) as u8; rng.gen_range(10..80)])), None)
            };
            tree.make_room(k.len() + 128, Admission::Write).await?;
            tree.apply(lsn, &k, m.clone()).unwrap();
            oracle.apply(&k, &m, bytes.as_deref());
        }
        if phase == 0 {
            let frozen = tree.freeze(lsn);
            tree.write_checkpoint(frozen).await?;
            io::flush(DEV).await.unwrap();
            tree.checkpoint_durable();
        }
    }
    device_arm("final checkpoint");
    let frozen = tree.freeze(lsn);
    let state = tree.write_checkpoint(frozen).await?;
    device_arm("end");
    io::flush(DEV).await.unwrap();
    tree.checkpoint_durable();
    Ok(Setup { state, oracle })
}

/// The blocks written from the start of phase 2 to the end of the final
/// checkpoint (evictions, extents, the checkpoint), classified by content.
fn phase_two_writes(config: &TreeConfig) -> Vec<BlockKind> {
    let config = config.clone();
    let memory = memory_device(DEVICE_BYTES, 0);
    let rec = Arc::new(CrashRecorder::over_memory(Arc::clone(&memory)));
    let marker = rec.marker();
    let devices = vec![Arc::clone(&rec) as Arc<dyn BlockDevice>];
    run(&devices, async move {
        workload(
            move |label| {
                marker.mark(label);
            },
            config,
        )
        .await
        .unwrap();
    });
    let log = rec.log();
    let start = log.mark_point("phase 2").unwrap();
    let end = log.mark_point("end").unwrap();
    log.writes().iter().filter(|w| w.submit_seq >= start.0 && w.submit_seq < end.0).map(|w| classify(&w.data)).collect()
}

fn classify(data: &[u8]) -> BlockKind {
    match &data[0..4] {
        b"KTND" if data[4] == 1 => BlockKind::Leaf,
        b"KTND" => BlockKind::Internal,
        b"KTTB" => BlockKind::Table,
        b"KTSM" => BlockKind::SpaceMap,
        b"KTDR" => BlockKind::Directory,
        _ => BlockKind::Extent,
    }
}

/// How one case ended.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    detected: u32,
    harmless: u32,
    wrong: u32,
    panicked: u32,
}

impl Outcome {
    fn add(&mut self, o: Outcome) {
        self.detected += o.detected;
        self.harmless += o.harmless;
        self.wrong += o.wrong;
        self.panicked += o.panicked;
    }
}

/// Opens the tree on `device`, reads every key, scans everything and runs
/// fsck, comparing with `oracle`. Errors must be media errors.
async fn verify(state: [u8; 96], oracle: Oracle, config: TreeConfig) -> Outcome {
    let mut errors = 0u32;
    let mut wrong = 0u32;
    let tree = match Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &state, config).await {
        Ok(t) => t,
        Err(e) => {
            assert!(e.is_media_error(), "open failed with a non-media error: {e}");
            return Outcome { detected: 1, ..Default::default() };
        }
    };
    for (k, v) in &oracle.map {
        match tree.get(k).await {
            Ok(got) if got.as_ref() == Some(v) => {}
            Ok(_) => wrong += 1,
            Err(e) => {
                assert!(e.is_media_error(), "get failed with a non-media error: {e}");
                errors += 1;
            }
        }
    }
    match tree.get(b"k-absent").await {
        Ok(None) => {}
        Ok(Some(_)) => wrong += 1,
        Err(e) => {
            assert!(e.is_media_error(), "{e}");
            errors += 1;
        }
    }
    match tree.scan(Bound::Unbounded, Bound::Unbounded, usize::MAX).await {
        Ok(all) => {
            let want: Vec<_> = oracle.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            if all != want {
                wrong += 1;
            }
        }
        Err(e) => {
            assert!(e.is_media_error(), "{e}");
            errors += 1;
        }
    }
    let report = tree.fsck(&mut |_| {}).await.unwrap();
    if !report.is_clean() {
        errors += 1;
    }
    match (errors, wrong) {
        (_, w) if w > 0 => Outcome { wrong: w, ..Default::default() },
        (0, _) => Outcome { harmless: 1, ..Default::default() },
        _ => Outcome { detected: 1, ..Default::default() },
    }
}

/// Runs the workload with `fault` on the `n`th write of phase 2 (1-based),
/// then verifies the resulting image.
fn write_case(config: &TreeConfig, fault: Fault, n: u64) -> Outcome {
    let memory = memory_device(DEVICE_BYTES, 0);
    let injector = Arc::new(FaultInjector::new(Arc::clone(&memory) as Arc<dyn BlockDevice>));
    let devices = vec![Arc::clone(&injector) as Arc<dyn BlockDevice>];
    let arm = {
        let injector = Arc::clone(&injector);
        move |label: &str| match label {
            "phase 2" => {
                injector.add(FaultRule::writes(0..u64::MAX, fault).nth(n)).unwrap();
            }
            "end" => injector.clear(),
            _ => {}
        }
    };
    let cfg = config.clone();
    let setup = match run(&devices, async move { workload(arm, cfg).await }) {
        Ok(setup) => setup,
        Err(e) => {
            assert!(e.is_media_error(), "the workload failed with a non-media error: {e}");
            return Outcome { detected: 1, ..Default::default() };
        }
    };
    let image = Arc::new(memory.store().deep_clone());
    let plain = memory_device_over(DEVICE_BYTES, 0, image);
    let devices = vec![plain as Arc<dyn BlockDevice>];
    run(&devices, verify(setup.state, setup.oracle, config.clone()))
}

/// Verifies the clean final image with `fault` on every read of one block.
fn read_case(store: &Arc<MemoryStore>, setup: &Setup, address: u64, pages: u64, fault: Fault) -> Outcome {
    let memory: Arc<MemoryDevice> = memory_device_over(DEVICE_BYTES, 0, Arc::new(store.deep_clone()));
    let injector = Arc::new(FaultInjector::new(memory as Arc<dyn BlockDevice>));
    let first = REGION_FIRST_PAGE + address;
    injector.add(FaultRule::reads(first..first + pages, fault)).unwrap();
    let devices = vec![injector as Arc<dyn BlockDevice>];
    run(&devices, verify(setup.state, setup.oracle.clone(), TreeConfig::tiny_for_tests()))
}

fn guarded(f: impl FnOnce() -> Outcome) -> Outcome {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or(Outcome { panicked: 1, ..Default::default() })
}

fn print_matrix(title: &str, matrix: &BTreeMap<(String, String), Outcome>) {
    println!(
        "\n{title}\n{:<12} {:<22} {:>8} {:>8} {:>6} {:>7}",
        "block", "fault", "detected", "harmless", "wrong", "panics"
    );
    for ((kind, fault), o) in matrix {
        println!("{kind:<12} {fault:<22} {:>8} {:>8} {:>6} {:>7}", o.detected, o.harmless, o.wrong, o.panicked);
    }
}

#[test]
fn write_faults_on_every_block_kind_are_detected_never_returned() {
    let write_faults = [
        ("lost", Fault::Lose),
        ("misdirected +8 blocks", Fault::Misdirect(Misdirect::Offset(8))),
        ("torn after 1 sector", Fault::Tear { sectors: 1 }),
        ("bit flips (512)", Fault::FlipBits { bits: 512 }),
        ("zeroed", Fault::Zero),
    ];
    let mut matrix: BTreeMap<(String, String), Outcome> = BTreeMap::new();
    // A tiny cache (nodes written back by eviction) and a large one (nodes
    // written by the checkpoint).
    let mut roomy = TreeConfig::tiny_for_tests();
    roomy.cache_bytes = 4 << 20;
    for config in [TreeConfig::tiny_for_tests(), roomy] {
        let writes = phase_two_writes(&config);
        let mut per_kind: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (i, kind) in writes.iter().enumerate() {
            per_kind.entry(format!("{kind:?}")).or_default().push(i as u64 + 1);
        }
        for (kind, ns) in &per_kind {
            let picks: std::collections::BTreeSet<u64> =
                [0, ns.len() / 3, ns.len() / 2, ns.len() - 1].iter().map(|&j| ns[j]).collect();
            for (name, fault) in write_faults {
                for &n in &picks {
                    let o = guarded(|| write_case(&config, fault, n));
                    matrix.entry((kind.clone(), name.to_string())).or_default().add(o);
                }
            }
        }
    }
    print_matrix("write faults (tree level)", &matrix);
    let kinds: std::collections::BTreeSet<&String> = matrix.keys().map(|(k, _)| k).collect();
    assert_eq!(kinds.len(), 6, "faults reached every kind of block: {kinds:?}");
    for ((kind, fault), o) in &matrix {
        assert_eq!(o.wrong, 0, "{kind} / {fault}: wrong answers");
        assert_eq!(o.panicked, 0, "{kind} / {fault}: panics");
        // A directory fits in one sector: a tear after it changes nothing.
        if !(kind == "Directory" && fault.starts_with("torn")) {
            assert!(o.detected > 0, "{kind} / {fault}: never detected");
        }
    }
}

#[test]
fn read_faults_on_every_block_kind_are_detected_never_returned() {
    let memory = memory_device(DEVICE_BYTES, 0);
    let devices = vec![Arc::clone(&memory) as Arc<dyn BlockDevice>];
    let (setup, blocks) = run(&devices, async {
        let setup = workload(|_| {}, TreeConfig::tiny_for_tests()).await.unwrap();
        let tree =
            Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &setup.state, TreeConfig::tiny_for_tests()).await.unwrap();
        let blocks = tree.block_map().await.unwrap();
        (setup, blocks)
    });
    let store = Arc::clone(memory.store());
    let read_faults = [
        ("EIO", Fault::eio()),
        ("medium error", Fault::Fail(IoErrorKind::Media)),
        ("bit flips (512)", Fault::FlipBits { bits: 512 }),
        ("zeroed", Fault::Zero),
    ];
    let mut matrix: BTreeMap<(String, String), Outcome> = BTreeMap::new();
    let mut per_kind: BTreeMap<String, Vec<&keel_tree::BlockInfo>> = BTreeMap::new();
    for b in &blocks {
        per_kind.entry(format!("{:?}", b.kind)).or_default().push(b);
    }
    assert_eq!(per_kind.len(), 6, "every kind of block is in the map: {:?}", per_kind.keys());
    for (kind, bs) in &per_kind {
        let picks = [0, bs.len() / 2, bs.len() - 1];
        for (name, fault) in read_faults {
            for &j in picks.iter().collect::<std::collections::BTreeSet<_>>() {
                let b = bs[j];
                let o = guarded(|| read_case(&store, &setup, b.address, b.pages, fault));
                matrix.entry((kind.clone(), name.to_string())).or_default().add(o);
            }
        }
    }
    print_matrix("read faults (tree level)", &matrix);
    for ((kind, fault), o) in &matrix {
        assert_eq!(o.wrong, 0, "{kind} / {fault}: wrong answers");
        assert_eq!(o.panicked, 0, "{kind} / {fault}: panics");
        assert!(o.detected > 0, "{kind} / {fault}: never detected");
    }
}

/// EIO on a write of a checkpoint: `write_checkpoint` fails with a typed
/// error, the previous checkpoint stays intact (a crash now recovers it),
/// and the next checkpoint succeeds and holds everything.
#[test]
fn a_checkpoint_that_fails_leaves_the_previous_one_intact_and_the_next_succeeds() {
    for n in [1u64, 3, 8, 15] {
        let memory = memory_device(DEVICE_BYTES, 0);
        let injector = Arc::new(FaultInjector::new(Arc::clone(&memory) as Arc<dyn BlockDevice>));
        let devices = vec![Arc::clone(&injector) as Arc<dyn BlockDevice>];
        let inj = Arc::clone(&injector);
        let mem = Arc::clone(&memory);
        let (first, crashed_image, second) = run(&devices, async move {
            let memory = mem;
            let config = TreeConfig::tiny_for_tests();
            let first = workload(|_| {}, config.clone()).await.unwrap();
            let tree = Tree::open(DEV, REGION_FIRST_PAGE, REGION_PAGES, &first.state, config).await.unwrap();
            let mut oracle = first.oracle.clone();
            let mut lsn = tree.lsn_applied();
            for i in 0..300u32 {
                let k = format!("k{:05}", (i * 7) % 900).into_bytes();
                let m = Message::Put(Value::Inline(format!("second {i}").into_bytes()));
                tree.make_room(64, Admission::Write).await.unwrap();
                lsn += 1;
                tree.apply(lsn, &k, m.clone()).unwrap();
                oracle.apply(&k, &m, None);
            }
            // The nth write must be the checkpoint's, not a background eviction's.
            tree.maintenance_idle().await;
            let rule = inj.add(FaultRule::writes(0..u64::MAX, Fault::eio()).nth(n)).unwrap();
            let err = tree.write_checkpoint(tree.freeze(lsn)).await.unwrap_err();
            assert!(err.is_media_error(), "{err}");
            assert_eq!(inj.fired(rule), 1);
            inj.clear();
            let crashed_image = memory.store().deep_clone();
            let state = tree.write_checkpoint(tree.freeze(lsn)).await.unwrap();
            io::flush(DEV).await.unwrap();
            tree.checkpoint_durable();
            (first, crashed_image, Setup { state, oracle })
        });
        // A crash right after the failed checkpoint recovers the first one.
        let devices = vec![memory_device_over(DEVICE_BYTES, 0, Arc::new(crashed_image)) as Arc<dyn BlockDevice>];
        let o = run(&devices, verify(first.state, first.oracle, TreeConfig::tiny_for_tests()));
        assert_eq!((o.harmless, o.detected, o.wrong), (1, 0, 0), "write {n}: recovery after the failed checkpoint");
        let devices =
            vec![memory_device_over(DEVICE_BYTES, 0, Arc::new(memory.store().deep_clone())) as Arc<dyn BlockDevice>];
        let o = run(&devices, verify(second.state, second.oracle, TreeConfig::tiny_for_tests()));
        assert_eq!((o.harmless, o.detected, o.wrong), (1, 0, 0), "write {n}: the retried checkpoint");
    }
}
