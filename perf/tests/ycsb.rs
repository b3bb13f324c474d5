//! YCSB workloads A-F run end to end, small, against the engine in process
//! and against Keel's Redis-protocol gateway through YCSB's redis mapping.

use std::path::PathBuf;

use keel_kv::{KvConfig, KvServer};
use keel_perf::ycsb::{self, Phase, TargetKind, YcsbArgs};

fn args(workload: &str, target: TargetKind) -> YcsbArgs {
    YcsbArgs {
        workload: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("workloads").join(workload),
        properties: vec!["recordcount=300".into(), "operationcount=400".into()],
        target,
        phase: Phase::Both,
        threads: 3,
        connections_per_thread: 1,
        target_ops: 0,
        addr: String::new(),
        password: None,
        scan: ycsb::target_resp::ScanMode::Binding,
        reactors: 2,
        shards: 4,
        durability: ycsb::EngineDurability::Always,
        device: None,
        device_gib: 1,
        cache_mib: None,
        seed: 7,
    }
}

fn check(results: &mut [ycsb::PhaseResult], workload: &str) {
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].recorder.operations(), 300, "{workload}: load inserts every record");
    assert_eq!(results[1].recorder.operations(), 400, "{workload}: run performs every operation");
    for r in results.iter() {
        assert_eq!(r.recorder.error_count(), 0, "{workload}: no operation fails");
    }
}

#[test]
fn every_core_workload_runs_against_the_engine() {
    for w in ["workloada", "workloadb", "workloadc", "workloadd", "workloade", "workloadf"] {
        let mut results = ycsb::run(&args(w, TargetKind::Engine)).unwrap();
        check(&mut results, w);
    }
}

#[test]
fn every_core_workload_runs_over_resp_against_keel() {
    let spec = keel_engine::testing::TestEngineSpec { reactors: 2, shards: 4, ..Default::default() };
    let (runtime, engine, _device) = keel_engine::testing::memory_engine(&spec);
    let config = KvConfig { listen: "127.0.0.1:0".parse().unwrap(), ..KvConfig::default() };
    let server = KvServer::start(&runtime, engine, config).unwrap();
    let addr = server.local_addr().to_string();
    for (i, w) in ["workloada", "workloadb", "workloadc", "workloadd", "workloade", "workloadf"].iter().enumerate() {
        let mut a = args(w, TargetKind::Resp);
        a.addr = addr.clone();
        if i % 2 == 1 {
            a.scan = ycsb::target_resp::ScanMode::Keel;
        }
        // Each workload on a fresh keyspace.
        let mut flush = ycsb::resp_client::Client::connect(&addr, None).unwrap();
        flush.call(&[b"FLUSHDB"]).unwrap();
        let mut results = ycsb::run(&a).unwrap();
        check(&mut results, w);
    }
    server.stop();
    runtime.stop();
}

#[test]
fn a_workload_runs_against_the_engine_on_an_io_uring_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args("workloada", TargetKind::Engine);
    a.device = Some(dir.path().join("ycsb.img"));
    a.cache_mib = Some(8);
    let mut results = ycsb::run(&a).unwrap();
    check(&mut results, "workloada on a file");
}
