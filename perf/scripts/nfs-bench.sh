#!/usr/bin/env bash
# DaisyNFS's smallfile and largefile against keel serve and nfs-ganesha (the
# Debian package, VFS FSAL), side by side in one run on this machine
# (BENCHMARKS.md, "NFS gateway"); largefile also against fio's sequential
# write bandwidth on the same file system (O_DIRECT, 64 KiB, 16 in flight,
# fsync at the end).
#
# Both servers are driven by the same userspace load generator (keel-perf
# nfs, no kernel NFS client needed), with explicit ports, as root, on
# 127.0.0.1; their data (Keel's data file, ganesha's exported directory, fio's
# file) all live in one directory on the same file system. Rounds alternate
# the servers so machine noise hits both; the script prints median and
# spread (min..max) and the ratios keel/ganesha and keel/fio.
#
# Durability: Keel's default export (/export) is synchronous (metadata
# durable in the journal before each reply; COMMIT waits for the journal).
# ganesha's COMMIT is an fsync of the file; its CREATE and REMOVE are ext4
# metadata changes it does not sync before replying (strace shows one fsync
# per smallfile file, none for the directory). smallfile also runs against a
# second Keel export (/export-async, `async = true`) that matches that:
# CREATE and REMOVE answered before they are durable, COMMIT still waits for
# the journal up to the file's writes (which, the journal being one ordered
# log, covers its CREATE too).
#
# File state, matched for largefile / fio (FILE_STATE=written, the default):
# Keel's data file is written in full (zeros) before `keel serve` formats it,
# and fio runs with --overwrite=1 (its file is written before the timed job),
# so both write to blocks that are already written, as on a raw device. On
# ext4 a write to an unwritten (fallocated) extent also converts the extent,
# and a later FUA write or fdatasync then commits ext4's journal; a real NVMe
# device has no such state. FILE_STATE=fresh runs the earlier, unmatched
# setting: Keel's file only fallocated, fio's file fallocated by fio.
#
# Usage: perf/scripts/nfs-bench.sh [RUNS] [SMALLFILE_SECONDS] [LARGEFILE_MIB]
#   WORK_DIR=/path (default /tmp): where the data lives.
#   FILE_STATE=written|fresh (default written): see above.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${1:-5}
SECONDS_PER_RUN=${2:-5}
LARGE_MIB=${3:-100}
KEEL_NFS=${KEEL_NFS_PORT:-22049}
KEEL_MNT=${KEEL_MOUNT_PORT:-22048}
GAN_NFS=${GANESHA_NFS_PORT:-12049}
GAN_MNT=${GANESHA_MOUNT_PORT:-12048}
FILE_STATE=${FILE_STATE:-written}
case $FILE_STATE in written | fresh) ;; *) echo "FILE_STATE must be written or fresh" >&2; exit 2 ;; esac
# Keel's device: room for a few largefile runs whose space is freed in the
# background, at least 2 GiB.
DEVICE_MIB=$((LARGE_MIB * 8 > 2048 ? LARGE_MIB * 8 : 2048))
WORK=$(mktemp -d "${WORK_DIR:-/tmp}/keel-nfs-bench.XXXXXX")
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$WORK/ganesha.pid" ] && kill "$(cat "$WORK/ganesha.pid")" 2>/dev/null || true
    sleep 1
    rm -rf "$WORK"
}
trap cleanup EXIT

