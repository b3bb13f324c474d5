#!/usr/bin/env bash
# Node-size sweep of Keel's Bε-tree on an io_uring data file (BENCHMARKS.md,
# "Tree node size"): random inserts, random point reads and write
# amplification for several leaf and internal node sizes, with a cache
# several times smaller than the data set. Keel only (the db_bench peer is in
# perf/scripts/tree-vs-db_bench.sh); compare the rows with each other.
#
# Usage: perf/scripts/tree-node-sweep.sh [RUNS] [RECORDS] [READS]
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${1:-3}
RECORDS=${2:-500000}
READS=${3:-20000}
CACHE_MIB=${CACHE_MIB:-8}
WORK=${WORK:-/var/tmp}
SIZES=${SIZES:-"8:16 8:32 8:64 4:32 16:32 16:64"}
trap 'rm -f "$WORK/keel-perf-sweep.img"' EXIT
cargo build --release -q -p keel-perf
date -u +"# %Y-%m-%d %H:%M UTC"
for size in $SIZES; do
    leaf=${size%%:*}
    internal=${size##*:}
    echo "== leaves $leaf KiB, internal nodes $internal KiB"
    nice target/release/keel-perf tree --keel-only --runs "$RUNS" --records "$RECORDS" --reads "$READS" \
        --cache-mib "$CACHE_MIB" --leaf-kib "$leaf" --internal-kib "$internal" \
        --path "$WORK/keel-perf-sweep.img" | grep -v '^#'
done
