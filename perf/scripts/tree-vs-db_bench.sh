#!/usr/bin/env bash
# Keel's Bε-tree engine against RocksDB's db_bench, side by side in one run
# (BENCHMARKS.md, "Tree against RocksDB"):
#
#   1. keel-perf tree: random inserts, random point reads and write
#      amplification, Keel (io_uring, O_DIRECT) and db_bench (direct reads,
#      direct flush and compaction) at matched key/value sizes, record count,
#      memory and durability mode (no sync per write on either side):
#      Keel's node cache = RocksDB's memtables + block cache + index and
#      filter blocks (keel-perf tree --db-memory total, the default).
#      Filters on both sides: Keel keeps a ~10-bit Bloom filter per leaf it
#      read (inside its cache), RocksDB gets --bloom_bits=10, partitioned,
#      its filter blocks in its block cache (--db-bloom-bits, default 10;
#      DB_BLOOM_BITS=0 gives db_bench's default, no filter).
#   2. keel-perf ycsb --device: YCSB A-F on the engine on a data file with a
#      cache several times smaller than the data set.
#
# Needs db_bench (Debian's rocksdb-tools; installed with apt-get when missing)
# and a release build of keel-perf. Took 27 minutes with the defaults on the
# shared 2-core machine at load ~15 (2026-12-03); pass smaller counts for less.
#
# TREE_ONLY=1 runs step 1 alone (3 runs of 1,000,000 records: ~10 minutes).
#
# Usage: [TREE_ONLY=1] perf/scripts/tree-vs-db_bench.sh [RUNS] [RECORDS] [READS] [YCSB_RECORDS] [YCSB_OPS]
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${1:-3}
RECORDS=${2:-1000000}
READS=${3:-200000}
YCSB_RECORDS=${4:-100000}
YCSB_OPS=${5:-50000}
YCSB_E_OPS=${YCSB_E_OPS:-2000}
CACHE_MIB=${CACHE_MIB:-16}
WORK=${WORK:-/var/tmp}
YCSB_FILE="$WORK/keel-perf-ycsb.img"
trap 'rm -f "$YCSB_FILE" "$WORK/keel-perf-tree.img"; rm -rf "$WORK/keel-perf-rocksdb"' EXIT

# shellcheck source=perf/scripts/db_bench-setup.sh
source perf/scripts/db_bench-setup.sh

echo "== keel-perf tree (Keel against db_bench), $RUNS runs"
nice "$PERF" tree --runs "$RUNS" --records "$RECORDS" --reads "$READS" --cache-mib "$CACHE_MIB" \
    --db-bloom-bits "${DB_BLOOM_BITS:-10}" \
    --path "$WORK/keel-perf-tree.img" --db-path "$WORK/keel-perf-rocksdb"

if [ "${TREE_ONLY:-0}" = 1 ]; then
    exit 0
fi

echo "== keel-perf ycsb --device: YCSB A-F on the engine on a data file, cache $CACHE_MIB MiB"
for w in a b c d e f; do
    # E runs fewer operations: a scan reads up to 100 records.
    ops=$YCSB_OPS
    if [ "$w" = e ]; then ops=$YCSB_E_OPS; fi
    echo "-- workload$w (operationcount $ops)"
    nice "$PERF" ycsb -P "perf/workloads/workload$w" --target engine --device "$YCSB_FILE" --device-gib 2 \
        --cache-mib "$CACHE_MIB" --durability none --threads 8 \
        -p recordcount="$YCSB_RECORDS" -p operationcount="$ops" |
        grep -E '^# phase|^\[OVERALL\]|^\[(READ|UPDATE|INSERT|SCAN|READ-MODIFY-WRITE)\], (Operations|AverageLatency|99thPercentile)'
done