for p in nfs-ganesha nfs-ganesha-vfs rpcbind fio; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need="${need:-} $p"
done
if [ -n "${need:-}" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need
fi
cargo build --release -q -p keel -p keel-perf
KEEL=target/release/keel
PERF=target/release/keel-perf

wait_port() {
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

# --- nfs-ganesha: it registers with a portmapper at start, so rpcbind runs
# until ganesha is up, then stops (nothing else here needs it).
mkdir -p "$WORK/ganesha-export" /run/rpcbind /var/run/ganesha /var/lib/nfs/ganesha
cat > "$WORK/ganesha.conf" <<EOF
NFS_CORE_PARAM {
    Protocols = 3;
    NFS_Port = $GAN_NFS;
    MNT_Port = $GAN_MNT;
    Bind_addr = 127.0.0.1;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Plugins_Dir = "/usr/lib/x86_64-linux-gnu/ganesha";
}
NFS_KRB5 { Active_krb5 = false; }
NFSV4 { Graceless = true; }
EXPORT {
    Export_Id = 1;
    Path = $WORK/ganesha-export;
    Pseudo = /export;
    Protocols = 3;
    Transports = TCP;
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
EOF
started_rpcbind=
if ! (exec 3<>/dev/tcp/127.0.0.1/111) 2>/dev/null; then
    rpcbind -f >"$WORK/rpcbind.log" 2>&1 &
    started_rpcbind=$!
    wait_port 111
fi
ganesha.nfsd -f "$WORK/ganesha.conf" -L "$WORK/ganesha.log" -N NIV_EVENT -p "$WORK/ganesha.pid"
wait_port "$GAN_NFS" || { tail "$WORK/ganesha.log"; exit 1; }
wait_port "$GAN_MNT"
[ -n "$started_rpcbind" ] && { kill "$started_rpcbind"; wait "$started_rpcbind" 2>/dev/null || true; }

# --- keel serve: the NFS gateway only, its data file beside ganesha's export.
cat > "$WORK/keel.toml" <<EOF
[device]
backend = "uring"
size = "${DEVICE_MIB}MiB"

[kv]
enabled = false

[nfs]
enabled = true
listen = "127.0.0.1"
nfs_port = $KEEL_NFS
mount_port = $KEEL_MNT

[[nfs.export]]
path = "/export"
clients = ["127.0.0.1"]
squash = "none"

[[nfs.export]]
path = "/export-async"
clients = ["127.0.0.1"]
squash = "none"
async = true
EOF
mkdir -p "$WORK/keel"
if [ "$FILE_STATE" = written ]; then
    dd if=/dev/zero of="$WORK/keel/keel.img" bs=4M count=$((DEVICE_MIB / 4)) oflag=direct conv=fsync status=none
fi
"$KEEL" serve --config "$WORK/keel.toml" --data-dir "$WORK/keel" >"$WORK/keel.log" 2>&1 &
PIDS+=($!)
wait_port "$KEEL_NFS" || { tail "$WORK/keel.log"; exit 1; }

# run SERVER LOAD ARGS...: one measurement, its figure on stdout.
run() {
    local ports
    case $1 in
        keel) ports=(--nfs-port "$KEEL_NFS" --mount-port "$KEEL_MNT" --export /export) ;;
        keel-async) ports=(--nfs-port "$KEEL_NFS" --mount-port "$KEEL_MNT" --export /export-async) ;;
        # Ganesha's MOUNT v3 takes the export's path, not its pseudo path.
        ganesha) ports=(--nfs-port "$GAN_NFS" --mount-port "$GAN_MNT" --export "$WORK/ganesha-export") ;;
    esac
    shift
    "$PERF" nfs "$@" "${ports[@]}" | awk '/^run 1:/ {print $3}'
}

fio_seq_write() {
    local overwrite=1
    [ "$FILE_STATE" = written ] || overwrite=0
    fio --name=seqwrite --overwrite="$overwrite" --filename="$WORK/fio.dat" --rw=write --bs=64k --size="${LARGE_MIB}M" \
        --direct=1 --ioengine=io_uring --iodepth=16 --end_fsync=1 --output-format=terse --terse-version=3 \
        | awk -F';' '{printf "%.1f\n", $48 * 1024 / 1e6}'
    rm -f "$WORK/fio.dat"
}

# median_spread v1 v2 ...: "median (min..max)"
median_spread() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%.1f (%.1f..%.1f)", m, v[1], v[NR]}'
}
median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
}

declare -A R
for round in $(seq 1 "$RUNS"); do
    for server in keel keel-async ganesha; do
        R[$server.small1]+=" $(run $server smallfile --clients 1 --duration "$SECONDS_PER_RUN")"
        R[$server.small8]+=" $(run $server smallfile --clients 8 --duration "$SECONDS_PER_RUN")"
        [ "$server" = keel-async ] || R[$server.large]+=" $(run $server largefile --size-mib "$LARGE_MIB")"
    done
    R[fio]+=" $(fio_seq_write)"
    echo "round $round (load $(cut -d' ' -f1 /proc/loadavg)): keel ${R[keel.small1]##* }/${R[keel.small8]##* } files/s ${R[keel.large]##* } MB/s;" \
        "keel async ${R[keel-async.small1]##* }/${R[keel-async.small8]##* } files/s;" \
        "ganesha ${R[ganesha.small1]##* }/${R[ganesha.small8]##* } files/s ${R[ganesha.large]##* } MB/s; fio ${R[fio]##* } MB/s" >&2
done

printf '\n%-44s %-26s %-26s %s\n' "load ($RUNS runs, FILE_STATE=$FILE_STATE)" "keel median (min..max)" "ganesha median (min..max)" "keel/ganesha"
for load in small1 small8 async.small1 async.small8 large; do
    keel=keel
    case $load in
        small1) label="smallfile, 1 client (files/s), sync" ;;
        small8) label="smallfile, 8 clients (files/s), sync" ;;
        async.*) keel=keel-async load=${load#async.}
            label="smallfile, ${load#small} client(s) (files/s), async" ;;
        large) label="largefile ${LARGE_MIB} MiB (MB/s)" ;;
    esac
    k=$(median ${R[$keel.$load]}) g=$(median ${R[ganesha.$load]})
    printf '%-44s %-26s %-26s %.2fx\n' "$label" "$(median_spread ${R[$keel.$load]})" \
        "$(median_spread ${R[ganesha.$load]})" "$(awk "BEGIN{print $k / $g}")"
done
f=$(median ${R[fio]}) k=$(median ${R[keel.large]}) g=$(median ${R[ganesha.large]})
printf '%-34s %s\n' "fio seq write 64k QD16 (MB/s)" "$(median_spread ${R[fio]})"
printf 'largefile / fio: keel %.2fx, ganesha %.2fx\n' "$(awk "BEGIN{print $k / $f}")" "$(awk "BEGIN{print $g / $f}")"
