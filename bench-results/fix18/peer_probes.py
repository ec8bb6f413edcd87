"""fix18: probes of protocol.md section 15's refusals with the fake peer. Usage: peer_probes.py PORT SECRET"""
import sys, struct, os

from peer import *

def after_handshake(frames, label):
    c = Conn(); handshake(c)
    drain(c, 0.3)
    for f in frames: c.send(f)
    print(f"[{label}]"); out = drain(c, 0.8)

def raw(frames, label):
    c = Conn(); print(f"[{label}]")
    for f in frames: c.send(f)
    drain(c, 0.8)

# Wrong proof.
c = Conn(); dn = os.urandom(32); c.send(frame(0x40, hello_body(ME, "127.0.0.1:1", dn))); k, b = c.recv()
print("[wrong proof]"); c.send(frame(0x45, b"\0" * 32 + b"\0\0" + b"\0\0")); drain(c, 0.8)
# Our actor id is the server's.
raw([frame(0x40, hello_body(1, "127.0.0.1:1", os.urandom(32)))], "PeerHello with the server's actor id")
raw([frame(0x40, hello_body(ME, "localhost:1", os.urandom(32)))], "PeerHello with a host name address")
raw([frame(0x48, struct.pack(">Q", 1))], "PeerClock as the first frame")
raw([frame(0x40, struct.pack(">HH", 2, ME) + str16("127.0.0.1:1") + os.urandom(32))], "PeerHello version 2")
after_handshake([peer_event(1, 0, "/p", b"")], "PeerEvent of actor 0")
after_handshake([peer_event(1, 77, "/p", b"")], "PeerEvent of actor 77 (unknown)")
after_handshake([frame(0x43, struct.pack(">I", 65537))], "first PeerCredit 65537")
after_handshake([frame(0x43, struct.pack(">I", 10)), frame(0x43, struct.pack(">I", 10))], "PeerCredit 10 then 10")
after_handshake([frame(0x47, b"")], "kind 0x47 after the handshake")
after_handshake([frame(0x07, struct.pack(">Q", 1))], "Ping after the peer handshake")
after_handshake([peer_event(1, ME, "bad", b"")], "PeerEvent with a bad namespace")
