# Guest command file (busybox sh, cwd /host): hands every NVMe controller to
# vfio-pci and runs the nvme_vfio tests. See scripts/vm/nvme-tests.sh.
. vmtest-lib.sh
set -u
BDFS=$(vmtest_nvme_bdfs)
set -- $BDFS
[ $# -ge 2 ] || { echo "guest: need two NVMe controllers, have: $BDFS"; exit 1; }
/host/keel setup --all --hugepages-mib 64 --dma-mib 64 || { echo "guest: keel setup failed"; exit 1; }
echo "NVME-SETUP hugepages reserved: $(cat /proc/sys/vm/nr_hugepages)"
T=/host/nvme_vfio
rc=0
KEEL_NVME_PCI=$1 $T --ignored --test-threads=1 --nocapture \
  --skip two_controllers --skip unbind_mid_io --skip a_fatal_controller || rc=1
KEEL_NVME_PCI=$2 $T --ignored --test-threads=1 --exact a_fatal_controller_fails_every_request_instead_of_hanging || rc=1
KEEL_NVME_PCI=$1,$2 $T --ignored --test-threads=1 --exact two_controllers_are_driven_at_once || rc=1
# The engine's volume on NVMe across a process restart (two processes).
for phase in nvme_restart_phase1_mkfs_and_close nvme_restart_phase2_reopen_from_the_medium; do
  KEEL_NVME_PCI=$2 KEEL_NVME_STATE=/tmp/nvme-volume-uuid /host/nvme_volume --ignored --nocapture --exact $phase || rc=1
done
# The keel binary on NVMe: mkfs, then serve twice (each start opens the
# volume from the medium, each Ctrl-C closes it cleanly), then inspect.
set -- $BDFS
printf '[device]\nbackend = "nvme"\npci_addresses = ["%s"]\ndata_dir = "/tmp/keel-data"\n[dma]\npool_size = "32MiB"\n' "$2" > /tmp/keel.toml
/host/keel setup --config /tmp/keel.toml > /tmp/setup.log 2>&1 && grep -q "bind $2 to vfio-pci: already bound" /tmp/setup.log \
  && echo "NVME-KEEL setup --config: $(tail -1 /tmp/setup.log)" || { echo "NVME-KEEL setup --config failed:"; cat /tmp/setup.log; rc=1; }
/host/keel mkfs --force --config /tmp/keel.toml > /tmp/mkfs.log 2>&1 \
  && echo "NVME-KEEL mkfs on $2: ok" || { echo "NVME-KEEL mkfs on $2 failed:"; cat /tmp/mkfs.log; rc=1; }
for boot in 1 2; do
  /host/keel serve --config /tmp/keel.toml > /tmp/serve$boot.log 2>&1 &
  pid=$!
  i=0; while ! grep -q '^Ready' /tmp/serve$boot.log && [ $i -lt 200 ] && kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i+1)); done
  kill -INT $pid 2>/dev/null; wait $pid; src=$?
  if grep -q '^Ready' /tmp/serve$boot.log && [ $src = 0 ] && grep -q "boot $boot," /tmp/serve$boot.log; then
    echo "NVME-KEEL serve start $boot on $2: $(grep -E '^  (device|volume) ' /tmp/serve$boot.log | tr -s ' ' | tr '\n' ';')"
  else
    echo "NVME-KEEL serve start $boot on $2 FAILED (exit $src):"; cat /tmp/serve$boot.log; rc=1
  fi
done
/host/keel inspect --config /tmp/keel.toml > /tmp/inspect.log 2>&1 \
  && echo "NVME-KEEL inspect: $(grep -ciE 'clean' /tmp/inspect.log) lines mention clean" || { cat /tmp/inspect.log; rc=1; }
KEEL_NVME_PCI=$1 $T --ignored --test-threads=1 --nocapture --exact unbind_mid_io_fails_requests_and_the_process_survives || rc=1
/host/keel setup --reset --hugepages-mib 0 --pci "$1" || rc=1
sleep 0.5
echo "NVME-SETUP after --reset $1 is on: $(basename "$(readlink /sys/bus/pci/devices/$1/driver)")"
[ "$(basename "$(readlink /sys/bus/pci/devices/$1/driver)")" = nvme ] || rc=1
exit $rc
