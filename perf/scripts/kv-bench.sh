#!/usr/bin/env bash
# Redis-protocol benchmarks of Keel against redis-server, side by side in one
# run: the figures of BENCHMARKS.md, "Key-value gateway (issue 5)".
#
#   1. redis-benchmark SET and GET, 50 clients, 100-byte values, pipeline 1
#      and 16, random keys over a 100,000-key space that is preloaded (so
#      every GET finds its key and every SET replaces one), against
#        keel          keel serve: default configuration, a data file through
#                      io_uring, kv.durability=always (a reply waits until
#                      its write is durable)
#        redis-always  redis-server --appendonly yes --appendfsync always
#        redis-none    redis-server without persistence (no AOF, no RDB)
#   2. YCSB over RESP (keel-perf ycsb --target resp: YCSB's redis binding's
#      commands) against keel and redis-always: one load phase, then the run
#      phases of A, B, C, F, D and E, in that order, on the loaded data (D
#      and E insert records; E's scans see D's). Keel also runs E with
#      KEEL.SCANHASH (one round trip per scan) as an extra row.
#
# Each round starts every server afresh (empty directory; both data
# directories are on the file system of $TMPDIR) and the servers take turns
# within the round, so a slow drift of the shared machine hits them alike.
# Ratios are taken within a round (Keel's figure over the peer's from the
# same round); the summary gives median (min..max) over the rounds.
#
# Usage: nice perf/scripts/kv-bench.sh [ROUNDS]      (default 3 rounds)
# Environment (defaults in brackets):
#   KV_BENCH_REQUESTS_P1   redis-benchmark requests per run, pipeline 1 [50000]
#   KV_BENCH_REQUESTS_P16  the same at pipeline 16 [200000]
#   KV_BENCH_YCSB_RECORDS  YCSB recordcount [10000]
#   KV_BENCH_YCSB_OPS      YCSB operationcount of A, B, C, D, F [10000]
#   KV_BENCH_YCSB_E_OPS    YCSB operationcount of E (scans are long) [1000]
#   KV_BENCH_YCSB_THREADS  YCSB client threads [16]
#   KV_BENCH_OUT           where the raw figures go [target/kv-bench]
#   KV_BENCH_SPIN20        if set, also Keel with reactors.spin_us=20 (a
#                          shorter spin before the reactor sleeps)
#   KV_BENCH_SUBMIT_BATCH  space-separated values: also Keel with each
#                          device.submit_batch_max (e.g. "0 1": bursts once
#                          per reactor turn, and every request at once)
#   KV_BENCH_PERF_LOG      keel-perf's log filter; keel_perf=debug logs every
#                          failed YCSB operation in the reports [warn]
#   KV_BENCH_NO_BUILD      if set, use the release binaries as they are
#   KEEL_PORT, REDIS_PORT  [16379, 16380]
# Needs redis-server and redis-tools (installed with apt-get when missing);
# builds keel and keel-perf in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${1:-3}
REQUESTS_P1=${KV_BENCH_REQUESTS_P1:-50000}
REQUESTS_P16=${KV_BENCH_REQUESTS_P16:-200000}
KEYSPACE=100000
YCSB_RECORDS=${KV_BENCH_YCSB_RECORDS:-10000}
YCSB_OPS=${KV_BENCH_YCSB_OPS:-10000}
YCSB_E_OPS=${KV_BENCH_YCSB_E_OPS:-1000}
YCSB_THREADS=${KV_BENCH_YCSB_THREADS:-16}
OUT=${KV_BENCH_OUT:-target/kv-bench}
KEELS=(keel)
[ -n "${KV_BENCH_SPIN20:-}" ] && KEELS+=(keel-spin20)
for n in ${KV_BENCH_SUBMIT_BATCH:-}; do KEELS+=("keel-sb$n"); done
KEEL_PORT=${KEEL_PORT:-16379}
REDIS_PORT=${REDIS_PORT:-16380}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keel-kv-bench.XXXXXX")
SERVER_PID=
mkdir -p "$OUT"
RESULTS="$OUT/results.txt"
: >"$RESULTS"
rm -f "$OUT"/ycsb-*.txt "$OUT"/server-*.log

