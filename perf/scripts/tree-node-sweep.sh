#!/usr/bin/env bash
# Node-size sweep of Keel's Bε-tree on an io_uring data file (BENCHMARKS.md,
# "Tree node size"): random inserts, random point reads and write
# amplification for several leaf and internal node sizes, with a cache
# several times smaller than the data set. Keel only (the db_bench peer is in
# perf/scripts/tree-vs-db_bench.sh); compare the rows with each other.
#
# The sizes alternate within each round (one run of every size per round),
# so a change in the machine's load spreads over all of them; the summary
# gives each size's median and range over the rounds.
#
# Usage: perf/scripts/tree-node-sweep.sh [ROUNDS] [RECORDS] [READS]
#   SIZES="LEAF_KIB:INTERNAL_KIB ..." (default below), CACHE_MIB (16),
#   PERF=path/to/keel-perf (default: a release build made here).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${1:-3}
RECORDS=${2:-1000000}
READS=${3:-100000}
CACHE_MIB=${CACHE_MIB:-16}
WORK=${WORK:-/var/tmp}
SIZES=${SIZES:-"8:32 8:40 8:48 8:64 16:48 16:64"}
OUT=$(mktemp)
trap 'rm -f "$WORK/keel-perf-sweep.img" "$OUT"' EXIT
if [ -z "${PERF:-}" ]; then
    cargo build --release -q -p keel-perf
    PERF=target/release/keel-perf
fi
date -u +"# %Y-%m-%d %H:%M UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
    for size in $SIZES; do
        leaf=${size%%:*}
        internal=${size##*:}
        line=$(nice "$PERF" tree --keel-only --runs 1 --records "$RECORDS" --reads "$READS" \
            --cache-mib "$CACHE_MIB" --leaf-kib "$leaf" --internal-kib "$internal" \
            --path "$WORK/keel-perf-sweep.img" | grep '^run 0 keel: fill')
        # run 0 keel: fill N ops/s, device writes M MiB; read R ops/s (...)
        fill=$(sed -E 's/.*fill ([0-9.]+) ops.*/\1/' <<<"$line")
        mib=$(sed -E 's/.*device writes ([0-9.]+) MiB.*/\1/' <<<"$line")
        read=$(sed -E 's/.*read ([0-9.]+) ops.*/\1/' <<<"$line")
        echo "round $round leaf $leaf KiB internal $internal KiB: fill $fill ops/s, read $read ops/s, fill writes $mib MiB, load $(cut -d' ' -f1 /proc/loadavg)"
        echo "$size $fill $read $mib" >>"$OUT"
    done
done
date -u +"# %Y-%m-%d %H:%M UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "leaf:internal KiB | insert ops/s median (min - max) | point read ops/s median (min - max) | fill MiB written median"
for size in $SIZES; do
    awk -v s="$size" '$1 == s' "$OUT" | python3 -c '
import sys, statistics as st
rows = [l.split() for l in sys.stdin]
f = [float(r[1]) for r in rows]; r = [float(r[2]) for r in rows]; m = [float(r[3]) for r in rows]
print(f"{rows[0][0]} | {st.median(f):,.0f} ({min(f):,.0f} - {max(f):,.0f}) | {st.median(r):,.0f} ({min(r):,.0f} - {max(r):,.0f}) | {st.median(m):.0f}")'
done
