"""Concurrent urllib GETs, every body checked against a sha256sum manifest.

    python3 http_client.py BASE_URL MANIFEST REQUESTS CONCURRENCY [RAMP_MS]

MANIFEST is the output of `sha256sum` run in the served directory
("HASH  ./path" lines).  Request i fetches file i modulo their number.  The
first CONCURRENCY requests start RAMP_MS (default 1) milliseconds apart: a
server that listens with a short backlog (http.server's is 5) drops the SYNs
of a burst, and their retransmissions (1 s, 3 s, 7 s, ...) come back in
bursts again, which on a loaded machine can take a minute to get through.
Prints "requests=N failed=F bytes=B seconds=T rps=X"; exit 0 when every
response was 200 with the right body, 1 otherwise.
"""
import concurrent.futures
import hashlib
import sys
import time
import urllib.parse
import urllib.request


def get(url, want, delay=0.0):
    if delay:
        time.sleep(delay)
    with urllib.request.urlopen(url, timeout=60) as r:
        if r.status != 200:
            raise ValueError(f"{url}: status {r.status}")
        body = r.read()
    if hashlib.sha256(body).hexdigest() != want:
        raise ValueError(f"{url}: body of {len(body)} bytes, wrong sha256")
    return len(body)


def main():
    base, manifest, n, c = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ramp = (float(sys.argv[5]) if len(sys.argv) > 5 else 1.0) / 1000
    files = []
    with open(manifest) as f:
        for line in f:
            h, p = line.rstrip("\n").split(None, 1)
            p = p.lstrip("*")
            if p.startswith("./"):
                p = p[2:]
            files.append((base.rstrip("/") + "/" + urllib.parse.quote(p), h))
    t0 = time.monotonic()
    failed = 0
    total = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=c) as ex:
        futs = [ex.submit(get, *files[i % len(files)], i * ramp if i < c else 0.0)
                for i in range(n)]
        for fu in concurrent.futures.as_completed(futs):
            try:
                total += fu.result()
            except Exception as e:
                failed += 1
                if failed <= 3:
                    print(f"error: {e!r}", flush=True)
    dt = time.monotonic() - t0
    print(f"requests={n} failed={failed} bytes={total} seconds={dt:.2f} rps={n / dt:.0f}",
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
