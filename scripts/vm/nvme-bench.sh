#!/usr/bin/env bash
# keel-perf device in the QEMU guest: the nvme backend (vfio-pci, polled)
# against the uring backend on the kernel's nvme driver, same emulated
# controller, same guest, same run, alternating, ROUNDS times (default 5).
# Prints every run and a summary (median and range of each figure, and the
# median of the per-round ratios nvme/uring). Absolute figures under
# software emulation mean nothing; only the ratios do.
#
# usage: ROUNDS=5 SECONDS_PER_RUN=3 scripts/vm/nvme-bench.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
VM=${KEEL_VM_DIR:-$ROOT/../shared/vm}
bash "$VM/build.sh" >/dev/null 2>&1 || { echo "nvme-bench: building the VM failed: bash $VM/build.sh"; exit 1; }
cargo build -q --release -p keel --bin keel
cargo build -q --release -p keel-perf --bin keel-perf
SHARE=$(mktemp -d /tmp/keel-vm-bench.XXXXXX)
trap 'rm -rf "$SHARE"' EXIT
cp target/release/keel target/release/keel-perf "$SHARE/"
{ echo "ROUNDS=${ROUNDS:-5} SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}"; cat scripts/vm/guest-nvme-bench.sh; } > "$SHARE/guest.sh"
. "$ROOT/scripts/vm/boot.sh"
vm_run "$SHARE/console.log" --timeout 900 --nvme-size 256 --share "$SHARE" "$SHARE/guest.sh" || {
  echo "nvme-bench: the guest failed"; tail -30 "$SHARE/console.log"; exit 1; }
grep "^BENCH " "$SHARE/console.log" > "${BENCH_OUT:-/dev/null}"
python3 - "$SHARE/console.log" <<'PY'
import json, re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"BENCH round=(\d+) machine_busy_ticks=(\d+) (.*)$", line.strip())
    if not m:
        continue
    doc = json.loads(m.group(3))
    s, keel = doc["settings"], doc["runs"][0]["keel"]
    iops, ios = keel["total"]["iops"], keel["total"]["ios"]
    row = {
        "iops": iops,
        "lat_us_avg": keel["total"]["latency_us"]["avg"],
        "process_cpu_ns_per_io": keel["cpu_cores"] * 1e9 / iops if iops else 0.0,
        "machine_cpu_ns_per_io": int(m.group(2)) * 1e7 / ios if ios else 0.0,
    }
    runs.setdefault((s["pattern"], s["qd"]), {}).setdefault(s["backend"], {})[int(m.group(1))] = row
for (pattern, qd), by_backend in sorted(runs.items()):
    print(f"\n{pattern} 4 KiB QD{qd}:")
    for backend in ("uring", "nvme"):
        rs = list(by_backend.get(backend, {}).values())
        for field in ("iops", "lat_us_avg", "process_cpu_ns_per_io", "machine_cpu_ns_per_io"):
            vals = [r[field] for r in rs]
            if vals:
                print(f"  {backend:5} {field:22} median {statistics.median(vals):10.1f}  range {min(vals):.1f}..{max(vals):.1f}  (n={len(vals)})")
    rounds = sorted(set(by_backend.get("uring", {})) & set(by_backend.get("nvme", {})))
    for field in ("iops", "process_cpu_ns_per_io", "machine_cpu_ns_per_io"):
        ratios = [by_backend["nvme"][r][field] / max(by_backend["uring"][r][field], 1e-9) for r in rounds]
        if ratios:
            print(f"  ratio nvme/uring {field:22} median {statistics.median(ratios):.2f}  range {min(ratios):.2f}..{max(ratios):.2f}  (n={len(ratios)})")
PY
