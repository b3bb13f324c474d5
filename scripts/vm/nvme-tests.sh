#!/usr/bin/env bash
# The NVMe-over-VFIO tier: builds the nvme test binary on this machine and
# runs it inside the QEMU guest of ../shared/vm (emulated NVMe controllers
# behind an emulated IOMMU), where the controllers are handed to vfio-pci.
# One boot with two controllers: every single-controller test on the first
# (the timeout/abort/reset test among them), the two-controller test on
# both, the engine's volume across a restart, `keel serve` on NVMe driven by
# the host's redis-cli (put/get, clean restart, kill -9 and recovery), then
# the unbind-mid-I/O test.
#
# usage: scripts/vm/nvme-tests.sh
# Needs the VM (built on first use by ../shared/vm/build.sh, which needs root
# and apt). Prints 'N passed, N failed' and exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
VM=${KEEL_VM_DIR:-$ROOT/../shared/vm}
[ -f "$VM/run.sh" ] || { echo "nvme-tests: no VM scripts at $VM (set KEEL_VM_DIR)"; echo "0 passed, 1 failed"; exit 1; }
bash "$VM/build.sh" >/dev/null 2>&1 || { echo "nvme-tests: building the VM failed (it needs root and apt): bash $VM/build.sh"; echo "0 passed, 1 failed"; exit 1; }

SHARE=$(mktemp -d /tmp/keel-vm-nvme.XXXXXX)
trap 'rm -rf "$SHARE"' EXIT
bin=$(cargo test -p keel-drivers --test nvme_vfio --no-run 2>&1 | sed -n 's/.*Executable tests\/nvme_vfio.rs (\(.*\))/\1/p' | tail -1)
[ -x "$bin" ] || { echo "nvme-tests: could not build the nvme_vfio test binary"; echo "0 passed, 1 failed"; exit 1; }
cp "$bin" "$SHARE/nvme_vfio"
bin=$(cargo test -p keel-engine --test nvme_volume --no-run 2>&1 | sed -n 's/.*Executable tests\/nvme_volume.rs (\(.*\))/\1/p' | tail -1)
[ -x "$bin" ] || { echo "nvme-tests: could not build the nvme_volume test binary"; echo "0 passed, 1 failed"; exit 1; }
cp "$bin" "$SHARE/nvme_volume"
cargo build -q --bin keel
cp target/debug/keel "$SHARE/keel"
cp "$ROOT/scripts/vm/guest-nvme-tests.sh" "$SHARE/guest.sh"
# The guest has no Redis client: the host's redis-cli runs there with its
# shared libraries next to it (same Debian release on both sides).
command -v redis-cli >/dev/null || apt-get install -y -q redis-tools >/dev/null
mkdir -p "$SHARE/bundle/bin" "$SHARE/bundle/lib"
cp "$(command -v redis-cli)" "$SHARE/bundle/bin/"
ldd "$(command -v redis-cli)" | awk '/=> \// {print $3}' | grep -v -E '/(libc|libm|ld-linux[^/]*)\.so' | xargs -r cp -L -t "$SHARE/bundle/lib/"

. "$ROOT/scripts/vm/boot.sh"
rc=0
# The third controller answers every command after 1.5 s (QEMU's null block
# driver with a latency): a device really slower than the command timeout.
SLOW=(--qemu-arg -drive --qemu-arg "if=none,id=nvslow,driver=null-co,size=64M,latency-ns=1500000000,read-zeroes=on"
      --qemu-arg -device --qemu-arg "nvme,serial=vmtest-slow,drive=nvslow")
vm_run "$SHARE/console.log" --timeout 600 --nvme 2 "${SLOW[@]}" --share "$SHARE" "$SHARE/guest.sh" || rc=$?
grep -E '^(run.sh: qemu|test |running|test result|NVME-|unbind mid-I/O|lost completion|phase [12]:|guest:|ok |warn |FAIL |     |[0-9]+ steps|conformance of|  (pass|n/a|FAIL) )' "$SHARE/console.log" || true
passed=$(awk '/test result:/{for(i=1;i<=NF;i++) if($i ~ /^passed;?$/) s+=$(i-1)} /^ok   NVME-KEEL/{s++} END{print s+0}' "$SHARE/console.log")
failed=$(awk '/test result:/{for(i=1;i<=NF;i++) if($i ~ /^failed;?$/) s+=$(i-1)} /^FAIL NVME-KEEL/{s++} END{print s+0}' "$SHARE/console.log")
if [ "$rc" != 0 ]; then
  echo "nvme-tests: guest exited $rc; last console lines:"; tail -40 "$SHARE/console.log"
  [ "$failed" = 0 ] && failed=1
fi
echo "nvme: $passed passed, $failed failed"
[ "$rc" = 0 ] && [ "$failed" = 0 ]
