# Guest command file (busybox sh, cwd /host): hands every NVMe controller to
# vfio-pci and runs the nvme_vfio tests. See scripts/vm/nvme-tests.sh.
. vmtest-lib.sh
set -u
echo 32 > /proc/sys/vm/nr_hugepages
echo "guest: hugepages reserved: $(cat /proc/sys/vm/nr_hugepages)"
BDFS=$(vmtest_nvme_bdfs)
set -- $BDFS
[ $# -ge 2 ] || { echo "guest: need two NVMe controllers, have: $BDFS"; exit 1; }
for b in $BDFS; do vmtest_bind_vfio "$b" >/dev/null || exit 1; done
echo "guest: controllers on vfio-pci: $BDFS"
T=/host/nvme_vfio
rc=0
KEEL_NVME_PCI=$1 $T --ignored --test-threads=1 \
  --skip two_controllers --skip unbind_mid_io || rc=1
KEEL_NVME_PCI=$1,$2 $T --ignored --test-threads=1 --exact two_controllers_are_driven_at_once || rc=1
KEEL_NVME_PCI=$1 $T --ignored --test-threads=1 --nocapture --exact unbind_mid_io_fails_requests_and_the_process_survives || rc=1
exit $rc
