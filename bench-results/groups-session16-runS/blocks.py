import re, sys, statistics
# Log fdatasync durations split by whether the turn's pwrite64 touched a 4 KiB block of the segment never written before.
pw = re.compile(r'^(\d+)\s+\S+ pwrite64\((\d+), .*, (\d+), (\d+)\) = \d+')
fs = re.compile(r'^(\d+)\s+\S+ fdatasync\((\d+)\)\s+= 0 <(\d+\.\d+)>')
for path in sys.argv[1:]:
    hi = {}  # fd -> highest block written
    newblk = {}; new, old = [], []
    reactor = None
    for line in open(path):
        m = pw.match(line)
        if m:
            tid, fd, ln, off = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
            last = (off + ln - 1) // 4096
            if last > hi.get(fd, -1):
                newblk[(tid, fd)] = True; hi[fd] = last
            continue
        m = fs.match(line)
        if m:
            tid, fd, d = m.group(1), int(m.group(2)), float(m.group(3)) * 1000
            key = (tid, fd)
            if fd != 5: continue
            (new if newblk.pop(key, False) else old).append(d)
    q = lambda xs, p: sorted(xs)[min(len(xs)-1, int(p*len(xs)))] if xs else float('nan')
    print(f"{path}: log fdatasync after a write into a new block: {len(new)} p50 {q(new,.5):.3f} p90 {q(new,.9):.3f}; other {len(old)} p50 {q(old,.5):.3f} p90 {q(old,.9):.3f} p99 {q(old,.99):.3f} ms")
