"""fix18: PeerPurge (protocol.md section 17) with the fake peer. Usage: peerpurge_probe.py PORT SECRET"""
import os, sys, struct, time
from peer import *
import purge_probe as P
c = P.C.Client("127.0.0.1", PORT)
for i in range(3): c.wait_for(P.C.is_reply(c.produce("/m/a", b"%d" % i)), "ack")
P.purge(c, "/m/**", 1, (3, 1)); print("[client purge /m/** before 3.1]", P.next_reply(c))
pc = Conn(); handshake(pc)
print("[after the handshake, with credit 16 from us]"); pc.send(frame(0x43, struct.pack(">I", 16)))
drain(pc, 1.0)
future = int(time.time() * 1000) + 3600_000
pc.send(frame(0x4B, str16("/p/**") + b"\x02" + struct.pack(">Q", future)))
pc.send(frame(0x4B, str16("/m/**") + b"\x01" + struct.pack(">QH", 2, 1)))
time.sleep(0.5)
c.send(P.C.frame(0x1A)); print("[PurgesRequest after PeerPurges /p/** +1h and /m/** before 2.1]", P.next_reply(c))
print("[peer after its PeerPurges]"); drain(pc, 0.5)
