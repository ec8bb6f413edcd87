"""Attack on the client (a hostile server): a fake server on loopback answers flo-client's
Hello with a Welcome announcing frame_size_max FRAME_MAX (default 0xFFFFFFFF), then sends an
Event frame of length 0xFFFFFFF0 whose body of zeros is streamed for SECONDS, printing the
client's RSS every second. The client must refuse the frame at its length (one line, exit 1)
instead of buffering it. Keep SECONDS small: before the fix the client grew ~450 MB a second.

usage: hostile_server_frame.py FLO_CLIENT_BINARY SECONDS [FRAME_MAX]"""
import socket, struct, subprocess, sys, time, threading
client_bin = sys.argv[1]
seconds = float(sys.argv[2])
frame_max = int(sys.argv[3], 0) if len(sys.argv) > 3 else 0xFFFFFFFF
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1); ls.settimeout(10)
port = ls.getsockname()[1]
proc = subprocess.Popen([client_bin, "-H", f"127.0.0.1:{port}", "consume", "-n", "/**"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
conn, _ = ls.accept()
conn.recv(65536)  # Hello
ver = b"evil"
body = struct.pack(">BH", 0x21, 1) + struct.pack(">H", len(ver)) + ver + struct.pack(">HIIIII", 1, frame_max, 1024, 8 << 20, 64, 0)
conn.sendall(struct.pack(">I", len(body)) + body)
# The Subscribe (and maybe more); read and ignore in a thread.
def drain():
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
threading.Thread(target=drain, daemon=True).start()
conn.sendall(struct.pack(">IB", 0xFFFFFFF0, 0x24))
chunk = b"\0" * (1 << 20)
start = time.monotonic(); sent = 0; last = start; peak = 0
def rss():
    try:
        for l in open(f"/proc/{proc.pid}/status"):
            if l.startswith("VmRSS"): return int(l.split()[1]) // 1024
    except Exception: return -1
    return -1
try:
    while time.monotonic() - start < seconds and proc.poll() is None:
        conn.sendall(chunk); sent += len(chunk)
        if time.monotonic() - last > 1:
            last = time.monotonic(); r = rss(); peak = max(peak, r)
            print(f"{last-start:.0f}s sent {sent>>20} MiB client RSS {r} MiB", flush=True)
except OSError as e:
    print("send ended:", e)
peak = max(peak, rss())
try:
    proc.wait(5)
except subprocess.TimeoutExpired:
    pass
alive = proc.poll() is None
proc.kill(); proc.wait()
print(f"client alive at the end: {alive}; RSS peak {peak} MiB; exit {proc.returncode}; stderr: {proc.stderr.read().decode()[:300]!r}")
