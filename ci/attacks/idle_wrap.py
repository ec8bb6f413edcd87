"""Attack: start flo with the given flags, hold an idle connection and a partial frame for
1.5 s, and check a client still gets a Pong (a wrapped idle or handshake deadline closes it).

usage: idle_wrap.py FLAG VALUE ..."""
import sys, time, socket
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from common import Server, Conn, fc
flags = sys.argv[1:]
s = Server(flags)
try:
    a = Conn(s.port, "x")
    a.send(fc.encode_ping(1)); assert a.recv(5)[0] == fc.PONG
    raw = socket.create_connection(("127.0.0.1", s.port)); raw.send(b"\x00\x00")  # partial hello
    b = Conn(s.port, "y"); b.send(b"\x00\x00\x00\x10")  # partial frame
    a.send(fc.encode_produce(1, fc.NewEvent("/a", b"x"))); f = a.recv(5)
    a.send(fc.encode_subscribe(1, "/**", fc.Start.beginning(), 0, True, 10)) if hasattr(fc, "encode_subscribe") else None
    a.send(fc.encode_join_group(2, "g", "/**", fc.Start.beginning(), 10, ack_timeout_ms=1)); time.sleep(1.5)
    a.send(fc.encode_ping(2))
    ok = False
    for _ in range(20):
        fr = a.recv(5)
        if fr is None: break
        if fr[0] == fc.PONG: ok = True; break
    print(" ".join(flags), "alive" if s.alive() and ok else "DEAD", "panics:", sum("panicked" in l for l in s.lines))
finally:
    s.stop()
    print("".join(s.lines[-8:])[:3000])
