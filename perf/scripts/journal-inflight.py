#!/usr/bin/env python3
"""Writes and bytes in flight, and device writes by size, per process, from
`perf script` text of the iomap direct-I/O tracepoints: what the journal keeps
at the device against fio in the same `keel-perf journal` run.

Record and read (as root):
    perf record -a -e iomap:iomap_dio_rw_begin -e iomap:iomap_dio_complete \
        -o trace.data -- keel-perf journal --committers none --durability fua \
        --runs 1 --seconds 3
    perf script -i trace.data -F comm,pid,tid,time,event,trace | journal-inflight.py

A write is counted from its first iomap_dio_rw_begin (an io_uring write sent
with NOWAIT may begin again on an io-wq worker: same file and offset, counted
once) to its iomap_dio_complete, paired by inode and offset (the completion
reports the position after the write, or before it). Writes are grouped by
the process (tgid) that began them: io-wq workers count with theirs. The
first and last 10% of each process's span are cut off (start-up, the tail).
"""
import collections
import re
import sys

BEGIN = re.compile(
    r'^\s*(\S+)\s+(\d+)/\d+\s+([\d.]+):\s+iomap:iomap_dio_rw_begin:.*ino (0x[0-9a-f]+) .*'
    r'offset 0x([0-9a-f]+) length 0x([0-9a-f]+).*flags (\S+)'
)
COMPLETE = re.compile(
    r'^\s*(\S+)\s+(\d+)/\d+\s+([\d.]+):\s+iomap:iomap_dio_complete:.*ino (0x[0-9a-f]+) .*'
    r'offset 0x([0-9a-f]+) flags (\S+).*ret (-?\d+)'
)


def main():
    names = {}  # tgid -> label, from the first non-worker thread seen
    events = collections.defaultdict(list)  # tgid -> [(time, +1/-1, bytes)]
    in_flight = {}  # (inode, offset) -> (tgid, bytes)
    sizes = collections.defaultdict(collections.Counter)  # tgid -> KiB -> count
    for line in sys.stdin:
        m = BEGIN.match(line)
        if m:
            comm, tgid, t, ino, offset, length, flags = m.groups()
            if 'WRITE' not in flags:
                continue
            if not comm.startswith('iou-wrk'):
                names.setdefault(tgid, f'{comm} ({tgid})')
            key = (ino, int(offset, 16))
            if key in in_flight:
                continue
            length = int(length, 16)
            in_flight[key] = (tgid, length)
            events[tgid].append((float(t), 1, length))
            sizes[tgid][length >> 10] += 1
            continue
        m = COMPLETE.match(line)
        if m:
            _, _, t, ino, pos, flags, ret = m.groups()
            if 'WRITE' not in flags:
                continue
            pos, ret = int(pos, 16), int(ret)
            for key in ((ino, pos - ret), (ino, pos)):
                if key in in_flight:
                    tgid, length = in_flight.pop(key)
                    events[tgid].append((float(t), -1, length))
                    break
    for tgid, trace in events.items():
        if len(trace) >= 100:
            report(names.get(tgid, tgid), sorted(trace), sizes[tgid])


def report(name, trace, sizes):
    first, last = trace[0][0], trace[-1][0]
    lo, hi = first + 0.1 * (last - first), last - 0.1 * (last - first)
    writes = bytes_ = 0
    writes_seconds = bytes_seconds = idle_seconds = span_seconds = 0.0
    bytes_begun = 0
    previous = None
    for t, step, length in trace:
        if previous is not None:
            a, z = max(previous, lo), min(t, hi)
            if z > a:
                writes_seconds += writes * (z - a)
                bytes_seconds += bytes_ * (z - a)
                span_seconds += z - a
                if writes == 0:
                    idle_seconds += z - a
        if step > 0 and lo <= t <= hi:
            bytes_begun += length
        writes += step
        bytes_ += step * length
        previous = t
    top = ', '.join(f'{kib} KiB x{count}' for kib, count in sizes.most_common(8))
    print(
        f'{name}: writes in flight {writes_seconds / span_seconds:.2f}, '
        f'MiB in flight {bytes_seconds / span_seconds / 2**20:.2f}, '
        f'no write in flight {100 * idle_seconds / span_seconds:.1f}% of the time, '
        f'MB/s begun {bytes_begun / span_seconds / 1e6:.0f}; sizes: {top}'
    )


if __name__ == '__main__':
    main()
