# Sourced by the scripts in scripts/vm: vm_run LOG run.sh-args... boots the
# guest and runs a command file, retrying (up to 3 boots) only when the guest
# died before it was ready: under software emulation on a loaded machine the
# kernel's early timer check can fail ("timer doesn't work through
# Interrupt-remapped IO-APIC"), which says nothing about Keel. A guest that
# reached VMTEST-READY is never retried: its result stands.
vm_run() {
  local log=$1; shift
  local attempt rc
  for attempt in 1 2 3; do
    rc=0
    bash "$VM/run.sh" "$@" > "$log" 2>&1 || rc=$?
    if grep -q VMTEST-READY "$log"; then return $rc; fi
    echo "vm: guest died before it was ready (boot $attempt of 3): $(grep -m1 -E 'Kernel panic|panic' "$log" || echo 'no panic line')" >&2
  done
  return $rc
}
