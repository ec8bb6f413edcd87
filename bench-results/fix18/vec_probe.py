"""fix18: the peer handshake vector's rules (ascending actors, no counter 0). Usage: vec_probe.py PORT SECRET"""
from peer import *
for vec in [((3, 1), (2, 1)), ((2, 0),), ((2, 1), (2, 1))]:
    c = Conn(); print("[vector", vec, "]")
    try: handshake(c, vector=vec)
    except AssertionError as e: print("  refused:", e)
