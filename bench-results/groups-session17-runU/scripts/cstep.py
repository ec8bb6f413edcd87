import re,sys,json,collections
# for each member send (small write/sendto <= 40 B ... or XACK), its duration and whether it woke the server remote/local/none
name,js,spid=sys.argv[1:4]
r=re.compile(r'^\s*(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$')
open_={}; res=collections.defaultdict(list); sizes=collections.defaultdict(collections.Counter)
for l in open(name):
    m=r.match(l)
    if not m: continue
    tid,cpu,t,ev,rest=m.groups(); t=float(t)*1e6; cpu=int(cpu)
    if ev=='raw_syscalls:sys_enter':
        mm=re.match(r'NR (\d+) \(([^)]*)\)',rest); nr=int(mm.group(1))
        if nr in (1,44):
            size=int(mm.group(2).split(', ')[2],16); open_[tid]=[t,size,None,cpu]
    elif ev=='sched:sched_waking' and tid in open_:
        tc=int(re.search(r'target_cpu=(\d+)',rest).group(1)); open_[tid][2]='local' if tc==open_[tid][3] else 'remote'
    elif ev=='raw_syscalls:sys_exit' and tid in open_:
        t0,size,w,c=open_.pop(tid); sizes[tid][size]+=1; res[(tid,size)].append((t-t0,w or 'none'))
x=json.load(open(js))
print(f"{x['target']:6s} deliv p50 {x['e2e_p50_us']:6.1f} acked p50 {x['acked_p50_us']:6.1f} ack-deliv {x['acked_p50_us']-x['e2e_p50_us']:5.1f}")
for (tid,size),v in sorted(res.items(), key=lambda kv:-len(kv[1])):
    if len(v)<100: continue
    c=collections.Counter(w for _,w in v)
    for k in ('local','remote','none'):
        xs=sorted(d for d,w in v if w==k)
        if xs: print(f"   tid {tid} send {size:4d} B n={len(v)}: {k:6s} {len(xs):4d} p50 {xs[len(xs)//2]:5.1f} us")
