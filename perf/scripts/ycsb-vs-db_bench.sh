#!/usr/bin/env bash
# YCSB A, B, C, E and F on Keel's engine (keel-perf ycsb --device) against
# the closest db_bench equivalents on RocksDB, in alternating rounds, with
# the median and spread of each side and of the per-round ratio
# (BENCHMARKS.md, "YCSB against the closest db_bench equivalents").
#
# db_bench has no YCSB. What runs on RocksDB is not YCSB:
#   load  filluniquerandom (1 thread: db_bench runs it single-threaded)
#   A     readrandomwriterandom --readwritepercent=50
#   B     readrandomwriterandom --readwritepercent=95
#   C     readrandom
#   E     seekrandom --seek_nexts=50 (YCSB-E: scans of 1-100 records, mean
#         50.5, plus 5% inserts that db_bench does not do)
#   F     updaterandom (every operation a read-modify-write; YCSB-F: half
#         reads, half read-modify-writes)
# with uniform keys, whole-value writes (Keel's YCSB updates merge one
# field) and no "latest" distribution (so no D). Matched: record count, key
# and stored value sizes (23 B keys as YCSB's "user" + hash; 1,144 B values,
# the size of a YCSB record of 10 x 100 B fields in Keel's field-map
# encoding), client threads (8), cache (16 MiB: Keel's node cache over all
# shards, RocksDB's block cache), durability (no sync per write on either:
# Keel --durability none, RocksDB sync=0 with its WAL on), direct I/O on
# both (Keel io_uring O_DIRECT on a data file; RocksDB direct reads, flushes
# and compactions), no compression.
#
# Needs db_bench (Debian's rocksdb-tools; installed with apt-get when
# missing) and builds keel-perf in release mode. Took 8.5 minutes with the
# defaults on the shared 2-core machine at load ~12 (2026-12-03), plus the build.
#
# Usage: perf/scripts/ycsb-vs-db_bench.sh [RUNS] [RECORDS] [OPS] [E_OPS] [DB_BENCH_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${1:-3}
RECORDS=${2:-100000}
OPS=${3:-20000}
E_OPS=${4:-2000}
DB_SECONDS=${5:-5}
CACHE_MIB=${CACHE_MIB:-16}
THREADS=8
KEY_BYTES=23
VALUE_BYTES=1144
WORK=${WORK:-/var/tmp}
KEEL_FILE="$WORK/keel-perf-ycsb-vs.img"
DB="$WORK/keel-perf-ycsb-rocksdb"
RESULTS=$(mktemp)
KEEL_OUT=$(mktemp)
trap 'rm -f "$KEEL_FILE" "$RESULTS" "$KEEL_OUT"; rm -rf "$DB"' EXIT

# shellcheck source=perf/scripts/db_bench-setup.sh
source perf/scripts/db_bench-setup.sh
echo "# records $RECORDS, keel ops $OPS (E: $E_OPS), db_bench ${DB_SECONDS}s per workload, cache ${CACHE_MIB} MiB, $THREADS threads"

db_common=(--db="$DB" --num="$RECORDS" --key_size="$KEY_BYTES" --value_size="$VALUE_BYTES"
    --cache_size=$((CACHE_MIB << 20)) --compression_type=none --use_direct_reads=true
    --use_direct_io_for_flush_and_compaction=true --sync=false --disable_wal=false --progress_reports=false)

# keel WORKLOAD OPS: prints the run phase's throughput.
keel() {
    nice "$PERF" ycsb -P "perf/workloads/workload$1" --target engine --device "$KEEL_FILE" --device-gib 2 \
        --cache-mib "$CACHE_MIB" --durability none --threads "$THREADS" \
        -p recordcount="$RECORDS" -p operationcount="$2" | sed -n '/^# phase: run/,$p' >"$KEEL_OUT"
    # Mean latencies go to stderr (a scan against a point read), the throughput to stdout.
    grep -E '^\[(READ|SCAN|UPDATE|READ-MODIFY-WRITE)\], AverageLatency' "$KEEL_OUT" | tr '\n' ' ' >&2
    echo >&2
    awk -F', ' '/^\[OVERALL\], Throughput/ { print $3 }' "$KEEL_OUT"
}

# rocks BENCHMARK [FLAGS...]: prints db_bench's ops/s for BENCHMARK.
rocks() {
    local bench=$1
    shift
    nice db_bench "${db_common[@]}" --use_existing_db=true --threads="$THREADS" --duration="$DB_SECONDS" \
        --benchmarks="$bench" "$@" | awk -v b="$bench" '$1 == b { for (i = 1; i < NF; i++) if ($(i + 1) == "ops/sec") print $i }'
}

for run in $(seq 1 "$RUNS"); do
    echo "== round $run (load average $(cut -d' ' -f1 /proc/loadavg))"
    rm -rf "$DB"
    nice db_bench "${db_common[@]}" --use_existing_db=false --threads=1 \
        --benchmarks=filluniquerandom,flush,waitforcompaction >/dev/null
    for w in a b c e f; do
        ops=$OPS
        if [ "$w" = e ]; then ops=$E_OPS; fi
        # Alternate which side goes first, so drifting load hurts both alike.
        if [ $((run % 2)) = 1 ]; then k=$(keel "$w" "$ops"); fi
        case $w in
            a) r=$(rocks readrandomwriterandom --readwritepercent=50) ;;
            b) r=$(rocks readrandomwriterandom --readwritepercent=95) ;;
            c) r=$(rocks readrandom) ;;
            e) r=$(rocks seekrandom --seek_nexts=50) ;;
            f) r=$(rocks updaterandom) ;;
        esac
        if [ $((run % 2)) = 0 ]; then k=$(keel "$w" "$ops"); fi
        echo "$w keel $k rocksdb $r"
        echo "$w $k $r" >>"$RESULTS"
    done
done

echo "== summary: ops/s median (min - max); Keel / RocksDB per round, median (min - max)"
for w in a b c e f; do
    stats() { sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f (%.0f - %.0f)", m, v[1], v[NR] }'; }
    ratio() { sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2fx (%.2f - %.2f)", m, v[1], v[NR] }'; }
    keel_s=$(awk -v w="$w" '$1 == w { print $2 }' "$RESULTS" | stats)
    rocks_s=$(awk -v w="$w" '$1 == w { print $3 }' "$RESULTS" | stats)
    ratio_s=$(awk -v w="$w" '$1 == w && $3 > 0 { print $2 / $3 }' "$RESULTS" | ratio)
    echo "$w | keel $keel_s | rocksdb $rocks_s | keel/rocksdb $ratio_s"
done
