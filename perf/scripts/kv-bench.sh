#!/usr/bin/env bash
# Redis-protocol benchmarks of Keel against redis-server, side by side in one
# run (BENCHMARKS.md, "Key-value gateway"):
#
#   1. redis-benchmark SET and GET, 50 clients, 100-byte values, pipeline 1
#      and 16, against
#        - keel serve, kv.durability=always (reply after the journal flush)
#        - redis-server, appendonly yes, appendfsync always
#        - redis-server, no persistence (no fsync at all)
#   2. YCSB A-F over RESP (keel-perf ycsb --target resp, YCSB's redis
#      binding's mapping) against Keel (always) and redis-server (always).
#
# Every measurement is repeated RUNS times; the script prints the median and
# the spread (min..max). Needs redis-server and redis-tools (installed with
# apt-get when missing) and release builds of keel and keel-perf.
#
# Usage: perf/scripts/kv-bench.sh [RUNS] [REQUESTS] [YCSB_RECORDS] [YCSB_OPS]
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${1:-5}
REQUESTS=${2:-200000}
YCSB_RECORDS=${3:-100000}
YCSB_OPS=${4:-100000}
KEEL_PORT=${KEEL_PORT:-16379}
REDIS_PORT=${REDIS_PORT:-16380}
WORK=$(mktemp -d /tmp/keel-kv-bench.XXXXXX)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools
fi
cargo build --release -q --bin keel -p keel-perf
KEEL=target/release/keel
PERF=target/release/keel-perf

wait_port() {
    for _ in $(seq 1 600); do
        redis-cli -p "$1" PING >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "nothing answers on port $1" >&2
    exit 1
}

start_keel() {
    rm -rf "$WORK/keel"
    "$KEEL" serve --data-dir "$WORK/keel" --kv-listen "127.0.0.1:$KEEL_PORT" --reactors 2 \
        --set device.size=4GiB --set kv.durability=always --set nfs.enabled=false >"$WORK/keel.log" 2>&1 &
    PIDS+=($!)
    KEEL_PID=$!
    wait_port "$KEEL_PORT"
}

# start_redis always|none
start_redis() {
    rm -rf "$WORK/redis" && mkdir -p "$WORK/redis"
    if [ "$1" = always ]; then
        persist=(--appendonly yes --appendfsync always)
    else
        persist=(--appendonly no)
    fi
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --save "" "${persist[@]}" \
        --daemonize no >"$WORK/redis.log" 2>&1 &
    PIDS+=($!)
    REDIS_PID=$!
    wait_port "$REDIS_PORT"
}

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# median_spread v1 v2 ...: "median (min..max)"
median_spread() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.0f (%.0f..%.0f)", m, v[1], v[NR]}'
}

# bench PORT TEST PIPELINE: requests per second of one redis-benchmark run
bench() {
    redis-benchmark -p "$1" -t "$2" -c 50 -d 100 -P "$3" -n "$REQUESTS" -r 100000 --csv 2>/dev/null \
        | awk -F'","' -v t="$(echo "$2" | tr a-z A-Z)" '$1 ~ "\""t {print $2}'
}

echo "# machine: $(nproc) cores, shared VM; $(date -u +%Y-%m-%dT%H:%MZ); runs per figure: $RUNS"
echo "# redis-benchmark -c 50 -d 100 -n $REQUESTS -r 100000 -P {1,16} -t {set,get}"
printf '%-34s %-6s %-4s %s\n' "server (durability)" test P "requests/s median (min..max)"
for target in keel redis-always redis-nofsync; do
    for pipeline in 1 16; do
        for test in set get; do
            values=()
            for _ in $(seq 1 "$RUNS"); do
                case $target in
                    keel) start_keel; port=$KEEL_PORT; pid=$KEEL_PID ;;
                    redis-always) start_redis always; port=$REDIS_PORT; pid=$REDIS_PID ;;
                    redis-nofsync) start_redis none; port=$REDIS_PORT; pid=$REDIS_PID ;;
                esac
                [ "$test" = get ] && redis-benchmark -p "$port" -t set -c 50 -d 100 -n 100000 -r 100000 -P 16 -q >/dev/null
                values+=("$(bench "$port" "$test" "$pipeline")")
                stop_pid "$pid"
            done
            printf '%-34s %-6s %-4s %s\n' "$target" "$test" "$pipeline" "$(median_spread "${values[@]}")"
        done
    done
done

echo
echo "# YCSB over RESP: keel-perf ycsb --target resp --threads 16, recordcount=$YCSB_RECORDS operationcount=$YCSB_OPS"
printf '%-14s %-10s %s\n' server workload "run-phase ops/s median (min..max)"
for target in keel redis-always; do
    for w in a b c d e f; do
        values=()
        for _ in $(seq 1 "$RUNS"); do
            case $target in
                keel) start_keel; port=$KEEL_PORT; pid=$KEEL_PID ;;
                redis-always) start_redis always; port=$REDIS_PORT; pid=$REDIS_PID ;;
            esac
            out=$("$PERF" ycsb -P "perf/workloads/workload$w" --target resp --addr "127.0.0.1:$port" --threads 16 \
                -p recordcount="$YCSB_RECORDS" -p operationcount="$YCSB_OPS")
            values+=("$(echo "$out" | awk -F', ' '/^# phase: run/ {run=1} run && /Throughput/ {print $3; exit}')")
            stop_pid "$pid"
        done
        printf '%-14s %-10s %s\n' "$target" "workload$w" "$(median_spread "${values[@]}")"
    done
done
