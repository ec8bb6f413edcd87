import re, sys
fs = re.compile(r'^(\d+)\s+\S+ fdatasync\(5\)\s+= 0 <(\d+\.\d+)>')
for path in sys.argv[1:]:
    d = sorted(float(m.group(2))*1000 for m in map(fs.match, open(path)) if m)
    q = lambda p: d[min(len(d)-1, int(p*len(d)))]
    print(f"{path}: n {len(d)} p50 {q(.5):.3f} p90 {q(.9):.3f} p95 {q(.95):.3f} p97 {q(.97):.3f} p98 {q(.98):.3f} p99 {q(.99):.3f}; over 0.45 ms {sum(x>0.45 for x in d)/len(d)*100:.1f}%")
