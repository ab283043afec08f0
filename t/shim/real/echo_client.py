"""Checksummed echo client for the servers of t/shim/real/run.sh.

    python3 echo_client.py PORT CONNS [--hold | --concurrency C] [--rounds R]
                           [--size BYTES] [--pid SERVER_PID]

--hold opens all CONNS connections first and keeps them open while every one
echoes ROUNDS random messages (checked by SHA-256); once all are open and
have echoed once it prints connections_open=N and, with --pid, the server's
os_threads=K (Threads: of /proc/PID/status) and children=M (its child
processes).  --concurrency C runs CONNS connections C at a time instead,
each opening, echoing ROUNDS messages, closing.  Prints
"echoes=E seconds=T rps=X" and exits 0 when every echo matched, 1 otherwise.
"""
import argparse
import concurrent.futures
import hashlib
import os
import socket
import sys
import time

TIMEOUT = 30


def status_threads(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def children(pid):
    n = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                n += len(f.read().split())
    except OSError:
        return -1
    return n


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n):
    chunks = []
    while n > 0:
        b = s.recv(min(n, 65536))
        if not b:
            raise ConnectionError("connection closed before the whole echo came back")
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def payload(size):
    n = 1 + int.from_bytes(os.urandom(2), "little") % size
    return os.urandom(n)


def check(got, sent, what):
    if hashlib.sha256(got).digest() != hashlib.sha256(sent).digest():
        raise ValueError(f"{what}: echo of {len(sent)} bytes differs (sha256)")


def one_conn(port, rounds, size):
    s = connect(port)
    try:
        for r in range(rounds):
            msg = payload(size)
            s.sendall(msg)
            check(recv_exact(s, len(msg)), msg, f"round {r}")
    finally:
        s.close()
    return rounds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("conns", type=int)
    ap.add_argument("--hold", action="store_true")
    ap.add_argument("--concurrency", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--pid", type=int, default=0)
    a = ap.parse_args()
    t0 = time.monotonic()
    echoes = 0
    if a.hold:
        socks = []
        try:
            for _ in range(a.conns):
                socks.append(connect(a.port))
            for r in range(a.rounds):
                msgs = []
                for s in socks:   # <= size bytes each: fits the socket buffers
                    m = payload(a.size)
                    s.sendall(m)
                    msgs.append(m)
                for i, (s, m) in enumerate(zip(socks, msgs)):
                    check(recv_exact(s, len(m)), m, f"connection {i} round {r}")
                    echoes += 1
                if r == 0:
                    print(f"connections_open={len(socks)}", flush=True)
                    if a.pid:
                        print(f"os_threads={status_threads(a.pid)}", flush=True)
                        print(f"children={children(a.pid)}", flush=True)
        except Exception as e:
            print(f"error after {len(socks)} connections, {echoes} echoes: {e!r}", flush=True)
            return 1
        finally:
            for s in socks:
                s.close()
    else:
        c = a.concurrency or 1
        failures = 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=c) as ex:
            futs = [ex.submit(one_conn, a.port, a.rounds, a.size) for _ in range(a.conns)]
            for f in concurrent.futures.as_completed(futs):
                try:
                    echoes += f.result()
                except Exception as e:
                    failures += 1
                    if failures <= 3:
                        print(f"error: {e!r}", flush=True)
        if failures:
            print(f"{failures} of {a.conns} connections failed", flush=True)
            return 1
    dt = time.monotonic() - t0
    print(f"echoes={echoes} seconds={dt:.2f} rps={echoes / dt:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
