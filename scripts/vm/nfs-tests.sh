#!/usr/bin/env bash
# The NFS tier in the QEMU guest of ../shared/vm: `keel serve` (uring on the
# guest's NVMe namespace) mounted by the Linux kernel NFSv3 client; the
# operations users do, two mounts with several processes each, git, the fio
# job files of perf/fio, and kill -9 with a remount. The guest has neither git
# nor fio: the host's binaries run there with their shared libraries copied
# next to them (same Debian release on both sides).
#
# Wall time on the shared 2-core machine (2026-12-03, load about 10): 14.8
# minutes, 11 of them the 10,000 entries (guest-nfs-tests.sh says why: Keel's
# CPU per NFS call under emulation, not journal flushes; an `async` export
# was no faster). Not in scripts/test-all yet: it would take test-all past
# its 30-minute budget.
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
# Release: under emulation every instruction of the server counts (the 10,000
# entries take several times longer with the debug build).
cargo build --release -q -p keel --bin keel
cp target/release/keel "$SHARE/keel"
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

. "$ROOT/scripts/vm/boot.sh"
rc=0
vm_run "$SHARE/console.log" --timeout 900 --mem 512 --nvme-size 1024 --share "$SHARE" "$SHARE/guest.sh" || rc=$?
grep -E '^(ok |FAIL |nfs-vm:|     |TIMING)' "$SHARE/console.log" || true
summary=$(grep -E '^nfs-vm:' "$SHARE/console.log" | tail -1)
if [ "$rc" != 0 ] || [ -z "$summary" ]; then
  echo "nfs-tests: guest exited $rc; last console lines:"; tail -40 "$SHARE/console.log"
  [ -n "$summary" ] || echo "nfs-vm: 0 passed, 1 failed"
  exit 1
fi
echo "$summary" | grep -q ' 0 failed'
