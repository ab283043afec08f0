"""Python's ctypes against libnetpoll.so.1, as a Python program would use it.

Loaded with no GLIBC_TUNABLES (the library's TLS must not need static TLS
to spare), it starts the runtime, runs green threads whose entry points are
Python callbacks, and serves a TCP echo from a green thread (np_accept,
np_read, np_write through the ABI) to a client on an OS thread.

One worker, and one callback parked at a time: a callback runs on the
Python thread state of the worker's OS thread, and a second callback that
parked while the first one is parked would interleave two frame stacks on
one thread state (netpoll(7), FFI languages).

usage: python3 ffi_echo.py PATH/libnetpoll.so.1
"""
import ctypes
import os
import socket
import sys
import threading

ROUNDS = 200
CONNS = 3


def main():
    if os.environ.get("GLIBC_TUNABLES"):
        print("ffi_echo: run it without GLIBC_TUNABLES")
        return 1
    lib = ctypes.CDLL(sys.argv[1] if len(sys.argv) > 1 else "libnetpoll.so.1")

    class Config(ctypes.Structure):
        _fields_ = [("size", ctypes.c_size_t), ("procs", ctypes.c_int),
                    ("stack_size", ctypes.c_size_t), ("poller", ctypes.c_char_p),
                    ("flags", ctypes.c_uint)]

    class Stats(ctypes.Structure):
        _fields_ = [("size", ctypes.c_size_t)] + [(n, ctypes.c_uint64) for n in (
            "threads", "runnable", "parked", "workers", "spawned", "switches", "poll_waiters",
            "descriptors", "timers", "stack_bytes", "alloc_bytes", "polls", "handoffs",
            "alloc_count", "moves")]

    fd_p = ctypes.c_void_p
    MAIN_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
    GO_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    SPAWN_FN = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
    lib.np_init.argtypes = [ctypes.POINTER(Config)]
    lib.np_main.argtypes = [MAIN_FN, ctypes.c_void_p]
    lib.np_go.argtypes = [GO_FN, ctypes.c_void_p]
    lib.np_spawn.argtypes = [ctypes.POINTER(ctypes.c_void_p), SPAWN_FN, ctypes.c_void_p]
    lib.np_join.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.np_in_green.restype = ctypes.c_int
    lib.np_now.restype = ctypes.c_int64
    lib.np_sleep.argtypes = [ctypes.c_int64]
    lib.np_open.argtypes = [ctypes.c_int, ctypes.POINTER(fd_p)]
    lib.np_close.argtypes = [fd_p]
    lib.np_accept.argtypes = [fd_p, ctypes.POINTER(fd_p), ctypes.c_void_p, ctypes.c_void_p]
    lib.np_read.argtypes = [fd_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.np_read.restype = ctypes.c_ssize_t
    lib.np_write.argtypes = [fd_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.np_write.restype = ctypes.c_ssize_t
    lib.np_set_deadline.argtypes = [fd_p, ctypes.c_int64, ctypes.c_int]
    lib.np_stats_get.argtypes = [ctypes.POINTER(Stats)]

    cfg = Config(ctypes.sizeof(Config), 1, 1 << 20, None, 0)
    rc = lib.np_init(ctypes.byref(cfg))
    if rc != 0:
        print("ffi_echo: np_init:", rc)
        return 1
    if lib.np_go(ctypes.cast(None, GO_FN), None) != -22:  # NULL entry: -EINVAL, no crash
        print("ffi_echo: np_go(NULL) did not return -EINVAL")
        return 1

    # Green threads with Python entry points: detached (np_go), and joined
    # (np_spawn + np_join); none of them parks.
    seen = []
    go_cb = GO_FN(lambda arg: seen.append(("go", arg, lib.np_in_green())))
    spawn_cb = SPAWN_FN(lambda arg: (arg or 0) * 2)
    for i in range(1, 11):
        if lib.np_go(go_cb, i) != 0:
            print("ffi_echo: np_go failed")
            return 1
    t = ctypes.c_void_p()
    res = ctypes.c_void_p()
    if lib.np_spawn(ctypes.byref(t), spawn_cb, 21) != 0 or lib.np_join(t, ctypes.byref(res)) != 0 \
            or res.value != 42:
        print("ffi_echo: np_spawn/np_join:", res.value)
        return 1

    # The echo server: one green thread (np_main's entry) serving CONNS
    # connections one after the other; the client is this process's OS
    # thread, with Python's own blocking sockets.
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    port = ls.getsockname()[1]
    served = []

    def serve(arg):
        lpd = fd_p()
        if lib.np_open(ls.detach(), ctypes.byref(lpd)) != 0:
            return 1
        buf = ctypes.create_string_buffer(4096)
        for _ in range(CONNS):
            c = fd_p()
            if lib.np_accept(lpd, ctypes.byref(c), None, None) != 0:
                return 2
            lib.np_set_deadline(c, lib.np_now() + 30 * 10**9, 3)
            total = 0
            while True:
                n = lib.np_read(c, buf, len(buf))
                if n <= 0:
                    break
                if lib.np_write(c, buf, n) != n:
                    return 3
                total += n
            served.append(total)
            lib.np_close(c)
        lib.np_close(lpd)
        return 0 if lib.np_in_green() == 1 else 4

    errors = []

    def client():
        try:
            for k in range(CONNS):
                with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                    for i in range(ROUNDS):
                        msg = b"%d:%d:" % (k, i) + b"x" * (i % 97)
                        s.sendall(msg)
                        got = b""
                        while len(got) < len(msg):
                            part = s.recv(len(msg) - len(got))
                            if not part:
                                raise RuntimeError("closed early")
                            got += part
                        if got != msg:
                            raise RuntimeError("echo differs")
        except Exception as e:  # reported below
            errors.append(repr(e))

    th = threading.Thread(target=client)
    th.start()
    main_cb = MAIN_FN(serve)
    rc = lib.np_main(main_cb, None)
    th.join(60)
    if rc != 0 or errors or len(served) != CONNS:
        print("ffi_echo: np_main returned %d, client: %s, served %s" % (rc, errors, served))
        return 1

    # The detached threads have run by now (one worker, queued before).
    deadline = lib.np_now() + 5 * 10**9
    while len(seen) < 10 and lib.np_now() < deadline:
        lib.np_sleep(1000000)
    st = Stats(ctypes.sizeof(Stats))
    if len(seen) != 10 or any(g != 1 for _, _, g in seen) or lib.np_stats_get(ctypes.byref(st)) != 0 \
            or st.spawned < 12 or st.workers != 1:
        print("ffi_echo: detached threads %d, spawned %d, workers %d" % (len(seen), st.spawned, st.workers))
        return 1
    print("ffi_echo: ctypes, no tunable: %d green threads, echo of %d round trips on %d connections: ok"
          % (st.spawned, ROUNDS * CONNS, CONNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
