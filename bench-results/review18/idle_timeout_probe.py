"""review18: reproduction of the late idle time-out. Start a server with
`flo -d DIR -p 3919 --idle-timeout 2s`, then `python3 idle_timeout_probe.py 0 1 0 1` (0: nothing
flows to the consumer; 1: a second connection produces to its glob every ~50 ms)."""
import time, socket, sys, threading
from client import *
FLOWS = [f == "1" for f in sys.argv[1:]] or [False, True]
def run(flow):
    c = Client("127.0.0.1", 3919); c.sock.settimeout(10)
    c.subscribe(1, "/idle/**", start_end(), credit=100000)
    t0 = time.time()
    stop = [False]
    def producer():
        p = Client("127.0.0.1", 3919)
        while not stop[0]:
            p.wait_for(is_reply(p.produce("/idle/x", b"x")), "ack"); time.sleep(0.05)
    if flow: threading.Thread(target=producer, daemon=True).start()
    n = 0
    while True:
        k, f = c.recv()
        if k == EVENT: n += 1
        if k == ERROR:
            stop[0] = True
            return f"flow={flow}: Timeout after {time.time()-t0:.2f} s, {n} events received meanwhile"
for flow in FLOWS:
    print(run(flow))
