#!/usr/bin/env python3
"""Where a 4 KiB request's time goes, from `perf script` text of the
io_uring and block tracepoints (perf/scripts/device-trace.sh records them).

Each request is followed through its stages: io_uring_submit_req (the kernel
takes the SQE) -> block_bio_queue -> block_rq_issue (handed to the virtio
driver) -> block_rq_complete -> io_uring_complete (CQE posted) -> the next
io_uring_submit_req with the same user_data (the benchmark reuses the slot).
The submit and bio events are paired by thread (the kernel queues the bio
inside the submitting call); block events are paired by sector. Only the
io_uring events of the processes PIDS count (other engineers' keel-perf and
fio runs share the machine and reuse the same user_data values); requests
are keyed by ring and user_data.

Usage: device-trace.py TRACE.txt PIDS
  (TRACE.txt from `perf script -F comm,pid,tid,cpu,time,event,trace`;
  PIDS comma-separated)
"""
import re
import statistics
import sys

LINE = re.compile(r'^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$')
USER_DATA = re.compile(r'ring (0x[0-9a-f]+), req 0x[0-9a-f]+, user_data (0x[0-9a-f]+)')
SECTOR = re.compile(r' (\d+) \+ 8 ')
TO_SUBMIT = re.compile(r'to_submit: (0x[0-9a-f]+)')
BLOCK_STAGE = {'rq_issue': 'issue', 'rq_complete': 'device_done'}


def parse(path, ours):
    requests, open_by_user_data, pending_bio, by_sector = [], {}, {}, {}
    enters = []
    first = last = None
    for line in open(path):
        m = LINE.match(line)
        if not m:
            continue
        _comm, pid, tid, _cpu, t, event, rest = m.groups()
        t = float(t) * 1e6
        first = t if first is None else first
        last = t
        mine = pid in ours
        if event == 'syscalls:sys_enter_io_uring_enter' and mine:
            enters.append(int(TO_SUBMIT.search(rest).group(1), 16))
        elif event == 'io_uring:io_uring_submit_req' and mine:
            user_data = USER_DATA.search(rest).groups()
            previous = open_by_user_data.get(user_data)
            if previous is not None and 'cqe' in previous:
                previous['next'] = t
            r = {'submit': t}
            open_by_user_data[user_data] = r
            pending_bio[tid] = r
            requests.append(r)
        elif event == 'io_uring:io_uring_complete' and mine:
            r = open_by_user_data.get(USER_DATA.search(rest).groups())
            if r is not None and 'cqe' not in r:
                r['cqe'] = t
        elif event.startswith('block:'):
            s = SECTOR.search(rest + ' ')
            if not s:
                continue
            stage = event.split(':block_')[-1]
            if stage == 'bio_queue':
                r = pending_bio.pop(tid, None) if mine else None
                if r is not None:
                    r['bio'] = t
                    by_sector[s.group(1)] = r
            elif stage in BLOCK_STAGE:
                r = by_sector.get(s.group(1))
                if r is not None and BLOCK_STAGE[stage] not in r:
                    r[BLOCK_STAGE[stage]] = t
    return requests, enters, (last - first) if first is not None else 0.0


def line(name, values):
    values = sorted(values)
    if not values:
        return f"  {name:34s} (no samples)"
    pick = lambda q: values[min(len(values) - 1, int(len(values) * q))]
    return (f"  {name:34s} mean {statistics.mean(values):7.1f}  p50 {pick(0.5):7.1f}"
            f"  p90 {pick(0.9):7.1f} us  (n={len(values)})")


def at_device(requests):
    """Time-weighted requests between rq_issue and rq_complete, and the share
    of time with none there."""
    return depth_over_time(requests, 'issue', 'device_done')


def depth_over_time(requests, start, end, window=None):
    """Time-weighted number of requests between their `start` and `end`
    events, and the share of time with none there; within `window` (from,
    until) when given, so that requests cut off by the trace's edges do not
    lower the figure."""
    requests = [r for r in requests if start in r and end in r]
    lo, hi = window if window else (min((r[start] for r in requests), default=0.0),
                                   max((r[end] for r in requests), default=0.0))
    events = []
    for r in requests:
        a, b = max(r[start], lo), min(r[end], hi)
        if a < b:
            events += [(a, 1), (b, -1)]
    events.sort()
    if len(events) < 2 or hi <= lo:
        return 0.0, 0.0
    depth = weighted = idle = 0.0
    previous = lo
    for t, step in events:
        weighted += depth * (t - previous)
        idle += (t - previous) if depth == 0 else 0.0
        depth += step
        previous = t
    idle += hi - previous
    span = hi - lo
    return weighted / span, idle / span


def main():
    ours = set(sys.argv[2].split(','))
    requests, enters, span_us = parse(sys.argv[1], ours)
    cycles = [r for r in requests if all(k in r for k in ('submit', 'bio', 'issue', 'cqe', 'next'))]
    traced = [r for r in cycles if 'device_done' in r]
    submitting = [n for n in enters if n > 0]
    cqes = sum(1 for r in requests if 'cqe' in r)
    print(f"  {cqes / span_us * 1e6:,.0f} completions/s traced over {span_us / 1e3:.0f} ms;"
          f" {len(enters) / max(1, cqes):.2f} io_uring_enter per I/O,"
          f" {statistics.mean(submitting) if submitting else 0:.1f} requests per submitting enter")
    print(line('kernel takes SQE -> bio queued', [r['bio'] - r['submit'] for r in cycles]))
    print(line('bio queued -> issued to virtio', [r['issue'] - r['bio'] for r in cycles]))
    print(line('issued -> completed by device', [r['device_done'] - r['issue'] for r in traced]))
    print(line('completed -> CQE posted', [r['cqe'] - r['device_done'] for r in traced]))
    print(line('CQE posted -> slot resubmitted', [r['next'] - r['cqe'] for r in cycles]))
    print(line('whole cycle', [r['next'] - r['submit'] for r in cycles]))
    # The queue depth each side really keeps: a request is with the kernel
    # from the SQE taken until its CQE is posted, then with the application
    # until it submits the slot's next request; the two add up to the depth
    # asked for.
    # Only the middle of the trace counts: near its edges a request's
    # other events fall outside it.
    times = [r['submit'] for r in requests]
    middle = (min(times) + 0.1 * (max(times) - min(times)), max(times) - 0.1 * (max(times) - min(times)))
    kernel, _ = depth_over_time(requests, 'submit', 'cqe', middle)
    posted, _ = depth_over_time(requests, 'device_done', 'cqe', middle)
    application, _ = depth_over_time(requests, 'cqe', 'next', middle)
    print(f"  in flight on average: {kernel:.1f} with the kernel (of which {posted:.1f} done by the device,"
          f" CQE not yet posted), {application:.1f} completed and not yet resubmitted")
    depth, idle = at_device(traced)
    print(f"  at the device: {depth:.1f} requests on average, none for {100 * idle:.0f}% of the time"
          f" ({len(traced)} of {len(cycles)} requests have a traced rq_complete)")


if __name__ == '__main__':
    main()
