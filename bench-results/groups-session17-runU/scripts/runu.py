import json,statistics,collections,sys
for f in sys.argv[1:]:
    d=collections.defaultdict(dict)
    for l in open(f):
        r=json.loads(l); x=r['result']; d[(x['members'],x['target'])][r['repeat']]=x
    print(f)
    for m in (4,1):
        row=[]
        for t in ('flo-interval','base-interval','redis-everysec','nats-js-file','flo-always','base-always','redis-always','nats-js-always'):
            v=d[(m,t)].values()
            med=lambda k: statistics.median(x[k] for x in v)
            gap=statistics.median(x['acked_p50_us']-x['e2e_p50_us'] for x in v)
            print(f"  {m} {t:15s} acked p50/p99 {med('acked_p50_us')/1000:.2f} / {med('acked_p99_us')/1000:.2f} ms  acked-deliv p50 {gap:5.1f} us  late p99 {med('late_p99_us')/1000:.2f}")
        for a,b in (('flo-interval','base-interval'),('flo-interval','redis-everysec'),('flo-interval','nats-js-file'),('flo-always','base-always'),('flo-always','redis-always'),('flo-always','nats-js-always')):
            A=d[(m,a)]; B=d[(m,b)]
            ks=sorted(set(A)&set(B))
            r50=[A[k]['acked_p50_us']/B[k]['acked_p50_us'] for k in ks]; r99=[A[k]['acked_p99_us']/B[k]['acked_p99_us'] for k in ks]
            g=[(A[k]['acked_p50_us']-A[k]['e2e_p50_us'])-(B[k]['acked_p50_us']-B[k]['e2e_p50_us']) for k in ks]
            print(f"    {m} {a}/{b}: p50 paired median {statistics.median(r50):.2f} (lower {sum(x<1 for x in r50)}/{len(ks)}), p99 paired median {statistics.median(r99):.2f} (lower {sum(x<1 for x in r99)}/{len(ks)}), ack step diff median {statistics.median(g):+.1f} us")
