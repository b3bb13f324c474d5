#!/usr/bin/env bash
# The host side of the kernel NFS client tier, run by nfs-tests.sh inside a
# network namespace of its own (unshare --net): nothing else on the machine
# can hold the fixed ports (NFS 2049, MOUNT 20048, portmapper 111), and none
# of them is reachable from outside.
#
# In the namespace: a tap device at 10.0.2.2/24, `keel serve` (uring on a
# data file) listening there, and the guest with a virtio-net device on the
# tap at 10.0.2.15 (the only client the export allows). While the guest
# runs, this script answers its one request: /host/ctl/kill-request (once) makes it
# kill -9 `keel serve` and start it again on the same data file. After the
# guest: a clean stop and `keel fsck`. Host checks go to ctl/host-results.
#
# usage: nfs-netns.sh SHARE     (SHARE prepared by nfs-tests.sh)
set -euo pipefail
SHARE=$1
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
VM=${KEEL_VM_DIR:-$ROOT/../shared/vm}
CTL=$SHARE/ctl
mkdir -p "$CTL"
RESULTS=$CTL/host-results
: > "$RESULTS"
result() { # NAME STATUS: one host check
  if [ "$2" = 0 ]; then echo "ok   $1" >> "$RESULTS"; else echo "FAIL $1" >> "$RESULTS"; fi
}

ip link set lo up
{ ip tuntap add tap0 mode tap && ip addr add 10.0.2.2/24 dev tap0 && ip link set tap0 up; } \
  || { echo "nfs-netns: cannot set up the tap device (needs root and /dev/net/tun)" >&2; exit 1; }

DATA=$(mktemp -d /tmp/keel-nfsvm-data.XXXXXX)
KEEL=""
cleanup() { [ -n "$KEEL" ] && kill -9 "$KEEL" 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT
cat > "$DATA/keel.toml" <<TOML
[device]
backend = "uring"
size = "512MiB"

[dma]
pool_size = "32MiB"

[kv]
enabled = false

[nfs]
enabled = true
listen = "10.0.2.2"
nfs_port = 2049
mount_port = 20048
portmapper = true

[[nfs.export]]
path = "/export"
clients = ["10.0.2.15"]
squash = "none"

# For the guest's check that an export refuses a client it does not list.
[[nfs.export]]
path = "/private"
clients = ["10.0.2.99"]
TOML
KEEL_ARGS=(--config "$DATA/keel.toml" --data-dir "$DATA/data")

start_keel() { # N: starts `keel serve`, logging to ctl/serve-N.log; waits until Ready
  "$SHARE/keel" serve "${KEEL_ARGS[@]}" > "$CTL/serve-$1.log" 2>&1 &
  KEEL=$!
  for _ in $(seq 300); do grep -q '^Ready' "$CTL/serve-$1.log" && return 0; kill -0 "$KEEL" 2>/dev/null || break; sleep 0.1; done
  cat "$CTL/serve-$1.log" >&2
  return 1
}
cpu_s() { # PID: the process's user and system CPU seconds so far
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f s user, %.1f s system", $14 / hz, $15 / hz }' "/proc/$1/stat"
}
restart_keel() { # the guest's kill-request: SIGKILL, then the same data file again
  echo "INFO keel serve's CPU until the kill -9: $(cpu_s "$KEEL")" >> "$RESULTS"
  kill -9 "$KEEL"
  wait "$KEEL" 2>/dev/null || true
  KEEL=""
  if start_keel 2; then : > "$CTL/restarted"; else : > "$CTL/restart-failed"; fi
}

rc=0
start_keel 1 || rc=$?
result "keel serve started on the host" $rc
[ $rc = 0 ] || exit 1

. "$ROOT/scripts/vm/boot.sh"
vm_run "$SHARE/console.log" --timeout 1500 --mem 512 --share "$SHARE" \
  --qemu-arg -netdev --qemu-arg tap,id=n0,ifname=tap0,script=no,downscript=no \
  --qemu-arg -device --qemu-arg virtio-net-pci,netdev=n0,romfile= \
  "$SHARE/guest.sh" &
guest=$!
# The request file is left in place and answered once: removing it raced
# with the guest's 9p create (the guest's shell saw ENOENT after the host's
# rm and the run failed; CI, 2026-12-04).
killed=0
while kill -0 $guest 2>/dev/null; do
  if [ $killed = 0 ] && [ -e "$CTL/kill-request" ]; then killed=1; restart_keel; fi
  sleep 0.1
done
guest_rc=0
wait $guest || guest_rc=$?

stop_rc=0
if [ -n "$KEEL" ]; then echo "INFO keel serve's CPU after the restart: $(cpu_s "$KEEL")" >> "$RESULTS"; kill -INT "$KEEL"; wait "$KEEL" || stop_rc=$?; KEEL=""; else stop_rc=1; fi
result "keel serve stopped cleanly after the run (SIGINT, exit 0)" $stop_rc
fsck_rc=0
"$SHARE/keel" fsck "${KEEL_ARGS[@]}" > "$CTL/fsck.log" 2>&1 || fsck_rc=$?
result "keel fsck clean after the run (kill -9 and recovery included)" $fsck_rc
exit $guest_rc
