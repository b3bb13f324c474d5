# Guest command file (busybox sh, cwd /host): hands every NVMe controller to
# vfio-pci, runs the nvme_vfio and nvme_volume tests, then `keel serve` on
# NVMe through redis-cli. See scripts/vm/nvme-tests.sh.
. vmtest-lib.sh
set -u
BDFS=$(vmtest_nvme_bdfs)
set -- $BDFS
[ $# -ge 3 ] || { echo "guest: need three NVMe controllers (the third slow), have: $BDFS"; exit 1; }
/host/keel setup --all --hugepages-mib 64 --dma-mib 64 || { echo "guest: keel setup failed"; exit 1; }
echo "NVME-SETUP hugepages reserved: $(cat /proc/sys/vm/nr_hugepages)"
T=/host/nvme_vfio
rc=0
KEEL_NVME_PCI=$1 $T --ignored --test-threads=1 --nocapture \
  --skip two_controllers --skip unbind_mid_io --skip a_fatal_controller --skip a_controller_slower --skip a_controller_past --skip a_sleeping_queue_pair || rc=1
KEEL_NVME_PCI=$3 $T --ignored --test-threads=1 --nocapture a_controller_past a_controller_slower a_sleeping_queue_pair || rc=1
KEEL_NVME_PCI=$2 $T --ignored --test-threads=1 --exact a_fatal_controller_fails_every_request_instead_of_hanging || rc=1
KEEL_NVME_PCI=$1,$2 $T --ignored --test-threads=1 --exact two_controllers_are_driven_at_once || rc=1
# The engine's volume on NVMe across a process restart (two processes).
for phase in nvme_restart_phase1_mkfs_and_close nvme_restart_phase2_reopen_from_the_medium; do
  KEEL_NVME_PCI=$2 KEEL_NVME_STATE=/tmp/nvme-volume-uuid /host/nvme_volume --ignored --nocapture --exact $phase || rc=1
done
# The keel binary on NVMe: mkfs, then `keel serve` with the KV gateway,
# driven by the host's redis-cli (bundled with its libraries): put and get,
# a clean restart (values read back from the medium), a kill -9 and a
# restart that recovers from the journal, then inspect. One "ok"/"FAIL"
# line per step.
export PATH=/host/bundle/bin:$PATH LD_LIBRARY_PATH=/host/bundle/lib
set -- $BDFS
DEV=$2
kpass=0 kfail=0
ok() { echo "ok   NVME-KEEL $*"; kpass=$((kpass + 1)); }
bad() { echo "FAIL NVME-KEEL $*"; kfail=$((kfail + 1)); rc=1; }
check() { # NAME COMMAND...: passes when COMMAND succeeds
  name=$1; shift
  if "$@" > /tmp/out 2>&1; then ok "$name"; else bad "$name"; tail -15 /tmp/out | sed 's/^/     /'; fi
}
R="redis-cli -h 127.0.0.1 -p 6379"
printf '[device]\nbackend = "nvme"\npci_addresses = ["%s"]\ndata_dir = "/tmp/keel-data"\nnvme_command_timeout = "10s"\n[dma]\npool_size = "32MiB"\n[kv]\nlisten = "127.0.0.1:6379"\ndurability = "always"\n' "$DEV" > /tmp/keel.toml
setup_config() { /host/keel setup --config /tmp/keel.toml && /host/keel setup --config /tmp/keel.toml | grep -q "bind $DEV to vfio-pci: already bound"; }
check "setup --config binds $DEV" setup_config
check "mkfs on $DEV" /host/keel mkfs --force --config /tmp/keel.toml
CONF=/tmp/keel.toml
serve() { # BOOT: starts keel serve on $CONF, waits for Ready and checks the boot counter
  # Empty the log first: the background shell truncates it only when it gets to run, and
  # the wait below must not find the Ready of an earlier server that used the same name
  # (the striped set's serve 2 once read the single controller's log and went on early).
  : > /tmp/serve$1.log
  /host/keel serve --config $CONF > /tmp/serve$1.log 2>&1 &
  pid=$!
  i=0; while ! grep -q '^Ready' /tmp/serve$1.log && [ $i -lt 600 ] && kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i+1)); done
  if grep -q '^Ready' /tmp/serve$1.log && grep -q "boot $1," /tmp/serve$1.log; then
    ok "serve start $1 on $DEV: $(grep -E '^  (device|volume) ' /tmp/serve$1.log | tr -s ' ' | tr '\n' ';')"
  else
    # The exit status says how a server that printed nothing ended (137: SIGKILL, e.g. the
    # OOM killer; 132: SIGILL); the kernel's last lines say why.
    kill -9 $pid 2>/dev/null; wait $pid; src=$?
    bad "serve start $1 on $DEV after $((i / 10)) s (exit status $src):"; tail -30 /tmp/serve$1.log | sed 's/^/     /'
    dmesg | tail -8 | sed 's/^/     dmesg: /'; return 1
  fi
}
stop() { # BOOT: Ctrl-C, a clean exit
  kill -INT $pid 2>/dev/null; wait $pid; src=$?
  [ $src = 0 ] && ok "serve $1 stops cleanly on SIGINT" || { bad "serve $1 exit $src on SIGINT"; tail -20 /tmp/serve$1.log; }
}
keys() { # FROM TO PREFIX: SET commands for redis-cli's stdin
  i=$1; while [ $i -le $2 ]; do echo "SET $3$i value-$3$i"; i=$((i + 1)); done
}
values_are() { # FROM TO PREFIX: every key holds its value
  i=$1; while [ $i -le $2 ]; do echo "GET $3$i"; i=$((i + 1)); done | $R > /tmp/got
  keys "$1" "$2" "$3" | sed 's/^SET [^ ]* //' | cmp - /tmp/got
}
all_ok() { # COUNT: redis-cli printed COUNT lines of OK, nothing else
  [ "$(grep -c '^OK$' /tmp/set.out)" = "$1" ] && [ "$(grep -vc '^OK$' /tmp/set.out)" = 0 ]
}
big_is_back() { $R get big > /tmp/big.out && printf '\n' | cat /tmp/big - | cmp - /tmp/big.out; }
dbsize_is() { [ "$($R dbsize)" = "$1" ]; }
if serve 1; then
  keys 1 200 k | $R > /tmp/set.out; check "SET 200 keys through RESP" all_ok 200
  head -c 150000 /dev/urandom | od -An -tx1 | tr -d ' \n' > /tmp/big
  check "SET a 300 KB value (out of line)" sh -c "$R -x set big < /tmp/big | grep -q '^OK$'"
  check "GET 200 keys back" values_are 1 200 k
  check "GET the 300 KB value back" big_is_back
  check "DBSIZE 201" dbsize_is 201
  stop 1
