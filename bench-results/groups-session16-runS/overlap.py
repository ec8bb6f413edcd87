import re, sys, statistics
# strace -f -tt -T lines: TID HH:MM:SS.us fdatasync(FD) = 0 <dur>
pat = re.compile(r'^(\d+)\s+(\d+):(\d+):(\d+\.\d+) (fdatasync|fsync|pwrite64)\((\d+)[,)].*<(\d+\.\d+)>')
unf = re.compile(r'^(\d+)\s+(\d+):(\d+):(\d+\.\d+) (fdatasync|fsync|pwrite64)\((\d+)[, ].*<unfinished')
res = re.compile(r'^(\d+)\s+(\d+):(\d+):(\d+\.\d+) <\.\.\. (fdatasync|fsync|pwrite64) resumed>.*<(\d+\.\d+)>')
def load(path):
    ev = []
    pending = {}
    for line in open(path):
        m = unf.match(line)
        if m:
            pending[m.group(1)] = m.groups()
            continue
        m = res.match(line)
        if m and m.group(1) in pending:
            tid, h, mi, s, call, fd = pending.pop(m.group(1))
            t = int(h)*3600 + int(mi)*60 + float(s)
            ev.append((tid, t, call, int(fd), float(m.group(6))))
            continue
        m = pat.match(line)
        if not m: continue
        tid, h, mi, s, call, fd, dur = m.groups()
        t = int(h)*3600 + int(mi)*60 + float(s)
        ev.append((tid, t, call, int(fd), float(dur)))
    return ev
for path in sys.argv[1:]:
    ev = load(path)
    # journal fd: the fd of 46-byte-ish pwrites from... use the fd synced by a non-reactor thread
    syncs = [e for e in ev if e[2] in ('fdatasync','fsync')]
    tids = {}
    for e in syncs: tids.setdefault((e[0], e[3]), []).append(e)
    # reactor thread = tid with most fdatasyncs
    (rtid, rfd) = max(tids, key=lambda k: len(tids[k]))
    log = [e for e in syncs if e[0] == rtid and e[3] == rfd]
    jour = [e for e in syncs if e[0] != rtid]
    jiv = [(e[1], e[1] + e[4]) for e in jour]
    over, alone = [], []
    for e in log:
        a, b = e[1], e[1] + e[4]
        if any(x < b and a < y for x, y in jiv): over.append(e[4]*1000)
        else: alone.append(e[4]*1000)
    def q(xs, p): 
        xs = sorted(xs); return xs[min(len(xs)-1, int(p*len(xs)))] if xs else float('nan')
    print(f"{path}: log fdatasyncs {len(log)}, journal {len(jour)} (tids {sorted(set(e[0] for e in jour))}); "
          f"overlapping {len(over)} med {q(over,.5):.3f} p90 {q(over,.9):.3f} ms; alone {len(alone)} med {q(alone,.5):.3f} p90 {q(alone,.9):.3f} p99 {q(alone,.99):.3f} ms; "
          f"journal med {q([e[4]*1000 for e in jour],.5):.3f} p90 {q([e[4]*1000 for e in jour],.9):.3f} ms")
