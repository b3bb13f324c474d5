#!/usr/bin/env bash
# Requests/s of one or more keel binaries and of redis-server (appendonly yes,
# appendfsync always) with kv-bench.sh's redis-benchmark settings (-c 50 -d 100
# -r 100000, the 100,000 keys preloaded, SET and GET at pipeline 1 and 16),
# without YCSB and without building: a quick check of a change against the
# goals of BENCHMARKS.md, "Key-value gateway (issue 5)". Each keel runs as
# `keel serve` (kv.durability=always, a 1 GiB data file). The servers take
# turns within each round, the order rotating by round; take ratios within a
# round. Prints one line per run.
#
#   nice perf/scripts/kv-vs-redis.sh ROUNDS KEEL...
#
# N1, N16: requests per run at pipeline 1 and 16 [50000, 200000]. Needs
# redis-server and redis-tools.
set -euo pipefail
ROUNDS=$1; shift
KEELS=("$@")
port=${KEEL_PORT:-16591}
if redis-cli -p "$port" PING >/dev/null 2>&1; then
    # keel listens with SO_REUSEPORT: a second server would share the port.
    echo "a server already answers on port $port; set KEEL_PORT" >&2
    exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/keel-kv-vs-redis.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
dd if=/dev/zero of="$work/keel.img" bs=4M count=256 oflag=direct status=none
# shellcheck source=perf/scripts/kv-preload.sh
source "$(dirname "$0")/kv-preload.sh"
kv_preload_resp "$work/preload.resp"
servers=("${KEELS[@]}" redis)
for round in $(seq 1 "$ROUNDS"); do
    n=${#servers[@]}
    for j in $(seq 0 $((n - 1))); do
        s=${servers[$(((j + round) % n))]}
        if [ "$s" = redis ]; then
            rm -rf "$work/redis"; mkdir -p "$work/redis"
            redis-server --port "$port" --dir "$work/redis" --appendonly yes --appendfsync always --save "" >"$work/rlog" 2>&1 &
        else
            "$s" mkfs --force --data-dir "$work" --set device.size=1GiB >"$work/log" 2>&1
            "$s" serve --data-dir "$work" --set device.size=1GiB --kv-listen "127.0.0.1:$port" --set kv.durability=always >>"$work/log" 2>&1 &
        fi
        pid=$!
        for _ in $(seq 50); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.2; done
        redis-cli -p "$port" --pipe <"$work/preload.resp" >/dev/null
        for run in set-1 get-1 set-16 get-16; do
            t=${run%-*}; p=${run#*-}; req=${N1:-50000}; [ "$p" = 16 ] && req=${N16:-200000}
            rps=$(redis-benchmark -p "$port" -t "$t" -c 50 -d 100 -P "$p" -n "$req" -r 100000 --csv 2>/dev/null |
                awk -F'","' -v t="\"${t^^}" '$1 == t {gsub(/"/, "", $2); print $2}')
            echo "round $round $s $run rps $rps load $(cut -d' ' -f1 /proc/loadavg)"
        done
        kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    done
done
