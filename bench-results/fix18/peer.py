"""fix18: a fake cluster peer written from protocol.md section 15 only. Dials a flo started with
--cluster-secret SECRET, completes the handshake as actor A2, replicates one event, and reads
what the server sends. Usage: peer.py PORT SECRET [tls CAFILE]"""
import socket, struct, sys, os, hmac, hashlib, time, ssl
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "review18"))
import client as C

PORT = int(sys.argv[1]); SECRET = sys.argv[2].encode()
TLS = len(sys.argv) > 3 and sys.argv[3] == "tls"
ME = int(os.environ.get("ACTOR", "2"))
KINDS = {0x40: "PeerHello", 0x41: "PeerWelcome", 0x42: "PeerEvent", 0x43: "PeerCredit", 0x44: "PeerMembers",
         0x45: "PeerProof", 0x46: "PeerAccept", 0x48: "PeerClock", 0x49: "PeerMembership", 0x4b: "PeerPurge", 0x23: "Error"}

def frame(kind, body): return struct.pack(">IB", len(body) + 1, kind) + body
def str16(s): b = s.encode(); return struct.pack(">H", len(b)) + b

class Conn:
    def __init__(self):
        s = socket.create_connection(("127.0.0.1", PORT)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.exporter = None
        if TLS:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.load_verify_locations(sys.argv[4])
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        s.settimeout(3); self.s = s; self.buf = b""
    def send(self, b): self.s.sendall(b)
    def recv(self):
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    kind, body = self.buf[4], self.buf[5:4 + n]; self.buf = self.buf[4 + n:]; return kind, body
            d = self.s.recv(65536)
            if not d: raise EOFError("closed")
            self.buf += d

def hello_body(actor, addr, nonce): return struct.pack(">HH", 1, actor) + str16(addr) + nonce
def parse_hello(body):
    r = C.Reader(body); v = r.u16(); a = r.u16(); addr = r.str16(); nonce = r.take(32); r.done(); return v, a, addr, bytes(nonce)
def proof(role, dn, an, da, aa):
    msg = b"flo peer proof v1" + role + dn + an + struct.pack(">HH", da, aa)
    return hmac.new(SECRET, msg, hashlib.sha256).digest()
def parse_proof(body):
    r = C.Reader(body); p = bytes(r.take(32)); vec = r.vector(); n = r.u16()
    members = [(r.u16(), r.str16()) for _ in range(n)]; r.done(); return p, vec, members
def describe(kind, body):
    name = KINDS.get(kind, hex(kind))
    if kind == 0x43: return f"{name} {struct.unpack('>I', body)[0]}"
    if kind == 0x48: return f"{name} {struct.unpack('>Q', body)[0]}"
    if kind == 0x23:
        r = C.Reader(body); sc = r.u8(); ref = r.u32() if sc else None; code = r.u16(); return f"Error scope {sc} code {code} {C.ERROR_NAMES.get(code)}: {r.str16()}"
    if kind == 0x42:
        r = C.Reader(body); i = r.event_id(); p = r.event_id(True); ts = r.u64(); ns = r.str16(); d = r.bytes32(); return f"{name} {i} {ns} {d!r}"
    return f"{name} {body.hex()}"

def handshake(c, vector=(), members=()):
    dn = os.urandom(32)
    c.send(frame(0x40, hello_body(ME, f"127.0.0.1:{PORT+100}", dn)))
    k, b = c.recv(); assert k == 0x41, describe(k, b)
    v, them, addr, an = parse_hello(b); print(f"PeerWelcome: version {v} actor {them} addr {addr}")
    vec = struct.pack(">H", len(vector)) + b"".join(struct.pack(">HQ", a, n) for a, n in vector)
    mem = struct.pack(">H", len(members)) + b"".join(struct.pack(">H", a) + str16(ad) for a, ad in members)
    c.send(frame(0x45, proof(b"D", dn, an, ME, them) + vec + mem))
    k, b = c.recv(); assert k == 0x46, describe(k, b)
    p, vec, mem = parse_proof(b)
    ok = hmac.compare_digest(p, proof(b"A", dn, an, ME, them))
    print(f"PeerAccept: proof {'valid' if ok else 'INVALID'} vector {vec} members {mem}")
    return them

def drain(c, secs):
    c.s.settimeout(secs); out = []
    try:
        while True: k, b = c.recv(); out.append((k, b)); print("  <-", describe(k, b))
    except (socket.timeout, TimeoutError): pass
    except EOFError as e: print("  <- EOF"); out.append((None, None))
    c.s.settimeout(3); return out

def peer_event(counter, actor, ns, data, parent=(0, 0), ts=1700000000000):
    return frame(0x42, struct.pack(">QH", counter, actor) + struct.pack(">QH", *parent) + struct.pack(">Q", ts) + str16(ns) + struct.pack(">I", len(data)) + data)

if __name__ == "__main__":
    c = Conn(); them = handshake(c)
    print("after the handshake, before any credit from us:"); drain(c, 1.0)
    c.send(frame(0x43, struct.pack(">I", 16)))
    print("after our PeerCredit 16:"); drain(c, 1.0)
    c.send(peer_event(1, ME, "/peer/x", b"from-fake-peer"))
    print("after our PeerEvent 1.%d:" % ME); drain(c, 1.5)
