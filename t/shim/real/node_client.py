#!/usr/bin/env python3
"""node_client.py: checks t/shim/real/node_server.js from 40 threads.

    node_client.py PORT DIR ROUNDS

Each thread, ROUNDS times: one file of DIR through /f/ (sha256 against the
file) and one key through /k/ (against hashlib's pbkdf2).  Prints
"node: N requests right, rps=R" and exits 0 when every answer is right."""
import hashlib
import http.client
import os
import sys
import threading
import time


def main():
    port, d, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    names = sorted(n for n in os.listdir(d) if os.path.isfile(os.path.join(d, n)))[:50]
    want = {n: hashlib.sha256(open(os.path.join(d, n), "rb").read()).hexdigest() for n in names}
    bad, done = [], [0]
    lock = threading.Lock()

    def worker(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for r in range(rounds):
            n = names[(k * rounds + r) % len(names)]
            c.request("GET", "/f/" + n)
            body = c.getresponse().read()
            fok = hashlib.sha256(body).hexdigest() == want[n]
            text = "t%d-%d" % (k, r)
            c.request("GET", "/k/" + text)
            got = c.getresponse().read().decode().strip()
            kok = got == hashlib.pbkdf2_hmac("sha256", text.encode(), b"netpoll", 1000, 32).hex()
            with lock:
                done[0] += 2
                if not fok:
                    bad.append(("file", k, r, n, len(body)))
                if not kok:
                    bad.append(("key", k, r, got[:16]))
        c.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(40)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    el = time.monotonic() - t0
    if bad or done[0] != 40 * rounds * 2:
        print("node: %d requests, %d wrong: %s" % (done[0], len(bad), bad[:5]))
        return 1
    print("node: %d requests right, rps=%d" % (done[0], done[0] / el))
    return 0


if __name__ == "__main__":
    sys.exit(main())
