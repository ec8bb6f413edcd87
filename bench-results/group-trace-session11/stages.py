#!/usr/bin/env python3
"""Per-event stages from `perf script -F pid,tid,cpu,time,event,trace` of one group run
(1 producer, members): the producer's produce sendto -> server's first read -> server's
event write to a member -> member's read returns -> member's ack write returns.
usage: stages.py TRACE SERVER_PID CLIENT_PID [PRODUCER_TID [MEMBER_TID,...]]
The tails are not to be trusted: perf drops events under load and the matching then pairs an
event with the next one (2 ms later); read p50 and p90 only."""
import re, sys, statistics
server_pid, client_pid = sys.argv[2], sys.argv[3]
line_re = re.compile(r'^\s*(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$')
evs = []
for line in open(sys.argv[1]):
    m = line_re.match(line)
    if not m: continue
    pid, tid, cpu, t, ev, rest = m.groups()
    evs.append((float(t)*1e6, pid, tid, int(cpu), ev, rest))
evs.sort(key=lambda e: e[0])
# syscall pairing per tid
open_call = {}
calls = []  # (tid, pid, nr, args, t_enter, t_exit, ret)
waits = {}  # runqueue waits: tid -> list of (t_wakeup, t_run)
last_wakeup = {}
for t, pid, tid, cpu, ev, rest in evs:
    if ev == 'raw_syscalls:sys_enter':
        m = re.match(r'NR (\d+) \(([^)]*)\)', rest)
        open_call[tid] = (int(m.group(1)), m.group(2).split(', '), t, pid)
    elif ev == 'raw_syscalls:sys_exit':
        m = re.match(r'NR (-?\d+) = (-?\d+)', rest)
        if tid in open_call:
            nr, args, t0, p = open_call.pop(tid)
            calls.append((tid, p, nr, args, t0, t, int(m.group(2))))
    elif ev == 'sched:sched_wakeup':
        m = re.search(r'pid=(\d+)', rest)
        last_wakeup[m.group(1)] = t
    elif ev == 'sched:sched_switch':
        m = re.search(r'next_pid=(\d+)', rest)
        n = m.group(1)
        if n in last_wakeup:
            waits.setdefault(n, []).append((last_wakeup.pop(n), t))
SENDTO, RECVFROM, WRITE, READ, WRITEV = 44, 45, 1, 0, 20
srv = [c for c in calls if c[1] == server_pid]
cli = [c for c in calls if c[1] == client_pid]
# producer: the client thread whose sends are produces (most sends >= 150 B and it is not a member)
def size(c): return c[6] if c[2] == WRITEV else int(c[3][2], 16)
sends = [c for c in cli if c[2] in (SENDTO, WRITE, WRITEV)]
by_tid = {}
for c in sends: by_tid.setdefault(c[0], []).append(size(c))
# the producer sends payload-size frames; members send small acks
producer = sys.argv[4] if len(sys.argv) > 4 else max(by_tid, key=lambda k: statistics.median(by_tid[k]))
members = sys.argv[5].split(',') if len(sys.argv) > 5 else [k for k in by_tid if k != producer]
produces = [c for c in sends if c[0] == producer and size(c) >= 120]
srv_recv = [c for c in srv if c[2] in (RECVFROM, READ) and c[6] > 0]
srv_send = [c for c in srv if c[2] in (SENDTO, WRITE, WRITEV) and c[6] > 0]
mem_recv = [c for c in cli if c[0] in members and c[2] in (RECVFROM, READ) and c[6] > 0]
mem_send = [c for c in cli if c[0] in members and c[2] in (SENDTO, WRITE, WRITEV)]
print(f"producer {producer} members {members}: {len(produces)} produces, sizes {sorted(set(size(c) for c in produces))[:5]}")
def first_after(lst, t, pred=lambda c: True, key=4):
    for c in lst:
        if c[key] >= t and pred(c): return c
    return None
import bisect
def idx_after(lst, t, key):
    keys = [c[key] for c in lst]
    return keys
rows = []
for p in produces:
    t0 = p[4]
    r = first_after(srv_recv, t0, key=5)
    if not r: continue
    # the server's write of >= 150 B (an event) after its read
    e = first_after(srv_send, r[5], lambda c: size(c) >= 150 and size(c) < 400)
    if not e: continue
    mr = first_after(mem_recv, e[4], key=5)
    if not mr: continue
    ma = first_after(mem_send, mr[5], key=5)
    if not ma: continue
    rows.append((p[5]-t0, r[5]-p[5], e[4]-r[5], mr[5]-e[4], ma[5]-mr[5], ma[5]-t0))
names = ["produce send", "send->srv read", "srv read->event send", "event send->member read ret", "member read->ack sent", "total send->ack"]
def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs)-1, int(q*len(xs)))]
print(f"{len(rows)} events traced")
print("stage | p50 | p90 | p99 | max (us)")
for i, n in enumerate(names):
    xs = [r[i] for r in rows]
    print(f"{n} | {pct(xs,.5):.0f} | {pct(xs,.9):.0f} | {pct(xs,.99):.0f} | {max(xs):.0f}")
# the slowest 2%: the stage mean
worst = sorted(rows, key=lambda r: r[-1])[-max(1, len(rows)//50):]
print("slowest 2% mean per stage:", " ".join(f"{statistics.mean(r[i] for r in worst):.0f}" for i in range(6)))
