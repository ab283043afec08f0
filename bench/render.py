#!/usr/bin/env python3
"""bench/render.py - RESULTS.md and PNG plots from bench/run.sh's TSVs.

Usage: python3 bench/render.py DIR [--no-plots]
       python3 bench/render.py DIR --headline   (its headline table, on stdout)

Reads DIR/*.tsv (tab-separated, a header line first; a missing file or
column is a missing section or figure), writes DIR/RESULTS.md (the
machine, ratios first, absolute figures second) and, unless --no-plots,
DIR/NAME.gnuplot and DIR/NAME.png for every plot that has data (gnuplot,
pngcairo 800x500, log x axis: the cost as the connections grow).  The
standard library only.

The TSVs (columns; times in microseconds, memory in KiB):
  machine    key value           date cpu cores kernel memory mode window_s
                                 repeat load_at_start load_at_end
  echo       server conns rps p50_us p99_us cpu_us_req rss_kib_conn
             kstack_kib_conn kib_conn threads       (np epoll threads go)
  echo_load  server conns rate rps p50_us p99_us cpu_us_req
  ports      poller conns rps p99_us cpu_us_req   (echo_np, NP_POLLER)
  http       server conns rps p50_us p99_us                (np go goraw)
  legacy     kind server conns rps p99_us kib_conn rss_kib_conn
             kstack_kib_conn idle_kib_conn threads (echo|http; plain nprun
             go goraw)
  tls        mode cond_rt_ns pipe_rt_ns yield_rt_ns
  real       program mode threads rps note         (mode plain | nprun -p N)
  ratios     benchmark netpoll peer peer_value ratio better   (run.sh's table)
"""
import csv
import os
import subprocess
import sys

NAMES = {
    "np": "netpoll",
    "epoll": "epoll C",
    "threads": "threads C",
    "go": "Go",
    "goraw": "Go raw net",
}
ECHO_SERVERS = ["np", "epoll", "threads", "go"]
HTTP_SERVERS = ["np", "go", "goraw"]


def read(d, name):
    """Rows of DIR/name.tsv as dicts ([] when missing)."""
    p = os.path.join(d, name + ".tsv")
    if not os.path.exists(p):
        return []
    with open(p, newline="") as f:
        return [r for r in csv.DictReader(f, delimiter="\t") if any(r.values())]


