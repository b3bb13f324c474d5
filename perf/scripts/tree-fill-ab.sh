#!/usr/bin/env bash
# A/B of two keel-perf binaries on Keel's random fill (BENCHMARKS.md, "Tree
# against RocksDB"): the same `keel-perf tree --keel-only` invocation with
# binary A and binary B, alternating within each pair so load changes fall on
# both. CPU per insert is the process's user + system time over the whole
# invocation (fill, closing checkpoint, reopen, 1,000 gets) / inserts, so it
# is a little over the fill's own; voluntary context switches (mostly
# reactor sleeps) per insert come from the same /usr/bin/time.
#
# About 3 minutes for 5 pairs on a quiet machine.
#
# Usage: perf/scripts/tree-fill-ab.sh OLD_BINARY NEW_BINARY [PAIRS] [RECORDS]
set -euo pipefail
cd "$(dirname "$0")/../.."

A=${1:?old keel-perf binary}
B=${2:?new keel-perf binary}
PAIRS=${3:-5}
RECORDS=${4:-1000000}
WORK=${WORK:-/var/tmp}
IMG="$WORK/keel-perf-tree-fill-ab.img"
trap 'rm -f "$IMG"' EXIT

date -u +"# %Y-%m-%d %H:%M UTC"
printf '%-5s %-4s %12s %14s %14s %8s\n' pair bin "fill ops/s" "cpu us/insert" "vcsw/insert" load
for pair in $(seq 1 "$PAIRS"); do
    for side in A B; do
        bin=$A
        if [ "$side" = B ]; then bin=$B; fi
        load=$(cut -d' ' -f1 /proc/loadavg)
        out=$( { /usr/bin/time -f "cpu %U %S %w" nice "$bin" tree --keel-only --runs 1 --records "$RECORDS" \
            --reads 1000 --cache-mib 16 --path "$IMG"; } 2>&1)
        ops=$(sed -n 's/^run 0 keel: fill \([0-9]*\) ops\/s.*/\1/p' <<<"$out")
        cpu_us=$(awk -v n="$RECORDS" '/^cpu /{printf "%.2f", ($2 + $3) * 1e6 / n}' <<<"$out")
        vcsw=$(awk -v n="$RECORDS" '/^cpu /{printf "%.3f", $4 / n}' <<<"$out")
        printf '%-5s %-4s %12s %14s %14s %8s\n' "$pair" "$side" "$ops" "$cpu_us" "$vcsw" "$load"
        grep '^run 0 keel fill CPU' <<<"$out" || true
    done
done