cleanup() {
    [ -n "$SERVER_PID" ] && stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    # Other engineers' apt-get may hold the lock: wait for it.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq redis-server redis-tools
fi
[ -n "${KV_BENCH_NO_BUILD:-}" ] || cargo build --release -q -p keel --bin keel -p keel-perf --bin keel-perf
# Keel listens with SO_REUSEPORT: a server left on a port would silently
# share it with the one measured (and take part of its connections).
for port in "$KEEL_PORT" "$REDIS_PORT"; do
    if redis-cli -p "$port" PING >/dev/null 2>&1; then
        echo "port $port is in use; stop what listens there first" >&2
        exit 1
    fi
done
KEEL=$PWD/target/release/keel
PERF=$PWD/target/release/keel-perf

wait_port() {
    for _ in $(seq 1 1200); do
        redis-cli -p "$1" PING >/dev/null 2>&1 && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "nothing answers on port $1; log:" >&2
    tail -20 "$WORK/server.log" >&2
    exit 1
}

# Keel's data file, written in full once: a file that was only fallocated
# pays a file-system journal commit (unwritten extent conversion) on the
# first write to every block, which a running appliance (or a block device)
# does not. Every round formats a fresh volume on it.
mkdir -p "$WORK/keel"
dd if=/dev/zero of="$WORK/keel/keel.img" bs=4M count=1024 oflag=direct status=none

# start TARGET: a fresh server; sets PORT.
start() {
    if redis-cli -p "$KEEL_PORT" PING >/dev/null 2>&1 || redis-cli -p "$REDIS_PORT" PING >/dev/null 2>&1; then
        echo "a server still answers on $KEEL_PORT or $REDIS_PORT" >&2
        exit 1
    fi
    case $1 in
        keel | keel-spin20 | keel-sb*)
            PORT=$KEEL_PORT
            local extra=()
            [ "$1" = keel-spin20 ] && extra=(--set reactors.spin_us=20)
            [[ "$1" = keel-sb* ]] && extra=(--set "device.submit_batch_max=${1#keel-sb}")
            "$KEEL" mkfs --force --data-dir "$WORK/keel" >"$WORK/server.log" 2>&1
            "$KEEL" serve --data-dir "$WORK/keel" --kv-listen "127.0.0.1:$PORT" \
                --set kv.durability=always "${extra[@]}" >"$WORK/server.log" 2>&1 &
            ;;
        redis-always | redis-none)
            PORT=$REDIS_PORT
            rm -rf "$WORK/redis" && mkdir -p "$WORK/redis"
            local persist=(--appendonly no)
            [ "$1" = redis-always ] && persist=(--appendonly yes --appendfsync always)
            redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK/redis" --save "" "${persist[@]}" \
                --daemonize no >"$WORK/server.log" 2>&1 &
            ;;
    esac
    SERVER_PID=$!
    wait_port "$PORT"
}

# Stops the server; Keel checkpoints and closes its volume on SIGTERM.
stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    cat "$WORK/server.log" >>"$OUT/server-$target.log"
}

record() { echo "$*" >>"$RESULTS"; }

# journal_counters: Keel's journal records and batch writes so far ("R B").
journal_counters() {
    redis-cli -p "$PORT" INFO keel | tr -d '\r' |
        awk -F: '$1 == "journal_records" {r = $2} $1 == "journal_batches" {b = $2} END {print r + 0, b + 0}'
}

# The preload: SET key:<12 digits> (redis-benchmark's -r key names) of every
# key in the key space, 100-byte values, as redis-cli --pipe input.
awk -v n="$KEYSPACE" 'BEGIN {
    v = sprintf("%0100d", 0); gsub(/0/, "x", v)
    for (i = 0; i < n; i++) printf "*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$100\r\n%s\r\n", i, v
}' >"$WORK/preload.resp"

