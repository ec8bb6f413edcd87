"""Attack (needs write access to the data directory; attack round 17): damage one file of a data
directory at a time and start the server on it.

Builds a small data directory (segments of 4 KiB: sealed segments with their .idx, .nsx, .eix
and .pix files, a group with parked events, a purge, idempotent produces), stops the server,
then for every file and every kind of damage (a flipped bit, a 4-byte word overwritten, a
truncation, random garbage, random bytes appended, an empty file) REPEATS times: copies the
directory, damages the file, starts `flo` on the copy (bounded: 5 s to listen) and, when it
starts, runs the same queries as on the undamaged copy (trace, get, namespace listings, consumes
of one namespace and of a glob). Prints every start that panicked, hung or did not stop on
SIGTERM, and every query whose exit code or output differs from the undamaged directory's.

usage: data_dir_damage.py [REPEATS] [SEED]   (FLO_BIN / FLO_CLIENT_BIN override the binaries)"""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FLO = os.environ.get("FLO_BIN", os.path.join(ROOT, "target", "release", "flo"))
CLIENT = os.environ.get("FLO_CLIENT_BIN", os.path.join(ROOT, "target", "release", "flo-client"))
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
QUERIES = [["trace", "5.1"], ["trace", "150.1"], ["get", "3.1", "100.1"],
           ["namespaces", "/**"], ["namespaces", "/ns/1*"], ["consume", "-n", "/ns/7"],
           ["consume", "-n", "/many/a", "--limit", "3", "--from", "150.1"],
           ["consume", "-n", "/ns/**", "--from", "beginning"]]


def start(data_dir, extra=()):
    """The server and its port, or (server, None) when it exited or did not listen in 5 s."""
    proc = subprocess.Popen([FLO, "-d", data_dir, "-p", "0", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.set_blocking(proc.stderr.fileno(), False)
    text = b""
    deadline = time.time() + 5
    while time.time() < deadline:
        text += proc.stderr.read() or b""
        if b" listening on " in text:
            line = text.split(b" listening on ")[1].split(b",")[0]
            return proc, line.rsplit(b":", 1)[1].decode(), text
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    return proc, None, text


def stop(proc):
    """SIGTERM, then the verdict: 'stopped', or 'killed' when it did not stop within 5 s."""
    if proc.poll() is not None:
        return "exited"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
        return "stopped"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "killed"


def client(port, *args, stdin=None):
    return subprocess.run([CLIENT, "-p", port, *args], input=stdin, capture_output=True,
                          timeout=30)


def build(data_dir):
    proc, port, text = start(data_dir, ["--segment-size", "4096"])
    assert port, text
    lines = "".join(f"line {i}\n" for i in range(1, 201)).encode()
    client(port, "produce", "-n", "/many/a", "--reconnect-attempts", "2", "-q", stdin=lines)
    for i in range(1, 31):
        client(port, "produce", "-n", f"/ns/{i}", "-d", f"v{i}", "-q")
    client(port, "groups", "create", "g1", "-n", "/ns/**")
    client(port, "consume", "--group", "g1", "-n", "/ns/**", "--exec", "exit 1")
    client(port, "purge", "-n", "/x/**", "--before", "7d")
    # A trace makes the sealed segments' trace indexes (.eix, .pix).
    client(port, "trace", "5.1")
    stop(proc)


def answers(data_dir):
    proc, port, text = start(data_dir)
    if port is None:
        verdict = stop(proc)
        return None, text.decode(errors="replace"), verdict
    try:
        return [client(port, *q) for q in QUERIES], text.decode(errors="replace"), None
    finally:
        verdict = stop(proc)
        proc.stderr.read()
        if verdict == "killed":
            print("!! did not stop on SIGTERM", data_dir)


def damage(data, kind):
    data = bytearray(data)
    if kind == "flip" and data:
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    elif kind == "word" and data:
        i = rng.randrange(len(data))
        data[i:i + 4] = rng.randbytes(4)
    elif kind == "truncate" and data:
        data = data[:rng.randrange(len(data))]
    elif kind == "garbage":
        data = bytearray(rng.randbytes(rng.randrange(1, 200)))
    elif kind == "extend":
        data += rng.randbytes(rng.randrange(1, 64))
    elif kind == "empty":
        data = bytearray()
    return bytes(data)


def main():
    work = tempfile.mkdtemp(prefix="attack17-")
    try:
        base = os.path.join(work, "base")
        build(base)
        reference, _, _ = answers(shutil.copytree(base, os.path.join(work, "ref")))
        names = sorted(f for f in os.listdir(base) if f != "flo.lock")
        tally = {}
        for name in names:
            for kind in ["flip", "word", "truncate", "garbage", "extend", "empty"]:
                for _ in range(REPEATS):
                    copy = os.path.join(work, "copy")
                    shutil.rmtree(copy, ignore_errors=True)
                    shutil.copytree(base, copy)
                    path = os.path.join(copy, name)
                    with open(path, "rb") as f:
                        data = f.read()
                    with open(path, "wb") as f:
                        f.write(damage(data, kind))
                    got, text, verdict = answers(copy)
                    if "panicked" in text:
                        print("!! panic", name, kind, text[-400:])
                    if got is None:
                        key = (name, "refused" if verdict == "exited" else "HANG")
                        tally[key] = tally.get(key, 0) + 1
                        continue
                    tally[(name, "started")] = tally.get((name, "started"), 0) + 1
                    # Derived files (indexes) must give the same answers; a damaged segment
                    # or journal may lose its torn tail, which start-up cuts and logs.
                    derived = name.endswith((".idx", ".nsx", ".eix", ".pix"))
                    for query, want, have in zip(QUERIES, reference, got):
                        same = (want.returncode, want.stdout) == (have.returncode, have.stdout)
                        if derived and not same:
                            print("!! differs", name, kind, query, have.returncode,
                                  have.stderr[:200])
        for key in sorted(tally):
            print(*key, tally[key])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
