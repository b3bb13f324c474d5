#!/bin/sh
# Guest side of scripts/vm/nfs-tests.sh (busybox sh). Prints one line per
# check ("ok" or "FAIL" with the output's tail) and a summary.
. vmtest-lib.sh
cd /host
export PATH=/host/bundle/bin:$PATH LD_LIBRARY_PATH=/host/bundle/lib
export GIT_EXEC_PATH=/host/bundle/bin GIT_TEMPLATE_DIR=/tmp/no-templates GIT_PAGER=cat HOME=/tmp
mkdir -p /tmp/no-templates
pass=0 fail=0
check() { # NAME COMMAND...: passes when COMMAND succeeds
  name=$1; shift
  if timeout "${CHECK_TIMEOUT_S:-300}" "$@" > /tmp/out 2>&1; then echo "ok   $name"; pass=$((pass + 1))
  else echo "FAIL $name"; tail -15 /tmp/out | sed 's/^/     /'; fail=$((fail + 1)); fi
}
t0=$(vmtest_uptime)

cat > /tmp/keel.toml <<TOML
[device]
backend = "uring"
path = "/dev/nvme0n1"

[dma]
pool_size = "32MiB"

[engine]
# The guest has 512 MiB of RAM.
cache_size = "64MiB"

[kv]
enabled = false

[nfs]
enabled = true
listen = "127.0.0.1"
nfs_port = 2049
mount_port = 20048
portmapper = true

[[nfs.export]]
path = "/export"
clients = ["127.0.0.1"]
squash = "none"
TOML
start_keel() { # LOG
  /host/keel serve --config /tmp/keel.toml --data-dir /tmp/keel-data > "$1" 2>&1 &
  KEEL=$!
  vmtest_wait_port 2049 60 && vmtest_wait_port 111 10
}
start_keel /tmp/keel.log || { cat /tmp/keel.log; echo "nfs-vm: 0 passed, 1 failed"; exit 1; }
OPTS=vers=3,proto=tcp,nolock,port=2049,mountport=20048,mountproto=tcp
mkdir -p /mnt/a /mnt/b
check "mount with explicit ports (no rpcbind)" /usr/bin/mount -t nfs -o $OPTS 127.0.0.1:/export /mnt/a
check "a second mount through Keel's own portmapper" /usr/bin/mount -t nfs -o vers=3,proto=tcp,nolock,nosharecache,actimeo=1 127.0.0.1:/export /mnt/b
cd /mnt/a

# The everyday operations.
check "create, write and read back" sh -c 'echo hello > f && [ "$(cat f)" = hello ]'
check "a 3 MiB file written and read back" sh -c 'dd if=/dev/urandom of=/tmp/r bs=64k count=48 2>/dev/null && cp /tmp/r big && cmp /tmp/r big'
check "rename" sh -c 'mv f g && [ ! -e f ] && [ "$(cat g)" = hello ]'
check "hard link counts two names" sh -c 'ln g h && [ "$(stat -c %h g)" = 2 ] && [ "$(cat h)" = hello ]'
check "symlink and readlink" sh -c 'ln -s g s && [ "$(readlink s)" = g ] && [ "$(cat s)" = hello ]'
check "chmod" sh -c 'chmod 640 g && [ "$(stat -c %a g)" = 640 ]'
check "truncate down and up (the hole reads as zeros)" sh -c 'truncate -s 2 g && [ "$(cat g)" = he ] && truncate -s 100000 g && [ "$(stat -c %s g)" = 100000 ] && dd if=g bs=1 skip=2 count=99998 2>/dev/null | cmp - /dev/zero 2>&1 | grep -q EOF'
check "mkdir, rmdir and a non-empty rmdir refused" sh -c 'mkdir d && touch d/x && ! rmdir d 2>/dev/null && rm d/x && rmdir d && [ ! -e d ]'
check "remove" sh -c 'rm g h s big && [ ! -e g ] && [ ! -e big ]'
t1=$(vmtest_uptime)
# The 10,000 entries cost the most here: under emulation each NFS call costs
# Keel tens of milliseconds of guest CPU (measured 2026-12-03: Keel's CPU
# time is about its wall time; an `async` export is no faster, so it is not
# the journal flushes). Ten processes create them, but the Linux client
# serializes creates in one directory (the parent's inode lock), and each
# costs a LOOKUP and a CREATE. Removal is `rm -rf`: READDIRPLUS gives the
# attributes, so each entry costs one REMOVE (busybox `rm NAME...` adds a
# GETATTR and an ACCESS per name: three calls).
cat > /tmp/many.sh <<'SCRIPT'
  # many.sh: each of ten processes makes 1,000 names.
  cd /mnt/a/many || exit 1
  pids=""
  for p in 0 1 2 3 4 5 6 7 8 9; do
    ( seq $((p * 1000 + 1)) $((p * 1000 + 1000)) | while read i; do : > $i || exit 1; done ) &
    pids="$pids $!"
  done
  bad=0
  for j in $pids; do wait $j || bad=1; done
  [ $bad = 0 ]
