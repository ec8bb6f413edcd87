# flo `always`'s log alone: 176 B pwrite + fdatasync every ~2 ms into a segment that is a hole
# (ftruncate 1 MiB ahead, as flo) or whose blocks were written with zeros and synced first;
# fdatasync times split by whether the write touched a 4 KiB block not written before.
import os, sys, time
mode = sys.argv[1]; d = sys.argv[2]; n = int(sys.argv[3])
f = os.open(f"{d}/one", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
if mode == "hole": os.ftruncate(f, 1 << 20)
if mode == "zero": os.pwrite(f, b"\0" * (1 << 20), 0); os.fsync(f)
rec = b"x" * 176; off = 0; new, old = [], []
ahead = {"ahead16": 16 << 10, "ahead64": 64 << 10, "ahead256": 256 << 10}.get(mode)
if ahead: os.ftruncate(f, 1 << 20)
zeroed = 0; alloc = []
for i in range(n):
    isnew = (off + 175) // 4096 > (off - 1) // 4096 if off else True
    if ahead:
        isnew = off + 176 > zeroed
        if isnew:
            zeroed = off + 176 + ahead
            os.pwrite(f, b"\0" * (zeroed - off - 176), off + 176)
    os.pwrite(f, rec, off); off += 176
    t = time.monotonic(); os.fdatasync(f); d_ = time.monotonic() - t
    (new if isnew else old).append(d_)
    time.sleep(0.0018)
q = lambda xs, p: sorted(xs)[min(len(xs)-1, int(p*len(xs)))] * 1000
a = new + old
print(f"{mode}: all p50 {q(a,.5):.3f} p90 {q(a,.9):.3f} p99 {q(a,.99):.3f}; new block {len(new)} p50 {q(new,.5):.3f} p90 {q(new,.9):.3f}; other p50 {q(old,.5):.3f} p90 {q(old,.9):.3f} ms; load {os.getloadavg()[0]:.1f}")
