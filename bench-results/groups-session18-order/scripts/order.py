#!/usr/bin/env python3
"""The order of a group turn's writes and the member's wake-up, from
`perf script -F pid,tid,cpu,time,event,trace` of one run of trace.sh (1 member).
usage: order.py TRACE SERVER_PID CLIENT_PID
Per produce: the server's read of it, the server's writes of that turn (the producer's
ack, the member's event) in their order, and for the event: sched_waking of the member,
sched_wakeup (target CPU, what ran there), the member's switch-in and its read's return.
perf drops events under load: a produce whose chain is incomplete is left out."""
import re, sys, statistics, collections
server_pid, client_pid = sys.argv[2], sys.argv[3]
line_re = re.compile(r'^\s*(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$')
SENDS = {44, 1, 20}   # sendto, write, writev
READS = {45, 0}       # recvfrom, read
EPOLL = {232, 281}
evs = []
for line in open(sys.argv[1]):
    m = line_re.match(line)
    if m:
        pid, tid, cpu, t, ev, rest = m.groups()
        evs.append((float(t) * 1e6, pid, tid, int(cpu), ev, rest))
evs.sort(key=lambda e: e[0])
open_call, calls = {}, []   # calls: dict(tid,pid,nr,args,t0,t1,ret,cpu)
current = {}                # cpu -> (comm, pid) running
wakes = []                  # (t_waking, waker_tid, wakee) ; wakeup/switch filled later
state = {}                  # wakee tid -> dict in progress
wake_recs = collections.defaultdict(list)
for t, pid, tid, cpu, ev, rest in evs:
    if ev == 'raw_syscalls:sys_enter':
        m = re.match(r'NR (\d+) \(([^)]*)\)', rest)
        open_call[tid] = (int(m.group(1)), m.group(2).split(', '), t, pid, cpu)
    elif ev == 'raw_syscalls:sys_exit':
        m = re.match(r'NR (-?\d+) = (-?\d+)', rest)
        if tid in open_call:
            nr, args, t0, p, c = open_call.pop(tid)
            calls.append(dict(tid=tid, pid=p, nr=nr, args=args, t0=t0, t1=t, ret=int(m.group(2)), cpu=c))
    elif ev == 'sched:sched_waking':
        w = re.search(r'pid=(\d+)', rest).group(1)
        state[w] = dict(waking=t, waker=tid, waker_cpu=cpu)
    elif ev == 'sched:sched_wakeup':
        w = re.search(r'pid=(\d+)', rest).group(1)
        tc = int(re.search(r'target_cpu=(\d+)', rest).group(1))
        if w in state:
            s = state[w]
            s.update(wakeup=t, target=tc, running=current.get(tc, ('?', '?')))
    elif ev == 'sched:sched_switch':
        m = re.search(r'prev_comm=(.*) prev_pid=(\d+) .* ==> next_comm=(.*) next_pid=(\d+)', rest)
        current[cpu] = (m.group(3), m.group(4))
        n = m.group(4)
        if n in state and 'wakeup' in state[n]:
            s = state.pop(n)
            s.update(switch_in=t, cpu=cpu)
            wake_recs[n].append(s)
srv = [c for c in calls if c['pid'] == server_pid]
cli = [c for c in calls if c['pid'] == client_pid]
def size(c):
    return c['ret'] if c['nr'] == 20 else int(c['args'][2], 16)
by_tid = collections.defaultdict(list)
for c in cli:
    if c['nr'] in SENDS: by_tid[c['tid']].append(size(c))