def num(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x


def fmt_n(v):
    """A rate: 123, 12.3K, 1.23M."""
    x = num(v)
    if x is None:
        return "-"
    if x >= 1e6:
        return "%.2fM" % (x / 1e6)
    if x >= 1e4:
        return "%.1fK" % (x / 1e3)
    if x >= 1e3:
        return "%.2fK" % (x / 1e3)
    return "%.0f" % x


def fmt_us(v):
    x = num(v)
    if x is None or x < 0:
        return "-"
    if x >= 1e6:
        return "%.2f s" % (x / 1e6)
    if x >= 1e3:
        return "%.2f ms" % (x / 1e3)
    return "%.0f us" % x


def fmt_f(v, unit=""):
    x = num(v)
    if x is None:
        return "-"
    s = "%.1f" % x if abs(x) < 100 else "%.0f" % x
    return s + unit


def ratio(a, b):
    x, y = num(a), num(b)
    if x is None or y is None or y <= 0 or x < 0:
        return "-"
    return "%.2f" % (x / y)


def conns_of(rows):
    return sorted({int(r["conns"]) for r in rows if num(r.get("conns")) is not None})


def index(rows, *keys):
    """{(key values..., conns): row}"""
    return {tuple(r[k] for k in keys) + (int(r["conns"]),): r for r in rows}


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


# ---- ratio matrices: one row per (figure, peer), one column per count ----
def matrix(title, conns, lines, note=None):
    """lines: [(label, better, {conns: ratio})]; [] when no ratio at all."""
    lines = [ln for ln in lines if any(v != "-" for v in ln[2].values())]
    if not lines:
        return []
    out = ["", "### " + title, ""]
    if note:
        out += [note, ""]
    out += table(["ratio"] + ["%d conns" % c for c in conns] + ["better"],
                 [[lab] + [vals.get(c, "-") for c in conns] + [better]
                  for lab, better, vals in lines])
    return out


def echo_ratios(echo):
    if not echo:
        return []
    ix, cs = index(echo, "server"), conns_of(echo)
    lines = []
    for key, lab, better in [("rps", "requests/s", "higher"), ("p99_us", "p99 latency", "lower"),
                             ("cpu_us_req", "server CPU per request", "lower"),
                             ("kib_conn", "memory per connection", "lower")]:
        for peer in ["epoll", "threads", "go"]:
            if key == "kib_conn" and peer == "epoll":
                continue  # no memory of its own per connection: ~0 KiB, no ratio
            vals = {c: ratio(ix.get(("np", c), {}).get(key), ix.get((peer, c), {}).get(key))
                    for c in cs}
            lines.append(("%s, netpoll / %s" % (lab, NAMES[peer]), better, vals))
    return matrix("Echo server, closed loop, 512 B messages", cs, lines,
                  "netpoll's echo_np against the hand-written epoll server, a thread per "
                  "connection, and Go (go_echo); the same client, one after the other. "
                  "The epoll server keeps no memory of its own per connection (one scratch "
                  "buffer per thread): no memory ratio against it.")


def headline(d, procs):
    """The few ratios a reader wants first, one column per connection count."""
    echo, http, legacy = read(d, "echo"), read(d, "http"), read(d, "legacy")
    cs = sorted(set(conns_of(echo)) | set(conns_of(http)) | set(conns_of(legacy)))
    e, h, lg = index(echo, "server"), index(http, "server"), index(legacy, "kind", "server")

    def r(ix, a, b, key):
        return {c: ratio(ix.get(a + (c,), {}).get(key), ix.get(b + (c,), {}).get(key)) for c in cs}
    lines = []
    for peer in ["epoll", "threads", "go"]:
        lines.append(("echo requests/s, netpoll / %s" % NAMES[peer], "higher",
                      r(e, ("np",), (peer,), "rps")))
    for peer in ["epoll", "threads", "go"]:
        lines.append(("echo p99 latency, netpoll / %s" % NAMES[peer], "lower",
                      r(e, ("np",), (peer,), "p99_us")))
    for peer in ["threads", "go"]:
        lines.append(("memory per connection, netpoll / %s" % NAMES[peer], "lower",
                      r(e, ("np",), (peer,), "kib_conn")))
    lines.append(("HTTP requests/s, netpoll / Go net/http", "higher", r(h, ("np",), ("go",), "rps")))
    for kind in ["echo", "http"]:
        lines.append(("unmodified %s server, requests/s, nprun -p %s / plain" % (kind, procs), "higher",
                      r(lg, (kind, "nprun"), (kind, "plain"), "rps")))
    for kind in ["echo", "http"]:
        if any(row["server"] == "nprun-split" and row["kind"] == kind for row in legacy):
            lines.append(("unmodified %s server, requests/s, nprun / plain, split cores" % kind, "higher",
                          r(lg, (kind, "nprun-split"), (kind, "plain-split"), "rps")))
    lines.append(("unmodified echo server, memory per connection, nprun / plain", "lower",
                  r(lg, ("echo", "nprun"), ("echo", "plain"), "kib_conn")))
    return matrix("Headline", cs, lines)


def load_ratios(load):
    if not load:
        return []
    ix, cs = index(load, "server"), conns_of(load)
    rate = load[0].get("rate", "?")
    lines = []
    for key, lab in [("p99_us", "p99 latency"), ("cpu_us_req", "server CPU per request")]:
        for peer in ["epoll", "threads", "go"]:
            lines.append(("%s, netpoll / %s" % (lab, NAMES[peer]), "lower",
                          {c: ratio(ix.get(("np", c), {}).get(key), ix.get((peer, c), {}).get(key))
                           for c in cs}))
    return matrix("Echo server at a fixed load (%s requests/s offered to every server)" % rate,
                  cs, lines)


def http_ratios(http):
    if not http:
        return []
    ix, cs = index(http, "server"), conns_of(http)
    lines = []
    for key, lab, better in [("rps", "requests/s", "higher"), ("p99_us", "p99 latency", "lower")]:
        for peer in ["go", "goraw"]:
            lines.append(("%s, netpoll / %s" % (lab, NAMES[peer]), better,
                          {c: ratio(ix.get(("np", c), {}).get(key), ix.get((peer, c), {}).get(key))
                           for c in cs}))
    return matrix("HTTP keep-alive hello world (wrk -t2)", cs, lines,
                  "Go = net/http; Go raw net = net with the same hand-written parser as http_np.")


def legacy_ratios(legacy, procs):
    if not legacy:
        return []
    ix, cs = index(legacy, "kind", "server"), conns_of(legacy)
    lines = []
    split = any(r["server"].endswith("-split") for r in legacy)
    for x, lx in [("", "")] + ([("-split", ", split cores")] if split else []):
        for kind in ["echo", "http"]:
            for key, lab, better in [("rps", "requests/s", "higher"), ("p99_us", "p99 latency", "lower"),
                                     ("kib_conn", "memory per connection", "lower")]:
                peers = [("plain", "plain"), ("go", "Go")] + ([("epoll", "epoll C")] if kind == "echo" else [])
                for peer, pl in peers:
                    lines.append(("%s %s, nprun / %s%s" % (kind, lab, pl, lx), better,
                                  {c: ratio(ix.get((kind, "nprun" + x, c), {}).get(key),
                                            ix.get((kind, peer + x, c), {}).get(key)) for c in cs}))
    return matrix("Unmodified thread-per-connection servers: nprun -p %s against plain" % procs,
                  cs, lines,
                  "bench/legacy_echo.c and bench/legacy_http.c (pthreads, blocking calls, no "
                  "netpoll in them), the same binary plain and under nprun; Go beside them. "
                  "The client shares the cores with the server: a thread per connection "
                  "answers a request as soon as the kernel wakes its thread, its data still in "
                  "the cache, where green threads take requests in arrival order, on cold "
                  "caches at 10,000 connections, as the hand-written epoll server (epoll C) "
                  "does. \"Split cores\": each server on the "
                  "first half of the cores (nprun -p that many), its client on the other half, "
                  "as a server and its clients on separate machines.")


def real_rows(real):
    """[(program, plain row, nprun row)] in the order of the TSV."""
    progs, by = [], {}
    for r in real:
        if r["program"] not in by:
            progs.append(r["program"])
            by[r["program"]] = {}
        by[r["program"]]["plain" if r["mode"] == "plain" else "nprun"] = r
    return [(p, by[p].get("plain", {}), by[p].get("nprun", {})) for p in progs]


def real_table(real):
    if not real:
        return []
    mode = next((r["mode"] for r in real if r["mode"] != "plain"), "nprun")
    rows = []
    for p, a, b in real_rows(real):
        rows.append([p, a.get("threads", "-") or "-", b.get("threads", "-") or "-",
                     fmt_n(a.get("rps")), fmt_n(b.get("rps")), ratio(b.get("rps"), a.get("rps")),
                     (b.get("note") or a.get("note") or "")])
    return ["", "### Real Debian programs, unmodified: plain and under `%s`" % mode, ""] + \
        table(["program", "OS threads plain", "OS threads nprun", "rps plain", "rps nprun",
               "rps nprun / plain", "load"], rows)


def other_ratios(ratios):
    rows = [r for r in ratios
            if not r["benchmark"].startswith(("echo ", "http ", "io_uring: echo", "poll: echo"))]
    port = [r for r in ratios if r["benchmark"].startswith(("io_uring: echo", "poll: echo"))]
    out = []
    for title, rs in [("Runtime figures", rows), ("Poller ports (echo_np against its epoll port)", port)]:
        if not rs:
            continue
        out += ["", "### " + title, ""]
        out += table(["figure", "netpoll", "peer", "peer's figure", "ratio", "better"],
                     [[r["benchmark"], r["netpoll"], r["peer"], r["peer_value"], r["ratio"],
                       r["better"]] for r in rs])
    return out


# ---- absolute figures ------------------------------------------------------
def echo_abs(echo, legacy, procs):
    rows = []
    for r in echo:
        rows.append([NAMES.get(r["server"], r["server"]), r["conns"], fmt_n(r["rps"]),
                     fmt_us(r["p50_us"]), fmt_us(r["p99_us"]), fmt_f(r["cpu_us_req"], " us"),
                     fmt_f(r["rss_kib_conn"]), fmt_f(r["kstack_kib_conn"]), fmt_f(r["kib_conn"]),
                     r.get("threads") or "-"])
    for r in legacy:
        if r["kind"] != "echo" or r["server"] not in ("plain", "nprun", "plain-split", "nprun-split"):
            continue
        idle, ks = num(r.get("idle_kib_conn")), num(r.get("kstack_kib_conn"))
        rss = idle - max(ks, 0) if idle is not None and ks is not None else None
        rows.append([legacy_name(r["server"], "echo", procs), r["conns"], fmt_n(r["rps"]), "-",
                     fmt_us(r["p99_us"]), "-", fmt_f(rss), fmt_f(r["kstack_kib_conn"]),
                     fmt_f(r.get("idle_kib_conn")), r.get("threads") or "-"])
    if not rows:
        return []
    return ["", "### Echo, closed loop", "",
            "Memory per connection: the server's RSS with every connection open and idle, "
            "less its RSS before the client connected, plus the growth of the kernel's "
            "stacks (an OS thread's kernel stack is not in its RSS), over the connections. "
            "At 10 connections fixed costs dominate (a negative figure: the server "
            "returned memory meanwhile).", ""] + \
        table(["server", "conns", "rps", "p50", "p99", "CPU/req", "RSS KiB/conn",
               "kernel stack KiB/conn", "KiB/conn", "OS threads"], rows)


SPLIT_PROCS = "1"  # nprun -p of the split-core runs (machine.tsv split_procs)


def legacy_name(s, kind, procs):
    base, split = (s[:-6], True) if s.endswith("-split") else (s, False)
    name = {"plain": "legacy_%s, plain" % kind,
            "nprun": "legacy_%s, nprun -p %s" % (kind, SPLIT_PROCS if split else procs),
            "go": "Go net/http" if kind == "http" else "Go", "goraw": "Go raw net",
            "epoll": "epoll C (echo_epoll)"}[base]
    return name + (", split cores" if split else "")


def simple_abs(title, rows, cols):
    if not rows:
        return []
    return ["", "### " + title, ""] + table([c[0] for c in cols],
                                            [[f(r) for _, f in cols] for r in rows])


def absolutes(d, procs):
    echo, legacy = read(d, "echo"), read(d, "legacy")
    out = echo_abs(echo, legacy, procs)
    out += simple_abs("Echo at a fixed load", read(d, "echo_load"), [
        ("server", lambda r: NAMES.get(r["server"], r["server"])), ("conns", lambda r: r["conns"]),
        ("offered/s", lambda r: fmt_n(r["rate"])), ("rps", lambda r: fmt_n(r["rps"])),
        ("p50", lambda r: fmt_us(r["p50_us"])), ("p99", lambda r: fmt_us(r["p99_us"])),
        ("CPU/req", lambda r: fmt_f(r["cpu_us_req"], " us"))])
    out += simple_abs("Echo on each poller port (echo_np, NP_POLLER)", read(d, "ports"), [
        ("poller", lambda r: r["poller"]), ("conns", lambda r: r["conns"]),
        ("rps", lambda r: fmt_n(r["rps"])), ("p99", lambda r: fmt_us(r["p99_us"])),
        ("CPU/req", lambda r: fmt_f(r["cpu_us_req"], " us"))])
    out += simple_abs("HTTP keep-alive (wrk -t2)", read(d, "http"), [
        ("server", lambda r: NAMES.get(r["server"], r["server"])), ("conns", lambda r: r["conns"]),
        ("rps", lambda r: fmt_n(r["rps"])), ("p50", lambda r: fmt_us(r["p50_us"])),
        ("p99", lambda r: fmt_us(r["p99_us"]))])
    out += simple_abs("Unmodified thread-per-connection servers", legacy, [
        ("server", lambda r: legacy_name(r["server"], r["kind"], procs)),
        ("conns", lambda r: r["conns"]), ("rps", lambda r: fmt_n(r["rps"])),
        ("p99", lambda r: fmt_us(r["p99_us"])), ("KiB/conn (peak RSS + kernel stacks)",
                                                 lambda r: fmt_f(r["kib_conn"])),
        ("RSS KiB/conn", lambda r: fmt_f(r["rss_kib_conn"])),
        ("kernel stack KiB/conn", lambda r: fmt_f(r["kstack_kib_conn"])),
        ("OS threads (peak)", lambda r: r["threads"] or "-")])
    out += simple_abs("Two threads ping-pong (tls_switch; nprun -p 1 switches the TCB too), "
                      "ns per round trip", read(d, "tls"), [
                          ("mode", lambda r: r["mode"]), ("condvar", lambda r: r["cond_rt_ns"]),
                          ("pipe", lambda r: r["pipe_rt_ns"]), ("sched_yield", lambda r: r["yield_rt_ns"])])
    real = read(d, "real")
    out += simple_abs("Real programs", real, [
        ("program", lambda r: r["program"]), ("mode", lambda r: r["mode"]),
        ("OS threads (peak)", lambda r: r["threads"] or "-"), ("rps", lambda r: fmt_n(r["rps"])),
        ("load", lambda r: r.get("note") or "")])
    return out


# ---- plots -----------------------------------------------------------------
def series_echo(d, key, legacy_key, procs):
    echo, legacy = read(d, "echo"), read(d, "legacy")
    out = []
    for s in ECHO_SERVERS:
        pts = [(int(r["conns"]), num(r.get(key))) for r in echo if r["server"] == s]
        out.append((NAMES[s], pts))
    for s in ["plain", "nprun"]:
        pts = [(int(r["conns"]), num(r.get(legacy_key))) for r in legacy
               if r["kind"] == "echo" and r["server"] == s]
        out.append((legacy_name(s, "echo", procs), pts))
    return out


def series_http(d, key, procs):
    http, legacy = read(d, "http"), read(d, "legacy")
    out = [(NAMES[s] if s != "go" else "Go net/http",
            [(int(r["conns"]), num(r.get(key))) for r in http if r["server"] == s])
           for s in HTTP_SERVERS]
    for s in ["plain", "nprun"]:
        out.append((legacy_name(s, "http", procs),
                    [(int(r["conns"]), num(r.get(key))) for r in legacy
                     if r["kind"] == "http" and r["server"] == s]))
    return out


def color(label):
    """One colour per server in every plot."""
    for k, c in [("nprun", "#0060ad"), ("plain", "#7f7f7f"), ("netpoll", "#9400d3"),
                 ("epoll", "#009e73"), ("threads", "#56b4e9"), ("raw", "#c8a000"),
                 ("Go", "#e69f00")]:
        if k in label:
            return c
    return "#000000"


def plot(d, name, title, ylabel, series, logy=False, scale=1.0):
    """Writes d/name.gnuplot (the data inline) and runs gnuplot; True when
    there was something to plot."""
    series = [(lab, sorted((c, v * scale) for c, v in pts if v is not None and (v > 0 or not logy)))
              for lab, pts in series]
    series = [(lab, pts) for lab, pts in series if pts]
    if not series:
        return False
    g = ["# %s.gnuplot - made by bench/render.py from the TSVs beside it" % name,
         "set terminal pngcairo size 800,500 font ',10' noenhanced",
         "set output '%s.png'" % name,
         "set title '%s'" % title.replace("'", "''"),
         "set xlabel 'connections (log scale)'",
         "set ylabel '%s'" % ylabel,
         "set logscale x 10", "set xrange [5:20000]",
         "set grid", "set key below",
         "set format y '%g'"]
    if logy:
        g.append("set logscale y 10")
    else:
        g.append("set yrange [0:*]")
    for i, (lab, pts) in enumerate(series):
        g.append("$d%d << EOD" % i)
        g += ["%d %g" % p for p in pts]
        g.append("EOD")
    g.append("plot " + ", \\\n     ".join(
        "$d%d using 1:2 with linespoints lw 2 pt %d lc rgb '%s' title '%s'"
        % (i, 5 + i, color(lab), lab.replace("'", "''"))
        for i, (lab, _) in enumerate(series)))
    with open(os.path.join(d, name + ".gnuplot"), "w") as f:
        f.write("\n".join(g) + "\n")
    return True


def plots(d, procs, draw):
    made = []
    specs = [
        ("echo_rps", "Echo, closed loop: requests/s (higher is better)", "requests/s (thousands)",
         series_echo(d, "rps", "rps", procs), False, 1e-3),
        ("echo_p99", "Echo, closed loop: p99 latency (lower is better)", "p99 latency, ms (log scale)",
         series_echo(d, "p99_us", "p99_us", procs), True, 1e-3),
        ("memory", "Memory per held connection: RSS + kernel stacks (lower is better)",
         "KiB per connection", series_echo(d, "kib_conn", "idle_kib_conn", procs), False, 1.0),
        ("http_rps", "HTTP keep-alive: requests/s (higher is better)", "requests/s (thousands)",
         series_http(d, "rps", procs), False, 1e-3),
        ("http_p99", "HTTP keep-alive: p99 latency (lower is better)", "p99 latency, ms (log scale)",
         series_http(d, "p99_us", procs), True, 1e-3),
    ]
    for name, title, yl, ser, logy, scale in specs:
        if plot(d, name, title, yl, ser, logy, scale):
            made.append(name)
    if not draw:
        return made, None
    try:
        for name in made:
            subprocess.run(["gnuplot", name + ".gnuplot"], cwd=d, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return made, "gnuplot failed (%s): no PNGs" % e
    return made, None


CAPTIONS = {
    "echo_rps": "Echo requests/s against connections",
    "echo_p99": "Echo p99 latency against connections",
    "memory": "Memory per held connection against connections",
    "http_rps": "HTTP requests/s against connections",
    "http_p99": "HTTP p99 latency against connections",
}


def main(argv):
    if len(argv) < 2 or argv[1].startswith("-"):
        sys.stderr.write("usage: render.py DIR [--no-plots]\n")
        return 2
    d = argv[1]
    draw = "--no-plots" not in argv[2:]
    m = {r["key"]: r["value"] for r in read(d, "machine")}
    legacy = read(d, "legacy")
    procs = m.get("nprun_procs", "2")
    global SPLIT_PROCS
    SPLIT_PROCS = m.get("split_procs", SPLIT_PROCS)
    if "--headline" in argv[2:]:
        print("\n".join(headline(d, procs)[3:]))
        return 0
    made, err = plots(d, procs, draw)
    md = ["# netpoll benchmark results", "",
          "Machine: %s, %s cores, %s, %s." % (m.get("cpu", "?"), m.get("cores", "?"),
                                              m.get("memory", "?"), m.get("kernel", "?")),
          "Run: %s, %s mode, %s s windows, best of %s; load average %s at the start, %s at the end."
          % (m.get("date", "?"), m.get("mode", "?"), m.get("window_s", "?"), m.get("repeat", "1"),
             m.get("load_at_start", "?"), m.get("load_at_end", "?")),
          "",
          "netpoll and every peer run back to back on this machine in one run of "
          "`bench/run.sh` (`make bench`). The machine is shared and noisy: read the ratios, "
          "not the absolute figures. From run to run single ratios move by 5-10% on a quiet "
          "machine, by 20% or more on a loaded one (the load average above; more cores busy "
          "than the machine has) and at 10,000 connections, where the client shares the cores "
          "with the server. The figures are in the "
          "`.tsv` files beside this one, the whole log in `run.txt`.",
          "", "## Ratios"]
    md += headline(d, procs)
    md += echo_ratios(read(d, "echo"))
    md += load_ratios(read(d, "echo_load"))
    md += http_ratios(read(d, "http"))
    md += legacy_ratios(legacy, procs)
    md += real_table(read(d, "real"))
    md += other_ratios(read(d, "ratios"))
    md += ["", "## Absolute figures"]
    md += absolutes(d, procs)
    md += ["", "## Plots", ""]
    if err:
        md += [err, ""]
    for name in made:
        if draw and not err:
            md += ["![%s](%s.png)" % (CAPTIONS[name], name), ""]
        else:
            md += ["`%s.gnuplot` (not drawn)" % name, ""]
    with open(os.path.join(d, "RESULTS.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