preload() {
    local out
    out=$(redis-cli -p "$PORT" --pipe <"$WORK/preload.resp")
    if ! grep -q "errors: 0, replies: $KEYSPACE" <<<"$out"; then
        echo "preload failed: $out" >&2
        exit 1
    fi
}

# bench TEST PIPELINE: requests per second of one redis-benchmark run.
bench() {
    local n=$REQUESTS_P1
    [ "$2" = 16 ] && n=$REQUESTS_P16
    redis-benchmark -p "$PORT" -t "$1" -c 50 -d 100 -P "$2" -n "$n" -r "$KEYSPACE" --csv 2>/dev/null |
        awk -F'","' -v t="\"$(tr a-z A-Z <<<"$1")" '$1 == t {print $2}'
}

# ycsb NAME WORKLOAD PHASE [ARGS...]: records run-phase throughput and errors.
ycsb() {
    local name=$1 workload=$2 phase=$3 ops=$YCSB_OPS out
    shift 3
    [ "$workload" = e ] && ops=$YCSB_E_OPS
    out=$(RUST_LOG=${KV_BENCH_PERF_LOG:-warn} "$PERF" ycsb -P "perf/workloads/workload$workload" --target resp --addr "127.0.0.1:$PORT" \
        --threads "$YCSB_THREADS" --phase "$phase" \
        -p recordcount="$YCSB_RECORDS" -p operationcount="$ops" "$@" 2>&1)
    echo "$out" >>"$OUT/ycsb-$target-$name-round$round.txt"
    record ycsb "$name" "$target" "$round" \
        "$(awk -F', ' '/Throughput/ {print $3; exit}' <<<"$out")"
    record ycsb-errors "$name" "$target" "$round" \
        "$(awk -F', ' '/Return=ERROR/ {n += $3} END {print n + 0}' <<<"$out")"
}

started=$(date +%s)
echo "# $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ), $ROUNDS rounds"
echo "# $(redis-server --version | cut -d' ' -f1-3), $(uname -r), data on $(df --output=fstype "$WORK" | tail -1)"
for round in $(seq 1 "$ROUNDS"); do
    for target in "${KEELS[@]}" redis-always redis-none; do
        start "$target"
        preload
        for pipeline in 1 16; do
            for test in set get; do
                [[ "$target" = keel* ]] && journal_before=$(journal_counters)
                record rb "$test-P$pipeline" "$target" "$round" "$(bench "$test" "$pipeline")"
                if [[ "$target" = keel* && "$test" = set ]]; then
                    # Keel's journal during the SETs: records per batch
                    # write (the group a durability wait shares).
                    read -r records batches <<<"$(paste -d' ' <(echo "$journal_before") <(journal_counters) |
                        awk '{print $3 - $1, $4 - $2}')"
                    record journal "set-P$pipeline" "$target" "$round" \
                        "$(awk -v r="$records" -v b="$batches" 'BEGIN {printf "%.1f", (b > 0 ? r / b : 0)}')"
                fi
            done
        done
        stop_server
    done
    for target in "${KEELS[@]}" redis-always; do
        start "$target"
        ycsb load a load
        for w in a b c f d e; do
            ycsb "$w" "$w" run
        done
        [ "$target" != redis-always ] && ycsb e-scanhash e run --scan keel
        stop_server
    done
    echo "# round $round done after $(($(date +%s) - started)) s"
done

# ---- summary ----

# values KIND CASE TARGET: one figure per round.
values() { awk -v k="$1" -v c="$2" -v t="$3" '$1 == k && $2 == c && $3 == t {print $5}' "$RESULTS"; }

# ratios KIND CASE_A A CASE_B B: A's figure over B's, round by round.
ratios() {
    awk -v k="$1" -v ca="$2" -v a="$3" -v cb="$4" -v b="$5" '
        $1 == k && $2 == ca && $3 == a {x[$4] = $5}
        $1 == k && $2 == cb && $3 == b {y[$4] = $5}
        END {for (r in x) if ((r in y) && y[r] > 0) printf "%.4f\n", x[r] / y[r]}' "$RESULTS"
}

