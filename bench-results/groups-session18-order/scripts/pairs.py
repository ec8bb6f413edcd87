#!/usr/bin/env python3
"""Per-cell medians and per-repeat paired ratios of runs.jsonl files of bench_groups.sh (after
session 17's runu.py, for the targets of grp18's runs: flo-, alt-, alt2-, base-interval and
redis-everysec; pass several files to pool their repeats, the pairs stay within a file).
usage: pairs.py RUNS.jsonl..."""
import json, statistics, collections, sys
T = ('flo-interval', 'alt-interval', 'alt2-interval', 'base-interval', 'redis-everysec')
pooled = collections.defaultdict(list)      # (members, target) -> results
pairs = collections.defaultdict(list)       # (members, a, b, key) -> ratios
for f in sys.argv[1:]:
    d = collections.defaultdict(dict)
    for l in open(f):
        r = json.loads(l); x = r['result']; d[(x['members'], x['target'])][r['repeat']] = x
    for (m, t), v in d.items():
        pooled[(m, t)].extend(v.values())
    for m in (4, 1):
        for a, b in (('flo-interval', 'base-interval'), ('flo-interval', 'redis-everysec'), ('base-interval', 'redis-everysec'),
                     ('alt-interval', 'base-interval'), ('alt-interval', 'redis-everysec'), ('alt2-interval', 'base-interval'),
                     ('flo-interval', 'alt-interval')):
            A, B = d.get((m, a), {}), d.get((m, b), {})
            for k in sorted(set(A) & set(B)):
                for key in ('acked_p50_us', 'acked_p99_us', 'e2e_p99_us', 'latency_p50_us', 'latency_p99_us'):
                    pairs[(m, a, b, key)].append(A[k][key] / B[k][key])
med = statistics.median
print("files:", " ".join(sys.argv[1:]))
print("| members | target | runs | acked p50 / p99 ms | delivered p99 ms | producer's ack p50 / p99 ms | acked - delivered p50 us | produce late p99 ms |")
print("|---|---|---|---|---|---|---|---|")
for m in (4, 1):
    for t in T:
        v = pooled.get((m, t))
        if not v: continue
        g = lambda k: med(x[k] for x in v)
        print(f"| {m} | {t} | {len(v)} | {g('acked_p50_us')/1000:.3f} / {g('acked_p99_us')/1000:.3f} | {g('e2e_p99_us')/1000:.3f} | {g('latency_p50_us')/1000:.3f} / {g('latency_p99_us')/1000:.3f} | {med(x['acked_p50_us']-x['e2e_p50_us'] for x in v):.1f} | {g('late_p99_us')/1000:.2f} |")
print()
print("paired per repeat, median ratio (repeats where the first is lower / pairs):")
for (m, a, b, key), rs in sorted(pairs.items(), key=lambda kv: (-kv[0][0], kv[0][1], kv[0][2], kv[0][3])):
    print(f"- {m} members, {a} / {b}, {key}: {med(rs):.2f} ({sum(x < 1 for x in rs)}/{len(rs)})")
