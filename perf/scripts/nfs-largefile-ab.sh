#!/usr/bin/env bash
# A/B of two `keel serve` binaries on NFS largefile: Keel's CPU per GB
# written and MB/s, one server at a time, rounds alternating A and B so
# machine load hits both (BENCHMARKS.md, NFS gateway).
#
# Each binary serves its own data file (written in full before it is
# formatted, as nfs-bench.sh's FILE_STATE=written) with the same
# configuration as nfs-bench.sh's /export (uring backend, one reactor by
# default). Per run: `keel-perf nfs largefile` (64 KiB UNSTABLE writes, 16
# in flight, then COMMIT) and the server's user+system CPU from
# /proc/PID/stat before and after, so the figure is Keel's own CPU
# (core-seconds per GB written), which survives load better than MB/s.
#
# Usage: perf/scripts/nfs-largefile-ab.sh KEEL_A KEEL_B [ROUNDS] [MIB]
#   PERF=path: the keel-perf binary (default target/release/keel-perf).
#   WORK_DIR=/path (default /tmp): where the data files live.
#   LARGEFILE_ARGS: extra `keel-perf nfs largefile` arguments for both
#   (e.g. '--write-kib 1024', the Linux client's WRITE size).
#   LARGEFILE_ARGS_A, LARGEFILE_ARGS_B: the same for A or B only (default
#   LARGEFILE_ARGS), so one binary can be compared at two WRITE sizes.
#   DEVICE_A, DEVICE_B: extra `[device]` lines for A's or B's configuration
#   (e.g. DEVICE_B='submit_write_batch_max = 0'), so one binary can be
#   compared with itself under two settings.
set -euo pipefail
cd "$(dirname "$0")/../.."

A=${1:?usage: nfs-largefile-ab.sh KEEL_A KEEL_B [ROUNDS] [MIB]}
B=${2:?usage: nfs-largefile-ab.sh KEEL_A KEEL_B [ROUNDS] [MIB]}
ROUNDS=${3:-5}
MIB=${4:-300}
PERF=${PERF:-target/release/keel-perf}
# Room for every run's file: a removed file's space is freed in the
# background and may not be back by the next run.
DEVICE_MIB=$((MIB * (ROUNDS + 4) > 2048 ? MIB * (ROUNDS + 4) : 2048))
WORK=$(mktemp -d "${WORK_DIR:-/tmp}/keel-nfs-ab.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 1
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

# start NAME BINARY NFS_PORT MOUNT_PORT DEVICE_LINES: prints the server's pid.
start() {
    local dir="$WORK/$1"
    mkdir -p "$dir/data"
    cat >"$dir/keel.toml" <<EOF
[device]
backend = "uring"
size = "${DEVICE_MIB}MiB"
$5

[kv]
enabled = false

[nfs]
enabled = true
listen = "127.0.0.1"
nfs_port = $3
mount_port = $4

[[nfs.export]]
path = "/export"
clients = ["127.0.0.1"]
squash = "none"
EOF
    dd if=/dev/zero of="$dir/data/keel.img" bs=4M count=$((DEVICE_MIB / 4)) oflag=direct conv=fsync status=none
    "$2" serve --config "$dir/keel.toml" --data-dir "$dir/data" >"$dir/keel.log" 2>&1 &
    echo $!
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

PID_A=$(start a "$A" 23049 23048 "${DEVICE_A:-}")
PIDS+=("$PID_A")
PID_B=$(start b "$B" 24049 24048 "${DEVICE_B:-}")
PIDS+=("$PID_B")
wait_port 23049
wait_port 24049
TICKS=$(getconf CLK_TCK)

ARGS_A=${LARGEFILE_ARGS_A-${LARGEFILE_ARGS:-}}
ARGS_B=${LARGEFILE_ARGS_B-${LARGEFILE_ARGS:-}}

# measure PID NFS_PORT MOUNT_PORT ARGS: "MB/s core-s/GB" of one largefile run.
measure() {
    local before after mbs
    before=$(cpu_ticks "$1")
    # shellcheck disable=SC2086 # $4 is a list of arguments
    mbs=$("$PERF" nfs largefile --size-mib "$MIB" --nfs-port "$2" --mount-port "$3" --export /export $4 |
        awk '/^run 1:/ {print $3}')
    after=$(cpu_ticks "$1")
    awk -v mbs="$mbs" -v t=$((after - before)) -v hz="$TICKS" -v mib="$MIB" \
        'BEGIN {printf "%s %.3f\n", mbs, (t / hz) / (mib * 1048576 / 1e9)}'
}

declare -a RA_MBS RA_CPU RB_MBS RB_CPU
for round in $(seq 1 "$ROUNDS"); do
    read -r m c < <(measure "$PID_A" 23049 23048 "$ARGS_A")
    RA_MBS+=("$m") RA_CPU+=("$c")
    read -r m c < <(measure "$PID_B" 24049 24048 "$ARGS_B")
    RB_MBS+=("$m") RB_CPU+=("$c")
    echo "round $round (load $(cut -d' ' -f1 /proc/loadavg)): A ${RA_MBS[-1]} MB/s ${RA_CPU[-1]} core-s/GB;" \
        "B ${RB_MBS[-1]} MB/s ${RB_CPU[-1]} core-s/GB" >&2
done

median_spread() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.3f (%.3f..%.3f)", m, v[1], v[NR]}'
}
echo "largefile ${MIB} MiB, ${ROUNDS} rounds alternating; A = $A $ARGS_A ${DEVICE_A:-}, B = $B $ARGS_B ${DEVICE_B:-}"
echo "A: MB/s $(median_spread "${RA_MBS[@]}"); Keel CPU core-s/GB $(median_spread "${RA_CPU[@]}")"
echo "B: MB/s $(median_spread "${RB_MBS[@]}"); Keel CPU core-s/GB $(median_spread "${RB_CPU[@]}")"
