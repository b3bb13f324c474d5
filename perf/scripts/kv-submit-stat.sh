#!/usr/bin/env bash
# What the uring submission burst (device.submit_batch_max) costs the KV
# gateway: for each setting, a fresh `keel serve` (kv.durability=always, a
# 1 GiB data file), 100,000 keys preloaded, then redis-benchmark SET and GET
# at pipeline 1 and 16 with `perf stat -p` on the server: requests/s,
# io_uring_enter calls, device requests submitted and Keel's CPU, per
# request, and for SETs the journal's records per batch write (INFO keel).
# Settings take turns within a round (BENCHMARKS.md, "Device").
#
#   nice perf/scripts/kv-submit-stat.sh            # BURSTS="0 4 1" ROUNDS=2
#   BURSTS=4 WRITE_BURSTS="2 0" nice perf/scripts/kv-submit-stat.sh
#
# BURSTS: values of device.submit_batch_max; WRITE_BURSTS: values of
# device.submit_write_batch_max tried with each (default: the configured
# default only); TESTS: the redis-benchmark runs ["set-1 get-1 set-16 get-16"];
# KEEL: the binaries, space-separated, taking turns within a round like the
# settings (an A/B of two builds) [target/release/keel].
#
# Needs redis-tools, perf and a release build of keel (cargo build --release
# -p keel); root for the tracepoints.
set -euo pipefail
cd "$(dirname "$0")/../.."
port=${KEEL_PORT:-16479}
work=$(mktemp -d "${TMPDIR:-/tmp}/keel-kv-submit-stat.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
dd if=/dev/zero of="$work/keel.img" bs=4M count=256 oflag=direct status=none
# shellcheck source=perf/scripts/kv-preload.sh
source "$(dirname "$0")/kv-preload.sh"
kv_preload_resp "$work/preload.resp"
journal_counters() {
    redis-cli -p "$port" INFO keel | tr -d '\r' |
        awk -F: '$1 == "journal_records" {r = $2} $1 == "journal_batches" {b = $2} END {print r + 0, b + 0}'
}
per_request() { awk -v a="$1" -v n="$2" -v m="${3:-1}" 'BEGIN { printf "%.4f", a * m / n }'; }
for round in $(seq 1 "${ROUNDS:-2}"); do
    for setting in $(for k in ${KEEL:-target/release/keel}; do for b in ${BURSTS:-0 4 1}; do
        for w in ${WRITE_BURSTS:-default}; do echo "$k/$b/$w"; done; done; done); do
        keel=${setting%/*/*}
        burst=${setting#"$keel"/}
        write_burst=${burst#*/}
        burst=${burst%/*}
        wb_flag=()
        [ "$write_burst" != default ] && wb_flag=(--set "device.submit_write_batch_max=$write_burst")
        "$keel" mkfs --force --data-dir "$work" --set device.size=1GiB >"$work/log" 2>&1
        "$keel" serve --data-dir "$work" --set device.size=1GiB --kv-listen "127.0.0.1:$port" \
            --set kv.durability=always --set "device.submit_batch_max=$burst" "${wb_flag[@]}" >>"$work/log" 2>&1 &
        pid=$!
        for _ in $(seq 50); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.2; done
        redis-cli -p "$port" --pipe <"$work/preload.resp" >/dev/null
        for run in ${TESTS:-set-1 get-1 set-16 get-16}; do
            test=${run%-*}
            pipeline=${run#*-}
            n=20000
            [ "$pipeline" = 16 ] && n=100000
            journal_before=$(journal_counters)
            perf stat -x, -o "$work/stat" -p "$pid" \
                -e syscalls:sys_enter_io_uring_enter,io_uring:io_uring_submit_req,task-clock -- \
                redis-benchmark -p "$port" -t "$test" -c 50 -d 100 -P "$pipeline" -n "$n" -r 100000 \
                --csv 2>/dev/null >"$work/rb"
            rps=$(awk -F'","' -v t="\"${test^^}" '$1 == t {gsub(/"/, "", $2); print $2}' "$work/rb")
            enters=$(awk -F, '/io_uring_enter/ {print $1}' "$work/stat")
            submits=$(awk -F, '/submit_req/ {print $1}' "$work/stat")
            cpu_ms=$(awk -F, '/task-clock/ {print $1}' "$work/stat")
            journal=$(paste -d' ' <(echo "$journal_before") <(journal_counters) |
                awk '{printf "%.1f", ($4 - $2 > 0 ? ($3 - $1) / ($4 - $2) : 0)}')
            echo "round $round $keel submit_batch_max $burst write $write_burst $test P$pipeline" \
                "load $(cut -d' ' -f1 /proc/loadavg):" \
                "$rps req/s, io_uring_enter/req $(per_request "$enters" "$n")," \
                "device requests/req $(per_request "$submits" "$n"), cpu us/req $(per_request "$cpu_ms" "$n" 1000)," \
                "journal records/batch write $journal"
        done
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        pid=
    done
done
