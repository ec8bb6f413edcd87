"""fix18: protocol.md section 17 (purges) checked against the server. Usage: purge_probe.py PORT (a fresh server without peers)"""
import os, sys, struct, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "review18"))
import client as C
_decode = C.decode
def purge_body(r):
    g = r.str16(); k = r.u8(); b = r.event_id() if k == 1 else r.u64(); return (g, k, b)
def decode(kind, body):
    r = C.Reader(body)
    if kind == 0x31:
        f = purge_body(r) + (r.boolean(),); r.done(); return kind, f
    if kind == 0x32:
        ps = [purge_body(r) for _ in range(r.u16())]; rs = [(r.str16(), r.u64(), r.u64()) for _ in range(r.u16())]; r.done(); return kind, (ps, rs)
    return _decode(kind, body)
C.decode = decode
def purge(c, glob, kind, bound):
    b = C.str16(glob) + bytes([kind]) + (C.event_id(bound) if kind == 1 else struct.pack(">Q", bound))
    c.send(C.frame(0x19, b))
def next_reply(c):
    while True:
        k, f = c.recv()
        if k in (0x31, 0x32, C.ERROR, C.ACK): return k, f

if __name__ == "__main__":
    PORT = int(sys.argv[1])
    c = C.Client("127.0.0.1", PORT)
    for i in range(3): c.wait_for(C.is_reply(c.produce("/m/a", b"%d" % i)), "ack")
    c.wait_for(C.is_reply(c.produce("/n/x", b"n")), "ack")   # 4.1
    purge(c, "/m/**", 1, (3, 1)); print("[purge /m/** before 3.1]", next_reply(c))
    purge(c, "/m/**", 1, (3, 1)); print("[same again]", next_reply(c))
    purge(c, "/m/**", 1, (2, 1)); print("[lower bound]", next_reply(c))
    c.subscribe(1, "/m/**", C.start_beginning(), tail=False)
    evs = []
    while True:
        k, f = c.recv()
        if k == C.EVENT: evs.append(f["id"])
        if k in (C.END, C.CAUGHT_UP): break
    print("[subscribe /m/** from the beginning] ids", evs)
    now = int(time.time() * 1000)
    purge(c, "/o/**", 2, now + 60000); print("[time bound now+60s]", next_reply(c))
    purge(c, "/o/**", 2, now); print("[time bound now]", next_reply(c))
    purge(c, "/o/**", 1, (5, 1)); print("[id bound 5.1 (next id)]", next_reply(c))
    purge(c, "/o/**", 1, (5, 2)); print("[id bound 5.2]", next_reply(c))
    purge(c, "/o/**", 1, (6, 1)); print("[id bound 6.1]", next_reply(c))
    purge(c, "/n/**", 1, (5, 1)); print("[purge /n/** before 5.1: all of /n/x]", next_reply(c))
    op = c.produce_if(1, None, [("/n/x", b"again", None)]); print("[ProduceIf NoEvents on purged /n/x]", c.wait_for(C.is_reply(op), "reply"))
    op = c.produce_if(3, None, [("/n/x", b"again", None)]); print("[ProduceIf HasEvents on purged /n/x]", c.wait_for(C.is_reply(op), "reply"))
    op = c.produce_if(2, (4, 1), [("/n/x", b"again", None)]); print("[ProduceIf LastIs 4.1 on purged /n/x]", c.wait_for(C.is_reply(op), "reply"))
    c.send(C.frame(0x1A)); print("[PurgesRequest]", next_reply(c))
    purge(c, "/bad[", 2, now); print("[invalid glob]", next_reply(c))
    purge(c, "/o/**", 2, 0); 
    try: print("[time bound 0]", next_reply(c))
    except Exception as e: print("[time bound 0]", type(e).__name__, e)
