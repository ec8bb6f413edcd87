"""fix18: TLS as protocol.md "Transport security" describes it, with Python's ssl module.
Usage: tls_probe.py PORT CERT PLAINPORT"""
import os, socket, ssl, struct, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "review18"))
import client as C
PORT, CERT, PLAIN = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

def ctx(maxv=None, minv=None, alpn=None):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); c.load_verify_locations(CERT)
    if maxv: c.maximum_version = maxv
    if minv: c.minimum_version = minv
    if alpn: c.set_alpn_protocols(alpn)
    return c

def hello():
    return C.frame(0x01, struct.pack(">H", 1) + C.str16("fix18-tls") + C.str16(""))

def read_frames(s, secs=1.0):
    s.settimeout(secs); buf = b""; out = []
    try:
        while True:
            d = s.recv(65536)
            if not d: out.append("EOF"); break
            buf += d
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                n = struct.unpack(">I", buf[:4])[0]; out.append(C.decode(buf[4], buf[5:4 + n])); buf = buf[4 + n:]
    except (socket.timeout, TimeoutError): out.append("(quiet)")
    except (ssl.SSLError, ConnectionResetError) as e: out.append(f"{type(e).__name__}: {e}")
    return out

BASE = ctx()
def tls(host="127.0.0.1", **kw):
    raw = socket.create_connection(("127.0.0.1", PORT))
    return (ctx(**kw) if kw else BASE).wrap_socket(raw, server_hostname=host)

# 1. TLS 1.3, Hello, Welcome, a produce, session details.
s = tls(); print("[TLS 1.3 by IP]", s.version(), s.cipher()[0], "alpn", s.selected_alpn_protocol())
s.sendall(hello()); print("  ", read_frames(s, 0.5)[:1])
s.sendall(C.frame(0x02, struct.pack(">Q", 1) + C.new_event("/tls/x", b"hi"))); print("  ", read_frames(s, 0.5)[:1])
print("   session reused:", s.session_reused, "session ticket offered:", s.session is not None and s.session.has_ticket)
sess = s.session; s.close()
# 2. Resumption offered back.
raw = socket.create_connection(("127.0.0.1", PORT)); s = BASE.wrap_socket(raw, server_hostname="127.0.0.1", session=sess)
print("[resume]", "reused:", s.session_reused); s.close()
# 3. By name (SNI localhost).
s = tls("localhost"); print("[TLS by name localhost]", s.version()); s.close()
# 4. TLS 1.2 only.
try:
    s = tls(maxv=ssl.TLSVersion.TLSv1_2); print("[TLS 1.2] connected?!", s.version())
except (ssl.SSLError, OSError) as e: print("[TLS 1.2] refused:", type(e).__name__, e)
# 5. ALPN offered.
s = tls(alpn=["flo", "h2"]); print("[ALPN offered]", "selected:", s.selected_alpn_protocol()); s.close()
# 6. Plaintext Hello to the TLS port.
p = socket.create_connection(("127.0.0.1", PORT)); p.sendall(hello()); print("[plaintext to TLS port]", read_frames(p))
# 7. A name the certificate does not carry.
try:
    s = tls("example.org"); print("[wrong name] connected?!")
except ssl.SSLCertVerificationError as e: print("[wrong name] client refuses:", e.verify_message)
# 8. TLS to the plaintext port.
raw = socket.create_connection(("127.0.0.1", PLAIN)); raw.settimeout(2)
try:
    ctx().wrap_socket(raw, server_hostname="127.0.0.1"); print("[TLS to plaintext port] connected?!")
except (ssl.SSLError, OSError) as e: print("[TLS to plaintext port]", type(e).__name__, e)
raw = socket.create_connection(("127.0.0.1", PLAIN)); raw.sendall(bytes.fromhex("160301")); print("[0x16 bytes to plaintext port, raw]", read_frames(raw, 1.0))
# 9. Handshake time-out: TLS done, no Hello; and TCP only, nothing.
t0 = time.time(); s = tls(); out = read_frames(s, 10); print(f"[TLS, no Hello] after {time.time()-t0:.2f} s:", out)
t0 = time.time(); raw = socket.create_connection(("127.0.0.1", PORT)); out = read_frames(raw, 10); print(f"[TCP only, nothing] after {time.time()-t0:.2f} s:", out)