producer = max(by_tid, key=lambda k: statistics.median(by_tid[k]))
members = [k for k in by_tid if k != producer]
server_threads = collections.Counter(c['tid'] for c in srv if c['nr'] in SENDS)
reactor = server_threads.most_common(1)[0][0]
produces = [c for c in cli if c['tid'] == producer and c['nr'] in SENDS and size(c) >= 120]
srv_r = [c for c in srv if c['tid'] == reactor and (c['nr'] in READS and c['ret'] > 0 or c['nr'] in EPOLL or c['nr'] in SENDS)]
mem_reads = [c for c in cli if c['tid'] in members and c['nr'] in READS and c['ret'] > 0]
prod_reads = [c for c in cli if c['tid'] == producer and c['nr'] in READS and c['ret'] > 0]
prod_t = [c['t1'] for c in prod_reads]
import bisect
srv_t = [c['t0'] for c in srv_r]
mem_t = [c['t1'] for c in mem_reads]
rows = []
for p in produces:
    i = bisect.bisect_left(srv_t, p['t1'])
    # the server's first read ending after the produce's send returned
    while i < len(srv_r) and not (srv_r[i]['nr'] in READS and srv_r[i]['t1'] >= p['t0']):
        i += 1
    if i >= len(srv_r): continue
    read = srv_r[i]
    writes = []
    j = i + 1
    while j < len(srv_r) and srv_r[j]['nr'] not in EPOLL:
        if srv_r[j]['nr'] in SENDS: writes.append(srv_r[j])
        j += 1
    ev = [w for w in writes if 150 <= size(w) < 400]
    ack = [w for w in writes if size(w) < 60]
    if len(ev) != 1 or len(ack) != 1: continue
    ev, ack = ev[0], ack[0]
    k = bisect.bisect_left(mem_t, ev['t0'])
    if k >= len(mem_reads): continue
    mr = mem_reads[k]
    # the member's wake-up caused by the event write (waker = reactor, inside the write)
    wk = [s for s in wake_recs[mr['tid']] if s['waker'] == reactor and ev['t0'] <= s['waking'] <= ev['t1']]
    wk = wk[0] if wk else None
    q = bisect.bisect_left(prod_t, ack['t0'])
    ack_to_producer = prod_reads[q]['t1'] - ack['t0'] if q < len(prod_reads) else None
    rows.append(dict(ack_to_producer=ack_to_producer, produce_to_ack=(prod_reads[q]['t1'] - p['t0']) if q < len(prod_reads) else None,ack_first=ack['t0'] < ev['t0'], produce_to_read=read['t1'] - p['t0'],
                     read_to_ev=ev['t0'] - read['t1'], ev_call=ev['t1'] - ev['t0'], ack_call=ack['t1'] - ack['t0'],
                     ev_to_member=mr['t1'] - ev['t0'], delivered=mr['t1'] - p['t0'], wk=wk,
                     srv_cpu=ev['cpu']))
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float('nan')
def line(name, xs):
    print(f"| {name} | {len(xs)} | {pct(xs,.5):.0f} | {pct(xs,.9):.0f} | {pct(xs,.99):.0f} | {max(xs) if xs else 0:.0f} |")
print(f"{len(rows)} of {len(produces)} produces traced; reactor {reactor} producer {producer} members {members}")
print(f"ack written before the event in {sum(r['ack_first'] for r in rows)} of {len(rows)} turns")
print("| stage (us) | n | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|")
line("produce send -> server read returns", [r['produce_to_read'] for r in rows])
line("server read -> event write begins", [r['read_to_ev'] for r in rows])
line("the ack's write (call)", [r['ack_call'] for r in rows])
line("the event's write (call)", [r['ev_call'] for r in rows])
line("event write begins -> member read returns", [r['ev_to_member'] for r in rows])
line("delivered (produce send -> member read returns)", [r['delivered'] for r in rows])
line("ack write begins -> producer read returns", [r['ack_to_producer'] for r in rows if r['ack_to_producer'] is not None])
line("producer's ack (produce send -> its read of the ack returns)", [r['produce_to_ack'] for r in rows if r['produce_to_ack'] is not None])
w = [r for r in rows if r['wk']]
line("member: waking -> wakeup", [r['wk']['wakeup'] - r['wk']['waking'] for r in w])
line("member: wakeup -> on CPU (run queue)", [r['wk']['switch_in'] - r['wk']['wakeup'] for r in w])
same = [r for r in w if r['wk']['target'] == r['srv_cpu']]
other = [r for r in w if r['wk']['target'] != r['srv_cpu']]
print(f"member woken on the reactor's CPU {len(same)}, on the other {len(other)} (of {len(w)} with a wake-up seen; the rest found the member running)")
line("  reactor's CPU: event write -> member read", [r['ev_to_member'] for r in same])
line("  other CPU: event write -> member read", [r['ev_to_member'] for r in other])
line("  reactor's CPU: run-queue wait", [r['wk']['switch_in'] - r['wk']['wakeup'] for r in same])
line("  other CPU: run-queue wait", [r['wk']['switch_in'] - r['wk']['wakeup'] for r in other])
print("running on the reactor's CPU at the member's wake-up:", collections.Counter(r['wk']['running'][0] for r in same).most_common(4))
print("running on the other CPU at the member's wake-up:", collections.Counter(r['wk']['running'][0] for r in other).most_common(4))
slow = sorted(rows, key=lambda r: r['delivered'])[-max(1, len(rows) // 100):]
print(f"slowest 1% ({len(slow)}): mean produce->read {statistics.mean(r['produce_to_read'] for r in slow):.0f}, read->event {statistics.mean(r['read_to_ev'] for r in slow):.0f}, event->member {statistics.mean(r['ev_to_member'] for r in slow):.0f}; member woken on reactor's CPU {sum(1 for r in slow if r['wk'] and r['wk']['target']==r['srv_cpu'])}, other {sum(1 for r in slow if r['wk'] and r['wk']['target']!=r['srv_cpu'])}")
slow_w = [r for r in slow if r['wk']]
if slow_w:
    print("  slowest 1%: run-queue wait mean", f"{statistics.mean(r['wk']['switch_in']-r['wk']['wakeup'] for r in slow_w):.0f}", "running at wake:", collections.Counter(r['wk']['running'][0] for r in slow_w).most_common(5))
