#!/usr/bin/env bash
# The kernel NFS client tier: the Linux NFSv3 client in the QEMU guest of
# ../shared/vm mounts `keel serve` running natively on this machine (uring
# on a data file); the operations users do, an export refusing an unlisted
# client, two mounts with several processes each, git, the fio job files of
# perf/fio, and kill -9 of the server with a restart under live mounts.
#
# The network: nfs-netns.sh runs in a network namespace of its own with a
# tap device at 10.0.2.2; the guest gets a virtio-net device on it (address
# 10.0.2.15). The guest has neither git nor fio nor network drivers: the
# host's git and fio run there with their shared libraries copied next to
# them (same Debian release on both sides), the driver modules come from
# the VM's kernel tree. Needs root (network namespace, tap device, apt).
#
# Wall time on the shared 2-core machine (2026-12-03, 34 checks): 113 s at
# load 2-4, 10,000 entries 66 s of it; 7.8-8.8 minutes at load 17 (other
# engineers' builds), 10,000 entries 5.8-7.2 of them. Each NFS call is a
# round trip through the emulated client; Keel on the host spent 8 s of CPU
# on the whole run. Before, with `keel serve` inside the guest: 14.8 min.
#
# usage: scripts/vm/nfs-tests.sh      prints 'nfs-vm: N passed, N failed'
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
VM=${KEEL_VM_DIR:-$ROOT/../shared/vm}
[ -f "$VM/run.sh" ] || { echo "nfs-tests: no VM scripts at $VM (set KEEL_VM_DIR)"; echo "nfs-vm: 0 passed, 1 failed"; exit 1; }
bash "$VM/build.sh" >/dev/null 2>&1 || { echo "nfs-tests: building the VM failed (it needs root and apt): bash $VM/build.sh"; echo "nfs-vm: 0 passed, 1 failed"; exit 1; }

SHARE=$(mktemp -d /tmp/keel-vm-nfs.XXXXXX)
trap 'rm -rf "$SHARE"' EXIT
# The debug build (the other tiers build it too): the server runs natively,
# the emulated client is what costs time.
cargo build -q -p keel --bin keel
cp target/debug/keel "$SHARE/keel"
cp -r perf/fio "$SHARE/fio"
cp "$ROOT/scripts/vm/guest-nfs-tests.sh" "$SHARE/guest.sh"

# bundle DIR BIN...: the binaries and the shared libraries they load (all but
# the C library and the loader, which the guest has).
bundle() {
  local dest=$1; shift
  mkdir -p "$dest/bin" "$dest/lib"
  for b in "$@"; do
    local p; p=$(command -v "$b") || { echo "nfs-tests: $b is not installed on this machine"; return 1; }
    cp "$p" "$dest/bin/"
    ldd "$p" | awk '/=> \// {print $3}' | grep -v -E '/(libc|libm|ld-linux[^/]*)\.so' | xargs -r cp -L -t "$dest/lib/"
  done
}
command -v fio >/dev/null || { apt-get update -qq && apt-get install -y -q fio >/dev/null; }
bundle "$SHARE/bundle" git fio
# git runs some commands as separate programs from its exec path (clone runs
# git-upload-pack); they are the same binary under another name.
for t in git-upload-pack git-receive-pack; do cp "$SHARE/bundle/bin/git" "$SHARE/bundle/bin/$t"; done

# virtio_net and what it needs, from the kernel tree build.sh unpacked
# (uncompressed there); the guest insmods them from /host/modules.
CACHE=${VMTEST_CACHE:-/var/tmp/keel-vmtest}
KVER=$(cat "$CACHE/out/KVER")
KDIR=$CACHE/kernel-$KVER/lib/modules/$KVER/kernel
mkdir -p "$SHARE/modules"
for ko in net/core/failover.ko drivers/net/net_failover.ko drivers/net/virtio_net.ko; do
  cp "$KDIR/$ko" "$SHARE/modules/" || { echo "nfs-tests: no $KDIR/$ko"; echo "nfs-vm: 0 passed, 1 failed"; exit 1; }
done

command -v unshare >/dev/null && command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -q util-linux iproute2 >/dev/null; }
rc=0
unshare --net bash "$ROOT/scripts/vm/nfs-netns.sh" "$SHARE" || rc=$?
[ -f "$SHARE/console.log" ] && grep -E '^(ok |FAIL |nfs-vm:|     |TIMING|INFO)' "$SHARE/console.log" || true
cat "$SHARE/ctl/host-results" 2>/dev/null || true
summary=$(grep -E '^nfs-vm:' "$SHARE/console.log" 2>/dev/null | tail -1) || true
host_pass=$(grep -c '^ok ' "$SHARE/ctl/host-results" 2>/dev/null) || true
host_fail=$(grep -c '^FAIL ' "$SHARE/ctl/host-results" 2>/dev/null) || true
if [ "$rc" != 0 ] || [ -z "$summary" ]; then
  echo "nfs-tests: the guest run exited $rc; last console lines:"; tail -40 "$SHARE/console.log" 2>/dev/null || true
  for f in "$SHARE"/ctl/serve-*.log "$SHARE/ctl/fsck.log"; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
  [ -n "$summary" ] || { echo "nfs-vm: ${host_pass:-0} passed, $((${host_fail:-0} + 1)) failed"; exit 1; }
fi
# The guest's checks and the host's (start, clean stop, fsck) in one line.
guest_pass=$(echo "$summary" | sed -n 's/^nfs-vm: \([0-9]*\) passed, \([0-9]*\) failed/\1/p')
guest_fail=$(echo "$summary" | sed -n 's/^nfs-vm: \([0-9]*\) passed, \([0-9]*\) failed/\2/p')
failed=$((guest_fail + host_fail))
[ "$failed" = 0 ] || for f in "$SHARE"/ctl/serve-*.log "$SHARE/ctl/fsck.log"; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
echo "nfs-vm: $((guest_pass + host_pass)) passed, $failed failed"
[ "$rc" = 0 ] && [ "$failed" = 0 ]
