//! `keel-perf device` end to end: it runs, reports, and (on io_uring) runs
//! fio as its peer in the same invocation. These check behaviour only; the
//! figures themselves are BENCHMARKS.md's business.

#![allow(clippy::unwrap_used)] // a test's unwrap is its assertion

use std::process::Command;

use serde_json::Value;

fn keel_perf(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_keel-perf")).arg("device").args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "keel-perf failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_memory_backend_reports_iops_and_latency_per_reactor_and_in_total() {
    let report = keel_perf(&[
        "--backend",
        "memory",
        "--size",
        "64m",
        "--reactors",
        "2",
        "--qd",
        "8",
        "--duration",
        "1",
        "--ramp",
        "0",
        "--pattern",
        "randrw",
    ]);
    let run = &report["runs"][0];
    assert_eq!(run["keel"]["reactors"].as_array().unwrap().len(), 2);
    let total = &run["keel"]["total"];
    assert!(total["iops"].as_f64().unwrap() > 0.0);
    assert!(total["latency_us"]["p99"].as_f64().unwrap() > 0.0);
    assert!(total["read_latency_us"].is_object() && total["write_latency_us"].is_object());
    assert!(run["fio"].is_null(), "the memory backend has no peer");
}

#[test]
fn the_uring_backend_prefills_runs_fio_and_reports_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.img");
    let path = path.to_str().unwrap();
    let report =
        keel_perf(&["--path", path, "--size", "64m", "--duration", "1", "--ramp", "0", "--qd", "8", "--repeat", "2"]);
    assert!(report["prefill_s"].as_f64().is_some(), "a new file is filled before it is read");
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["fio_ran_first"], Value::Bool(true), "the second run lets fio go first");
    for run in runs {
        assert!(run["fio"]["total"]["iops"].as_f64().unwrap() > 0.0);
        assert!(run["fio"]["command"].as_str().unwrap().contains("--ioengine=io_uring"));
        assert!(run["ratio_iops"].as_f64().unwrap() > 0.0);
    }
    assert!(report["summary"]["ratio_iops"]["median"].as_f64().is_some());
    assert_eq!(report["device"]["fixed_buffers"], Value::Bool(true));
}
