#!/usr/bin/env bash
# A/B of two keel builds on the KV gateway by server CPU per request, which
# a loaded machine disturbs far less than requests/s: for each binary a
# fresh `keel serve` (kv.durability=always, a 1 GiB data file), 100,000 keys
# preloaded, then redis-benchmark (-c 50 -d 100 -r 100000) per test, the
# server's utime+stime (/proc/<pid>/stat) read before and after each run.
# The two binaries alternate which goes first, round by round, so a drift of
# the machine's load hits both alike. Prints one line per run; take ratios
# within a round (BENCHMARKS.md, "Key-value gateway").
#
#   nice perf/scripts/kv-cpu-ab.sh OLD_KEEL NEW_KEEL [ROUNDS]     (default 5)
#
# TESTS: the runs, test-pipeline ["set-16 get-16 set-1"]; N16, N1: requests
# per run at pipeline 16 and 1 [400000, 40000] (a clock tick is 10 ms:
# enough requests that a run costs 50+ ticks). Needs redis-tools.
set -euo pipefail
A=$1
B=$2
ROUNDS=${3:-5}
port=${KEEL_PORT:-16579}
work=$(mktemp -d "${TMPDIR:-/tmp}/keel-kv-cpu-ab.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
dd if=/dev/zero of="$work/keel.img" bs=4M count=256 oflag=direct status=none
# shellcheck source=perf/scripts/kv-preload.sh
source "$(dirname "$0")/kv-preload.sh"
kv_preload_resp "$work/preload.resp"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
for round in $(seq 1 "$ROUNDS"); do
    order="$A $B"
    [ $((round % 2)) = 0 ] && order="$B $A"
    for keel in $order; do
        "$keel" mkfs --force --data-dir "$work" --set device.size=1GiB >"$work/log" 2>&1
        "$keel" serve --data-dir "$work" --set device.size=1GiB --kv-listen "127.0.0.1:$port" \
            --set kv.durability=always >>"$work/log" 2>&1 &
        pid=$!
        for _ in $(seq 50); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.2; done
        redis-cli -p "$port" --pipe <"$work/preload.resp" >/dev/null
        for run in ${TESTS:-set-16 get-16 set-1}; do
            test=${run%-*}
            pipeline=${run#*-}
            n=${N1:-40000}
            [ "$pipeline" = 16 ] && n=${N16:-400000}
            before=$(cpu_ticks "$pid")
            redis-benchmark -p "$port" -t "$test" -c 50 -d 100 -P "$pipeline" -n "$n" -r 100000 \
                --csv 2>/dev/null >"$work/rb"
            after=$(cpu_ticks "$pid")
            rps=$(awk -F'","' -v t="\"${test^^}" '$1 == t {gsub(/"/, "", $2); print $2}' "$work/rb")
            load=$(cut -d' ' -f1 /proc/loadavg)
            awk -v r="$round" -v k="$keel" -v t="$run" -v n="$n" -v d=$((after - before)) -v hz="$hz" \
                -v rps="$rps" -v l="$load" \
                'BEGIN { printf "round %d %s %s cpu_us_per_req %.3f rps %s load %s\n", r, k, t, d * 1e6 / hz / n, rps, l }'
        done
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        pid=
    done
done
