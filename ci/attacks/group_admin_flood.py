"""Attack: pipelined GroupAdmin frames (admin; everyone without an auth file), each one unit of
the turn's frame budget.

modes:
  replay-empty   ReplayParked on a group with nothing parked: a log line per frame?
  replay-scan    P parked events, ReplayRange over an id that is not parked: O(P) per frame
  settings-flip  UpdateSettings alternating two values: a journal record + log line per frame
  create-delete  GroupAdmin create then delete of a group with a 255-byte name
  reset          GroupAdmin reset of a group without members
  detail         GroupsRequest / GroupsDetailRequest for a group with M members: O(M) per frame

usage: group_admin_flood.py MODE SECONDS [PARKED_OR_MEMBERS]"""
import os
import sys
import threading
import time

from common import Bystander, Conn, Server, fc, report

mode = sys.argv[1]
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 8
count = int(sys.argv[3]) if len(sys.argv) > 3 else 100000
server = Server(["--max-connections", "4096"])


def admin_reply(conn):
    while True:
        frame = conn.recv(timeout=30)
        assert frame is not None, "no reply"
        if frame[0] in (fc.GROUPS, fc.GROUPS_DETAIL, fc.ERROR):
            return fc.decode(*frame)


def park(conn, parked):
    """Produces `parked` events and parks them in group "g" (max_deliveries 1, all nacked)."""
    for start in range(0, parked, 1000):
        events = [fc.NewEvent(f"/p/{n}", b"x") for n in range(start, min(parked, start + 1000))]
        conn.send(fc.encode_batch(start + 1, events))
        while conn.recv(timeout=30)[0] != fc.ACK:
            pass
    member = Conn(server.port, "parker")
    member.send(fc.encode_join_group(1, "g", "/p/**", fc.Start.beginning(), 100000,
                                     max_deliveries=1, max_in_flight=100000))
    got = 0
    ids = []
    while got < parked:
        kind, body = member.recv(timeout=30)
        if kind == fc.EVENT:
            ids.append(fc.decode(kind, body).id)
            got += 1
            if len(ids) == 1000:
                member.send(fc.encode_group_nack(1, 0, ids))
                ids = []
    if ids:
        member.send(fc.encode_group_nack(1, 0, ids))
    member.send(fc.encode_ping(7))
    while member.recv(timeout=30)[0] != fc.PONG:
        pass
    member.send(fc.encode_leave_group(1))
    return member


try:
    admin = Conn(server.port, "admin")
    keep = []
    if mode == "replay-scan":
        keep.append(park(admin, count))
        admin.send(fc.encode_groups_request("g"))
        info = admin_reply(admin)
        print("parked:", info.groups[0].parked if hasattr(info, "groups") else info)
        request = fc.encode_group_admin("g", fc.ADMIN_REPLAY_RANGE,
                                        id_range=(fc.EventId(1, 1), fc.EventId(1, 1)))
        if os.environ.get("CONTROL") == "ping":
            # The control: the same flood of frames that cost one unit each.
            request = fc.encode_ping(1)
    else:
        admin.send(fc.encode_group_admin("g", fc.ADMIN_CREATE, glob="/g/**"))
        print(admin_reply(admin))
        if mode == "replay-empty":
            request = fc.encode_group_admin("g", fc.ADMIN_REPLAY_PARKED)
        elif mode == "settings-flip":
            request = (fc.encode_group_admin("g", fc.ADMIN_UPDATE_SETTINGS,
                                             settings=fc.GroupSettings(1000, 3, 10))
                       + fc.encode_group_admin("g", fc.ADMIN_UPDATE_SETTINGS,
                                               settings=fc.GroupSettings(2000, 4, 20)))
        elif mode == "create-delete":
            name = "c" * 255
            request = (fc.encode_group_admin(name, fc.ADMIN_CREATE, glob="/c/**")
                       + fc.encode_group_admin(name, fc.ADMIN_DELETE))
        elif mode == "reset":
            request = fc.encode_group_admin("g", fc.ADMIN_RESET, start=fc.Start.end())
        elif mode in ("detail", "groups"):
            conns = []
            for c in range(count // 64):
                conn = Conn(server.port, f"m{c}")
                conn.send(b"".join(fc.encode_join_group(s, "g", "/g/**", fc.Start.end(), 1)
                                   for s in range(1, 65)))
                conns.append(conn)
            keep.extend(conns)
            time.sleep(2)
            if mode == "detail":
                request = fc.encode_groups_detail_request("g")
            else:
                request = fc.encode_groups_request("g")
        else:
            raise SystemExit(f"unknown mode {mode}")
    journal = os.path.join(server.dir, "groups.journal")
    size0 = os.path.getsize(journal) if os.path.exists(journal) else 0
    lines0 = len(server.lines)
    by = Bystander(server.port)
    time.sleep(3)
    base = by.summary()
    by.latencies.clear()
    cpu0 = server.cpu_s()
    attacker = Conn(server.port, "attacker")
    attacker.drain_forever()
    stop = time.time() + seconds
    batch = request * (4000 // (len(request) // 20 + 1) + 1)
    sent = 0
    while time.time() < stop:
        attacker.send(batch)
        sent += 1
    attack = by.stop()
    time.sleep(1)
    size1 = os.path.getsize(journal) if os.path.exists(journal) else 0
    report(f"group admin flood {mode} ({count}) for {seconds}s",
           baseline=base, under_attack=attack, batches_sent=sent,
           reply_bytes_read=attacker.read_bytes,
           log_lines=len(server.lines) - lines0,
           log_bytes=sum(len(x) for x in server.lines[lines0:]),
           journal_growth_bytes=size1 - size0,
           server_cpu_s=f"{server.cpu_s() - cpu0:.1f}", rss_mb=f"{server.rss_mb():.0f}",
           alive=server.alive())
    if len(server.lines) > lines0:
        print("   last log line:", server.lines[-1].strip()[:200])
finally:
    server.stop()
