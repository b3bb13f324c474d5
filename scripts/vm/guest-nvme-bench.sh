# Guest command file (busybox sh, cwd /host): keel-perf device on one
# emulated controller, alternately through the kernel's nvme driver with the
# uring backend and through vfio-pci with the nvme backend, ROUNDS times.
# Each result is one line: "BENCH round=R machine_busy_ticks=T {json}".
# See scripts/vm/nvme-bench.sh.
. vmtest-lib.sh
set -u
ROUNDS=${ROUNDS:-5}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
BDF=$(vmtest_nvme_bdfs | head -1)
/host/keel setup --hugepages-mib 64 --dma-mib 64 > /dev/null || { echo "guest: keel setup failed"; exit 1; }
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
wait_block() { i=0; while [ ! -b /dev/nvme0n1 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; [ -b /dev/nvme0n1 ]; }
measure() { # round args...: one run, one BENCH line
  round=$1; shift
  b0=$(busy)
  out=$(/host/keel-perf device --json --fio never --prefill never --ramp 0 --duration "$SECONDS_PER_RUN" "$@") || return 1
  b1=$(busy)
  echo "BENCH round=$round machine_busy_ticks=$((b1 - b0)) $(echo "$out" | tr -d '\n ')"
}
run_uring() { wait_block || { echo "guest: /dev/nvme0n1 missing"; return 1; }; measure "$@" --backend uring --path /dev/nvme0n1; }
run_nvme() {
  /host/keel setup --hugepages-mib 0 --pci "$BDF" > /dev/null || return 1
  measure "$@" --backend nvme --pci "$BDF"; rc=$?
  /host/keel setup --reset --hugepages-mib 0 --pci "$BDF" > /dev/null
  return $rc
}
for round in $(seq 1 "$ROUNDS"); do
  for load in "--pattern randread --qd 32" "--pattern randread --qd 1" "--pattern randwrite --qd 32"; do
    # Alternate which backend goes first, so drift does not favour one.
    if [ $((round % 2)) = 1 ]; then
      run_uring "$round" $load --bs 4k || exit 1
      run_nvme "$round" $load --bs 4k || exit 1
    else
      run_nvme "$round" $load --bs 4k || exit 1
      run_uring "$round" $load --bs 4k || exit 1
    fi
  done
done
