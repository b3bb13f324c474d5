#!/usr/bin/env bash
# A/B of the tree's background maintenance task (BENCHMARKS.md, "Tree against
# RocksDB", "Background maintenance A/B"): Keel's random fill with the task on
# and off (keel-perf tree --no-background), alternating within each pair so
# load changes fall on both, with the process's CPU (user + system) per insert.
# CPU covers the whole invocation (fill, closing checkpoint, reopen, 1,000
# gets), so it is a little over the fill's own.
#
# About 3 minutes for 5 pairs on a quiet machine. PERF= picks a binary.
#
# Usage: perf/scripts/tree-background-ab.sh [PAIRS] [RECORDS]
set -euo pipefail
cd "$(dirname "$0")/../.."

PAIRS=${1:-5}
RECORDS=${2:-1000000}
WORK=${WORK:-/var/tmp}
IMG="$WORK/keel-perf-tree-ab.img"
trap 'rm -f "$IMG"' EXIT
if [ -z "${PERF:-}" ]; then
    cargo build --release -q -p keel-perf
    PERF=target/release/keel-perf
fi

date -u +"# %Y-%m-%d %H:%M UTC"
printf '%-5s %-4s %12s %14s %8s\n' pair task "fill ops/s" "cpu us/insert" load
for pair in $(seq 1 "$PAIRS"); do
    for task in on off; do
        flag=()
        if [ "$task" = off ]; then flag=(--no-background); fi
        load=$(cut -d' ' -f1 /proc/loadavg)
        out=$( { /usr/bin/time -f "cpu %U %S" nice "$PERF" tree --keel-only --runs 1 --records "$RECORDS" \
            --reads 1000 --cache-mib 16 --path "$IMG" "${flag[@]}"; } 2>&1)
        ops=$(sed -n 's/^run 0 keel: fill \([0-9]*\) ops\/s.*/\1/p' <<<"$out")
        cpu_us=$(awk -v n="$RECORDS" '/^cpu /{printf "%.2f", ($2 + $3) * 1e6 / n}' <<<"$out")
        printf '%-5s %-4s %12s %14s %8s\n' "$pair" "$task" "$ops" "$cpu_us" "$load"
    done
done