fi
if serve 2; then
  check "after a clean restart: 200 keys read from the medium" values_are 1 200 k
  check "after a clean restart: the 300 KB value" big_is_back
  keys 1 100 j | $R > /tmp/set.out; check "SET 100 more keys (durability always)" all_ok 100
  check "DEL k1" sh -c "[ \"\$($R del k1)\" = 1 ]"
  kill -9 $pid; wait $pid 2>/dev/null
  check "serve 2 killed with SIGKILL after its writes were acknowledged" sh -c "! kill -0 $pid"
fi
if serve 3; then
  check "after kill -9: the acknowledged keys recovered" values_are 1 100 j
  check "after kill -9: the older keys" values_are 2 200 k
  check "after kill -9: the deleted key stays deleted" sh -c "[ -z \"\$($R get k1)\" ]"
  check "after kill -9: DBSIZE 300" dbsize_is 300
  stop 3
fi
inspect_clean() { /host/keel inspect --config $CONF > /tmp/inspect.log 2>&1 && grep -qi clean /tmp/inspect.log; }
check "inspect: the volume is clean" inspect_clean
# The same on a striped set of two controllers (device.pci_addresses = [a, b]):
# mkfs --force labels both (they held other data), put/get, clean restart,
# kill -9 and recovery; then the members swapped, one alone, and one with a
# blank controller in place of the other are refused, each saying why.
set -- $BDFS
CONF=/tmp/set.toml DEV="$1+$2"
set_config() { # FIRST SECOND...: the configuration for these controllers
  list=$(for a in "$@"; do printf '"%s", ' "$a"; done | sed 's/, $//')
  printf '[device]\nbackend = "nvme"\npci_addresses = [%s]\ndata_dir = "/tmp/keel-data"\nnvme_command_timeout = "10s"\n[dma]\npool_size = "32MiB"\n[kv]\nlisten = "127.0.0.1:6379"\ndurability = "always"\n' "$list"
}
set_config "$1" "$2" > $CONF
mkfs_set() { /host/keel mkfs --force --config $CONF > /tmp/mkfs.log 2>&1 && grep -q "striped set" /tmp/mkfs.log; }
echo "guest: set tests start at $(vmtest_uptime)"
check "mkfs --force on the set $DEV labels both" mkfs_set
if serve 1; then
  check "set: the banner names the striped set" grep -q "striped set" /tmp/serve1.log
  keys 1 200 k | $R > /tmp/set.out; check "set: SET 200 keys through RESP" all_ok 200
  check "set: SET a 300 KB value (out of line, across stripes)" sh -c "$R -x set big < /tmp/big | grep -q '^OK$'"
  check "set: GET 200 keys back" values_are 1 200 k
  check "set: GET the 300 KB value back" big_is_back
  stop 1
fi
if serve 2; then
  check "set: after a clean restart: 200 keys read from both controllers" values_are 1 200 k
  check "set: after a clean restart: the 300 KB value" big_is_back
  keys 1 100 j | $R > /tmp/set.out; check "set: SET 100 more keys (durability always)" all_ok 100
  kill -9 $pid; wait $pid 2>/dev/null
fi
if serve 3; then
  check "set: after kill -9: the acknowledged keys recovered" values_are 1 100 j
  check "set: after kill -9: DBSIZE 301" dbsize_is 301
  stop 3
fi
check "set: inspect: the volume is clean" inspect_clean
refused() { # WHY FIRST SECOND...: serve on these controllers fails saying WHY
  why=$1; shift
  set_config "$@" > /tmp/bad.toml
  ! /host/keel serve --config /tmp/bad.toml > /tmp/bad.log 2>&1 && grep -q "$why" /tmp/bad.log || { cat /tmp/bad.log; return 1; }
}
check "set: members swapped ($2, $1) refused" refused "different order" "$2" "$1"
check "set: one member alone ($1) refused" refused "member 0 of the striped set" "$1"
check "set: a blank controller ($3) in place of member 1 refused" refused "is blank" "$1" "$3"
echo "guest: set tests end at $(vmtest_uptime)"
echo "NVME-KEEL $kpass passed, $kfail failed"
KEEL_NVME_PCI=$1 $T --ignored --test-threads=1 --nocapture --exact unbind_mid_io_fails_requests_and_the_process_survives || rc=1
/host/keel setup --reset --hugepages-mib 0 --pci "$1" || rc=1
sleep 0.5
echo "NVME-SETUP after --reset $1 is on: $(basename "$(readlink /sys/bus/pci/devices/$1/driver)")"
[ "$(basename "$(readlink /sys/bus/pci/devices/$1/driver)")" = nvme ] || rc=1
exit $rc
