import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}; loads = []
for r in rows:
    loads.append(float(r["loadavg"].split()[0]))
    by.setdefault((r["result"]["members"], r["target"]), {})[r["repeat"]] = r["result"]
print(sys.argv[1], f"load {min(loads):.1f}-{max(loads):.1f}")
med = statistics.median
for (m, t), reps in sorted(by.items()):
    ks = sorted(reps)
    print(f"  {m} {t:7s} acked p99 " + " ".join(f"{reps[k]['acked_p99_us']/1000:6.2f}" for k in ks) +
          " | late p99 " + " ".join(f"{reps[k]['late_p99_us']/1000:5.2f}" for k in ks) +
          f" | med p50 {med(x['acked_p50_us'] for x in reps.values())/1000:.2f} p99 {med(x['acked_p99_us'] for x in reps.values())/1000:.2f} p99.9 {med(x['acked_p999_us'] for x in reps.values())/1000:.2f}")
ref = sys.argv[2] if len(sys.argv) > 2 else "i100"
for (m, t), reps in sorted(by.items()):
    if t == ref or (m, ref) not in by: continue
    base = by[(m, ref)]
    rat = [reps[k]["acked_p99_us"] / base[k]["acked_p99_us"] for k in sorted(reps) if k in base]
    print(f"  {m} {t}/{ref} p99 paired median {med(rat):.2f}x, lower in {sum(x < 1 for x in rat)} of {len(rat)}")