SCRIPT
CHECK_TIMEOUT_S=600
check "10,000 entries made (ten processes) and listed exactly" sh -c 'mkdir /mnt/a/many && sh /tmp/many.sh && cd /mnt/a/many && [ "$(ls | wc -l)" = 10000 ] && [ "$(ls | sort -n | md5sum)" = "$(seq 1 10000 | md5sum)" ]'
check "10,000 entries seen through the other mount" sh -c '[ "$(ls /mnt/b/many | wc -l)" = 10000 ]'
check "10,000 entries removed" sh -c 'rm -rf /mnt/a/many && [ ! -e /mnt/a/many ]'
CHECK_TIMEOUT_S=300
t2=$(vmtest_uptime)

# Two mounts, four processes on each: every process writes its files through
# its mount, then reads every other process's files through the other one.
mkdir -p /mnt/a/shared
# (Waits name their processes: a bare `wait` would also wait for keel.)
cat > /tmp/crossed.sh <<'SCRIPT'
  pids=""
  for m in a b; do for p in 1 2 3 4; do
    ( i=1; while [ $i -le 20 ]; do echo "$m$p-$i" > /mnt/$m/shared/$m$p-$i; i=$((i + 1)); done ) &
    pids="$pids $!"
  done; done
  bad=0
  for j in $pids; do wait $j || bad=1; done
  pids=""
  for m in a b; do
    other=b; [ $m = b ] && other=a
    for p in 1 2 3 4; do
      ( i=1; while [ $i -le 20 ]; do
          [ "$(cat /mnt/$m/shared/$other$p-$i)" = "$other$p-$i" ] || { echo "mount $m: $other$p-$i wrong"; exit 1; }
          i=$((i + 1)); done ) &
      pids="$pids $!"
    done
  done
  for j in $pids; do wait $j || bad=1; done
  # An overwrite through one mount is seen at the next open through the other.
  echo one > /mnt/a/shared/counter
  [ "$(cat /mnt/b/shared/counter)" = one ] || bad=1
  echo two > /mnt/b/shared/counter
  [ "$(cat /mnt/a/shared/counter)" = two ] || bad=1
  [ $bad = 0 ]
SCRIPT
check "two mounts, four processes each, read each other's writes" sh /tmp/crossed.sh

check "git init and three commits in the mount" sh -c '
  mkdir /mnt/a/repo && cd /mnt/a/repo && git init -q . &&
  git config user.email t@example.com && git config user.name tester &&
  for i in 1 2 3; do echo "line $i" >> file && echo $i > f$i && git add -A && git commit -qm "commit $i" || exit 1; done &&
  [ "$(git log --oneline | wc -l)" = 3 ] && git fsck --full --strict && [ -z "$(git status --porcelain)" ]'
check "git clone of that repository inside the mount" sh -c 'cd /mnt/b && git clone -q /mnt/b/repo clone && [ "$(cat clone/f3)" = 3 ]'
t3=$(vmtest_uptime)

mkdir -p /mnt/a/fio
for job in nfs-seq-write nfs-seq-read nfs-rand-write nfs-rand-read nfs-verify; do
  check "fio $job.fio" sh -c "FIO_DIR=/mnt/a/fio FIO_SIZE=2m fio --output-format=terse /host/fio/$job.fio > /tmp/fio-$job.txt"
done
t4=$(vmtest_uptime)

# kill -9 after fsync'd writes, restart, remount.
dd if=/dev/urandom of=/tmp/payload bs=64k count=16 2>/dev/null
check "fsync'd write before the kill" dd if=/tmp/payload of=/mnt/a/durable bs=64k conv=fsync
kill -9 $KEEL
/usr/bin/umount -f -l /mnt/a; /usr/bin/umount -f -l /mnt/b
start_keel /tmp/keel2.log || { cat /tmp/keel2.log; }
check "mount again after the restart" /usr/bin/mount -t nfs -o $OPTS 127.0.0.1:/export /mnt/a
check "the restart recovered the file system (not a new one)" sh -c '! grep -q -e "creating a new file system" -e "creating a Keel volume" /tmp/keel2.log'
check "fsync'd data present after kill -9 and a remount" cmp /tmp/payload /mnt/a/durable
t5=$(vmtest_uptime)
/usr/bin/umount /mnt/a
kill -INT $KEEL; wait $KEEL
echo "TIMING basics=$(awk "BEGIN{print $t1-$t0}")s 10k=$(awk "BEGIN{print $t2-$t1}")s mounts+git=$(awk "BEGIN{print $t3-$t2}")s fio=$(awk "BEGIN{print $t4-$t3}")s kill=$(awk "BEGIN{print $t5-$t4}")s"
echo "nfs-vm: $pass passed, $fail failed"
