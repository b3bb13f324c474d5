#!/usr/bin/env bash
# The libnfs tier: starts `keel serve` (memory backend) with the NFS gateway
# on fixed ports and no portmapper, then drives it with libnfs's utilities
# (nfs-cp, nfs-cat, nfs-ls), which take `nfsport=`/`mountport=` in the URL.
#
# usage: scripts/nfs/libnfs-tests.sh      prints 'libnfs: N passed, N failed'
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v nfs-cp >/dev/null; then
  echo "libnfs-tests: installing libnfs-utils"
  apt-get install -y -q libnfs-utils >/dev/null
fi
cargo build -q --bin keel
work=$(mktemp -d /tmp/keel-libnfs.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# Two ports in a range unlikely to be taken; serve says so if they are.
nfs_port=$((30000 + RANDOM % 10000)); mount_port=$((nfs_port + 1))
cat > "$work/keel.toml" <<TOML
[device]
backend = "memory"
size = "1GiB"

[nfs]
enabled = true
listen = "127.0.0.1"
nfs_port = $nfs_port
mount_port = $mount_port

[[nfs.export]]
path = "/export"
clients = ["127.0.0.1"]
squash = "none"
TOML
target/debug/keel serve --config "$work/keel.toml" --data-dir "$work/data" > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q '^Ready' "$work/serve.log" && break; sleep 0.1; done
grep -q '^Ready' "$work/serve.log" || { cat "$work/serve.log"; echo "libnfs: 0 passed, 1 failed"; exit 1; }

url() { echo "nfs://127.0.0.1/export$1?nfsport=$nfs_port&mountport=$mount_port"; }
passed=0 failed=0
check() { # name, command...
  local name=$1; shift
  if "$@" > "$work/out" 2>&1; then echo "ok   $name"; passed=$((passed + 1))
  else echo "FAIL $name"; sed 's/^/     /' "$work/out"; failed=$((failed + 1)); fi
}

head -c 3000000 /dev/urandom > "$work/big"
printf 'small file\n' > "$work/small"
: > "$work/empty"
check "nfs-cp uploads a 3 MB file" nfs-cp "$work/big" "$(url /big)"
check "nfs-cp uploads a small file" nfs-cp "$work/small" "$(url /small)"
check "nfs-cp uploads an empty file" nfs-cp "$work/empty" "$(url /empty)"
check "nfs-cat returns the 3 MB file byte for byte" sh -c "nfs-cat '$(url /big)' | cmp - '$work/big'"
check "nfs-cp downloads the small file unchanged" sh -c "nfs-cp '$(url /small)' '$work/small.back' && cmp '$work/small' '$work/small.back'"
check "nfs-cp downloads the empty file as empty" sh -c "nfs-cp '$(url /empty)' '$work/empty.back' && [ ! -s '$work/empty.back' ]"
check "nfs-ls lists the three files" sh -c "nfs-ls '$(url '')' | tee /dev/stderr | grep -c -E ' (big|small|empty)\$' | grep -qx 3"
check "nfs-ls shows the 3 MB file's size" sh -c "nfs-ls '$(url '')' | grep -E ' big\$' | grep -q 3000000"
# libnfs creates with CREATE GUARDED: an existing name must be EXIST, and the
# file must be left as it was.
check "nfs-cp onto an existing file is refused (GUARDED) and changes nothing" sh -c "! nfs-cp '$work/small' '$(url /big)' && nfs-cat '$(url /big)' | cmp - '$work/big'"
check "a missing file is an error" sh -c "! nfs-cat '$(url /missing)'"
echo "libnfs: $passed passed, $failed failed"
[ "$failed" = 0 ]
