#!/usr/bin/env bash
# Where a 4 KiB request's time goes under Keel's uring queue pair and under
# fio, from io_uring and block-layer tracepoints (BENCHMARKS.md, "Device":
# why smaller submission bursts help writes). For each setting, keel-perf
# device runs alone for DURATION s, and 2 s in `perf record -a` takes
# 0.5 s of tracepoints; then fio runs the same way. device-trace.py prints
# each request's stages (queued in the block layer, at the device, waiting
# for its CQE to be posted, back in the application), the requests at the
# device over time, and the requests per io_uring_enter.
#
#   nice perf/scripts/device-trace.sh [FILE]
#
# Environment: PATTERN (randwrite), QD (32), BURSTS (space-separated
# --submit-batch values with no separate write limit, or "default" for
# keel serve's defaults; "0 1"), ROUNDS (1; settings alternate within a
# round), DURATION (3). Needs perf (linux-perf) and fio; root for tracing.
set -euo pipefail
cd "$(dirname "$0")/../.."

file=${1:-/work/bench/keel.img}
pattern=${PATTERN:-randwrite}
qd=${QD:-32}
bursts=${BURSTS:-0 1}
rounds=${ROUNDS:-1}
duration=${DURATION:-3}
for tool in perf fio; do
    if ! command -v "$tool" >/dev/null; then
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$( [ "$tool" = perf ] && echo linux-perf || echo fio)"
    fi
done
cargo build --release -q -p keel-perf
keel_perf=target/release/keel-perf
work=$(mktemp -d "${TMPDIR:-/tmp}/keel-device-trace.XXXXXX")
trap 'rm -rf "$work"' EXIT
events=io_uring:io_uring_submit_req,io_uring:io_uring_complete,block:block_bio_queue
events+=,block:block_rq_issue,block:block_rq_complete,syscalls:sys_enter_io_uring_enter

# trace NAME COMMAND...: runs COMMAND, records 0.5 s of it 2 s in, analyses.
trace() {
    local name=$1
    shift
    "$@" >"$work/$name.out" 2>&1 &
    local pid=$!
    sleep 2
    # The benchmark and its children (fio runs its job in a child).
    local pids
    pids=$(echo "$pid" $(pgrep -P "$pid") | tr ' ' ,)
    perf record -q -o "$work/$name.data" -a -e "$events" -- sleep 0.5 >/dev/null 2>&1
    wait "$pid"
    echo "== $name (load $(cut -d' ' -f1 /proc/loadavg)): $(grep -m1 -o '[0-9][0-9]* IOPS\|IOPS=[0-9.k]*' "$work/$name.out") untraced"
    perf script -F comm,pid,tid,cpu,time,event,trace -i "$work/$name.data" 2>/dev/null >"$work/$name.txt"
    python3 perf/scripts/device-trace.py "$work/$name.txt" "$pids"
    rm -f "$work/$name.data" "$work/$name.txt"
}

echo "# $pattern qd $qd on $file, $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
for round in $(seq 1 "$rounds"); do
    for burst in $bursts; do
        # N: bursts of N requests of any kind, no separate write limit;
        # "default": keel serve's defaults (submit_batch_max 4, writes 2).
        burst_args=(--submit-batch "$burst" --submit-write-batch 0)
        [ "$burst" = default ] && burst_args=()
        trace "keel-submit-batch-$burst-round$round" "$keel_perf" device --path "$file" --size 2g \
            --pattern "$pattern" --bs 4k --qd "$qd" --reactors 1 --idle adaptive \
            --duration "$duration" --ramp 1 --fio never "${burst_args[@]}"
    done
    trace "fio-round$round" fio --name=keel-peer --filename="$file" --ioengine=io_uring --direct=1 \
        --fixedbufs=1 --registerfiles=1 --rw="$pattern" --bs=4096 --iodepth="$qd" --numjobs=1 \
        --time_based=1 --runtime="$duration" --ramp_time=1 --norandommap=1 --randrepeat=0 \
        --size=2147483648
done
