"""Attack: many groups' ack time-outs made to fall due in the same turn.

One connection joins G groups (255-byte names, max_in_flight 100000, max_deliveries 1, so
every time-out parks its event and journals a Park record), one after the other, reads every
delivery and acks none. Each join asks for an ack time-out that ends at the same moment, so
G x N time-outs fall due together and `expire_group_timers` handles all of them at once.

With CONTROL=1 the time-outs end an hour later: the same state and bystander, nothing due.

usage: timer_expiry.py [GROUPS] [EVENTS] [SETTLE_SECONDS]"""
import os
import struct
import sys
import threading
import time

from common import Bystander, Conn, Server, fc, report

groups = int(sys.argv[1]) if len(sys.argv) > 1 else 11
events = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
settle = float(sys.argv[3]) if len(sys.argv) > 3 else 6
server = Server(["--max-connections", "4096"])


class Member:
    """One connection in every group; a thread counts the Event frames per subscription."""

    def __init__(self, port):
        self.conn = Conn(port, "member")
        self.counts = {}
        self.lock = threading.Condition()
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        buf = b""
        sock = self.conn.sock
        sock.settimeout(None)
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return
            buf += chunk
            at = 0
            seen = {}
            while len(buf) - at >= 4:
                (length,) = struct.unpack_from(">I", buf, at)
                if len(buf) - at < 4 + length:
                    break
                if buf[at + 4] == fc.EVENT:
                    (sub,) = struct.unpack_from(">I", buf, at + 5)
                    seen[sub] = seen.get(sub, 0) + 1
                at += 4 + length
            buf = buf[at:]
            if seen:
                with self.lock:
                    for sub, n in seen.items():
                        self.counts[sub] = self.counts.get(sub, 0) + n
                    self.lock.notify_all()

    def wait(self, sub, count, timeout=120):
        with self.lock:
            return self.lock.wait_for(lambda: self.counts.get(sub, 0) >= count, timeout)


try:
    producer = Conn(server.port, "producer")
    for start in range(0, events, 10000):
        batch = [fc.NewEvent(f"/t/{n}", b"x") for n in range(start, min(events, start + 10000))]
        producer.send(fc.encode_batch(start + 1, batch))
        while producer.recv(timeout=60)[0] != fc.ACK:
            pass
    member = Member(server.port)
    # Every join gets the time-out that ends at `due`: the joins take about a second each.
    due = time.monotonic() + groups * 1.5 + 5
    late = 3600 if os.environ.get("CONTROL") else 0
    for g in range(groups):
        name = f"{g:03d}" + "g" * 252
        timeout_ms = int((due + late - time.monotonic()) * 1000)
        member.conn.send(fc.encode_join_group(g + 1, name, "/t/**", fc.Start.beginning(), events,
                                              ack_timeout_ms=timeout_ms, max_deliveries=1,
                                              max_in_flight=events))
        assert member.wait(g + 1, events), f"group {g}: {member.counts.get(g + 1)} delivered"
    print(f"{groups} x {events} in flight, {due - time.monotonic():.1f} s before they are due")
    rss_before = server.rss_mb()
    cpu_before = server.cpu_s()
    bystander = Bystander(server.port)
    time.sleep(max(0.0, due - time.monotonic()) + settle)
    # The bystander's last produce waits for the stall to end.
    summary = bystander.stop()
    producer.send(fc.encode_groups_request())
    while (frame := producer.recv(timeout=60))[0] != fc.GROUPS:
        pass
    parked = sum(group.parked for group in fc.decode(*frame).groups)
    journal = sum(os.path.getsize(os.path.join(server.dir, name))
                  for name in os.listdir(server.dir) if name.startswith("groups.journal"))
    report(f"timer expiry{' CONTROL' if late else ''}, {groups} groups x {events}", bystander=summary,
           parked=parked, group_journal_mb=f"{journal / 2**20:.0f}",
           rss_mb=f"{rss_before:.0f} -> {server.rss_mb():.0f}",
           cpu_s=f"{server.cpu_s() - cpu_before:.1f}", alive=server.alive())
finally:
    server.stop()