# summary FORMAT: "median (min..max)" of the numbers on stdin.
summary() {
    sort -g | awk -v f="$1" '{v[NR] = $1} END {
        if (NR == 0) {print "n/a"; exit}
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf f " (" f ".." f ")\n", m, v[1], v[NR]}'
}

label() {
    case $1 in
        keel) echo "Keel (always)" ;;
        keel-spin20) echo "Keel (always, spin 20 us)" ;;
        keel-sb*) echo "Keel (always, submit_batch_max ${1#keel-sb})" ;;
        redis-always) echo "redis (appendfsync always)" ;;
        redis-none) echo "redis (no persistence)" ;;
    esac
}

echo
echo "redis-benchmark -c 50 -d 100 -r $KEYSPACE -P {1,16}, -n $REQUESTS_P1 (P1) / $REQUESTS_P16 (P16);" \
    "requests/s and ratios, median (min..max) of $ROUNDS rounds"
echo
line="| test | P"
rule="|---|---"
for t in "${KEELS[@]}" redis-always redis-none; do line+=" | $(label "$t")"; rule+="|---"; done
for k in "${KEELS[@]}"; do
    for p in redis-always redis-none; do line+=" | $(label "$k") / $(label "$p")"; rule+="|---"; done
done
echo "$line |"
echo "$rule|"
for pipeline in 1 16; do
    for test in set get; do
        c="$test-P$pipeline"
        line="| $(tr a-z A-Z <<<"$test") | $pipeline"
        for t in "${KEELS[@]}" redis-always redis-none; do line+=" | $(values rb "$c" "$t" | summary %.0f)"; done
        for k in "${KEELS[@]}"; do
            for p in redis-always redis-none; do line+=" | $(ratios rb "$c" "$k" "$c" "$p" | summary %.2f)"; done
        done
        echo "$line |"
    done
done
echo
echo "Keel's journal during the SET runs: records per batch write, median (min..max) of $ROUNDS rounds"
echo
for k in "${KEELS[@]}"; do
    for pipeline in 1 16; do
        echo "- $(label "$k"), SET P$pipeline: $(values journal "set-P$pipeline" "$k" | summary %.1f)"
    done
done
echo
echo "YCSB over RESP: keel-perf ycsb --target resp --threads $YCSB_THREADS, recordcount=$YCSB_RECORDS," \
    "operationcount=$YCSB_OPS (E: $YCSB_E_OPS); ops/s, median (min..max) of $ROUNDS rounds;" \
    "e-scanhash: E with --scan keel (KEEL.SCANHASH), against redis's E"
echo
line="| phase"
rule="|---"
for t in "${KEELS[@]}" redis-always; do line+=" | $(label "$t")"; rule+="|---"; done
for k in "${KEELS[@]}"; do line+=" | $(label "$k") / redis"; rule+="|---"; done
echo "$line | failed operations |"
echo "$rule|---|"
for c in load a b c f d e e-scanhash; do
    peer_case=$c
    [ "$c" = e-scanhash ] && peer_case=e
    line="| $c"
    errors=""
    for t in "${KEELS[@]}" redis-always; do
        tc=$c
        [ "$t" = redis-always ] && tc=$peer_case
        line+=" | $(values ycsb "$tc" "$t" | summary %.0f)"
        errors+="$(values ycsb-errors "$tc" "$t" | awk '{n += $1} END {print n + 0}') "
    done
    for k in "${KEELS[@]}"; do line+=" | $(ratios ycsb "$c" "$k" "$peer_case" redis-always | summary %.2f)"; done
    echo "$line | $errors|"
done
echo
echo "# raw figures: $RESULTS; YCSB reports: $OUT/ycsb-*.txt; total $(($(date +%s) - started)) s"
