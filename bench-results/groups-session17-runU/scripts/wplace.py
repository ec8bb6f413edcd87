import re,sys,collections,json
name,spid,cpid,js=sys.argv[1:5]
r=re.compile(r'^\s*(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$')
pend={}; c=collections.Counter(); d=collections.defaultdict(list); tidpid={}
lines=[]
for l in open(name):
    m=r.match(l)
    if m: lines.append(m.groups()); tidpid[m.group(2)]=m.group(1)
for pid,tid,cpu,t,ev,rest in lines:
    wp=re.search(r' pid=(\d+)',rest).group(1)
    if ev=='sched:sched_waking':
        if wp in tidpid and wp!=tid:
            pend[wp]=(tid,int(cpu),int(re.search(r'target_cpu=(\d+)',rest).group(1)),float(t))
    elif wp in pend:
        w,wc,tc,t0=pend.pop(wp)
        kind=('srv' if tidpid[w]==spid else 'cli')+'->'+('srv' if tidpid[wp]==spid else 'cli')
        k=(kind,'local' if wc==tc else 'remote'); c[k]+=1; d[k].append((float(t)-t0)*1e6)
x=json.load(open(js))
out=f"{x['target']:6s} deliv p50 {x['e2e_p50_us']:6.1f} acked p50 {x['acked_p50_us']:6.1f} p99 {x['acked_p99_us']:7.1f} |"
for k in sorted(c):
    xs=sorted(d[k]); out+=f" {k[0]} {k[1]} {c[k]} ({xs[len(xs)//2]:.0f}us)"
print(out)
