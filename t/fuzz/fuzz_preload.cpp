// Interposed calls with the preload shim in effect: pipes and stream
// socket pairs made, dup'd, dup2'd over, closed, their O_NONBLOCK turned on
// and off (fcntl, ioctl) and SO_RCVTIMEO set, written, read (a read that
// would block runs out its timeout, or is woken by a thread that writes a
// moment later) and polled.  Plain libc calls only: run plainly, the
// kernel answers; run under nprun, the shim must answer exactly the same.
// Each result is checked against a model of the pipes, and no descriptor
// may be left open.  Built without ASan (the shim is not), run under
// nprun by t/fuzz/run.sh.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.hpp"

using fuzz::fail;
using fuzz::Input;

namespace {

constexpr int kFds = 16;
constexpr int kPipes = 16;
constexpr size_t kMaxPending = 1 << 15; // far below the buffers' size: a write never waits

struct Chan {
    uint64_t wr = 0, rd = 0; // stream positions; byte p is p % 251
};

// A pipe (end 0 reads, end 1 writes) or a socket pair (each end both).
struct Pipe {
    bool sock = false;
    Chan ch[2];               // what end e reads: ch[e] (a pipe: ch[0])
    int refs[2] = {0, 0};     // descriptors of each end
    bool nonblock[2] = {};    // O_NONBLOCK of each end's open file
    int64_t rcvtimeo[2] = {}; // SO_RCVTIMEO of each end's socket, us
    bool reads(int e) const { return sock || e == 0; }
    bool writes(int e) const { return sock || e == 1; }
    Chan &in(int e) { return ch[sock ? e : 0]; }       // read by end e
    Chan &out(int e) { return ch[sock ? 1 - e : 0]; }  // written by end e
};

struct Desc {
    int fd = -1;
    int pipe = -1;
    int end = 0;
};

struct State {
    Input in;
    Pipe pipes[kPipes];
    int npipes = 0;
    Desc fds[kFds];
};

bool trace = getenv("FUZZ_TRACE");

void check(bool ok, const char *what, long r, int err) {
    if (trace) fprintf(stderr, "  %s: %ld (%s)\n", what, r, r < 0 ? strerror(err) : "");
    if (!ok) fail("%s returned %ld (%s)", what, r, r < 0 ? strerror(err) : "-");
}

int free_desc(State *st) {
    for (int k = 0; k < kFds; k++)
        if (st->fds[k].fd < 0) return k;
    return -1;
}

Desc *pick(State *st) {
    int k = st->in.below(kFds);
    for (int t = 0; t < kFds; t++, k = (k + 1) % kFds)
        if (st->fds[k].fd >= 0) return &st->fds[k];
    return nullptr;
}

Desc *by_fd(State *st, int fd) {
    for (Desc &d : st->fds)
        if (d.fd == fd) return &d;
    return nullptr;
}

void forget(State *st, Desc *d) {
    st->pipes[d->pipe].refs[d->end]--;
    *d = Desc{};
    (void)st;
}

// A new number for the same open file.
void adopt(State *st, int k, int fd, const Desc &from) {
    st->fds[k] = Desc{fd, from.pipe, from.end};
    st->pipes[from.pipe].refs[from.end]++;
}

void op_pipe(State *st) {
    int a = free_desc(st), b = a + 1;
    if (a < 0 || st->npipes == kPipes) return;
    while (b < kFds && st->fds[b].fd >= 0) b++;
    if (b == kFds) return;
    bool nb = st->in.flip(), sock = st->in.flip();
    int p[2];
    int r = sock ? socketpair(AF_UNIX, SOCK_STREAM | (nb ? SOCK_NONBLOCK : 0), 0, p) : pipe2(p, nb ? O_NONBLOCK : 0);
    check(r == 0, sock ? "socketpair" : "pipe2", r, errno);
    // Room for kMaxPending in any pieces (a socket's counts their overhead).
    int big = 1 << 20;
    if (!sock) fcntl(p[1], F_SETPIPE_SZ, big);
    for (int k = 0; sock && k < 2; k++) setsockopt(p[k], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    int id = st->npipes++;
    Pipe &pp = st->pipes[id];
    pp = Pipe{};
    pp.sock = sock;
    pp.nonblock[0] = pp.nonblock[1] = nb;
    pp.refs[0] = pp.refs[1] = 1;
    st->fds[a] = Desc{p[0], id, 0};
    st->fds[b] = Desc{p[1], id, 1};
}

void op_dup(State *st) {
    Desc *d = pick(st);
    int k = free_desc(st);
    if (!d || k < 0) return;
    int r;
    switch (st->in.below(3)) {
    case 0: r = dup(d->fd); break;
    case 1: r = fcntl(d->fd, F_DUPFD, 200 + int(st->in.below(32))); break;
    default: r = fcntl(d->fd, F_DUPFD_CLOEXEC, 0); break;
    }
    check(r >= 0, "dup", r, errno);
    adopt(st, k, r, *d);
}

void op_dup2(State *st) {
    Desc *d = pick(st);
    if (!d) return;
    Desc from = *d;
    bool bad_old = st->in.below(6) == 0;
    int old = bad_old ? 100000 + int(st->in.below(100)) : from.fd;
    int nfd;
    Desc *over = nullptr;
    if (st->in.flip()) {
        over = pick(st);
        if (!over) return;
        nfd = over->fd;
    } else {
        nfd = 300 + int(st->in.below(16));
        if (fcntl(nfd, F_GETFD) >= 0 && !by_fd(st, nfd)) return; // someone else's
        over = by_fd(st, nfd);
        if (!over && free_desc(st) < 0) return;
    }
    bool three = st->in.flip();
    int r = three ? dup3(old, nfd, O_CLOEXEC) : dup2(old, nfd);
    int e = errno;
    const char *name = three ? "dup3" : "dup2";
    if (bad_old) return check(r == -1 && e == EBADF, name, r, e);
    if (old == nfd) {
        if (three) check(r == -1 && e == EINVAL, "dup3(same)", r, e);
        else check(r == nfd, "dup2(same)", r, e);
        return;
    }
    check(r == nfd, name, r, e);
    if (over) forget(st, over);
    int k = free_desc(st);
    if (k < 0) fail("no room");
    adopt(st, k, nfd, from);
}

void op_close(State *st) {
    if (st->in.below(8) == 0) {
        int r = close(-1 - int(st->in.below(4)));
        check(r == -1 && errno == EBADF, "close(bad)", r, errno);
        return;
    }
    Desc *d = pick(st);
    if (!d) return;
    int r = close(d->fd);
    check(r == 0, "close", r, errno);
    forget(st, d);
}

void op_nonblock(State *st) {
    Desc *d = pick(st);
    if (!d) return;
    bool on = st->in.flip();
    int r;
    if (st->in.flip()) {
        int fl = fcntl(d->fd, F_GETFL);
        check(fl >= 0, "F_GETFL", fl, errno);
        r = fcntl(d->fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
    } else {
        int v = on;
        r = ioctl(d->fd, FIONBIO, &v);
    }
    check(r == 0, "set O_NONBLOCK", r, errno);
    st->pipes[d->pipe].nonblock[d->end] = on;
}

// SO_RCVTIMEO is the socket's: what is set through one descriptor holds
// for its dups.
void op_timeout(State *st) {
    Desc *d = pick(st);
    if (!d || !st->pipes[d->pipe].sock) return;
    int64_t us = st->in.below(3) ? 0 : 1000 + 1000 * int64_t(st->in.below(3));
    struct timeval tv = {0, suseconds_t(us)};
    int r = setsockopt(d->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    check(r == 0, "setsockopt(SO_RCVTIMEO)", r, errno);
    st->pipes[d->pipe].rcvtimeo[d->end] = us;
}

void op_getfl(State *st) {
    Desc *d = pick(st);
    if (!d) return;
    int fl = fcntl(d->fd, F_GETFL);
    check(fl >= 0 && bool(fl & O_NONBLOCK) == st->pipes[d->pipe].nonblock[d->end], "F_GETFL", fl, errno);
}

char buf[1 << 16];

void op_write(State *st) {
    Desc *d = pick(st);
    if (!d) return;
    Pipe &p = st->pipes[d->pipe];
    size_t n = st->in.below(2) ? 1 + st->in.below(64) : 1 + st->in.u16() % 8192;
    if (!p.writes(d->end)) {
        ssize_t r = write(d->fd, buf, n);
        return check(r == -1 && errno == EBADF, "write(read end)", r, errno);
    }
    Chan &c = p.out(d->end);
    if (c.wr - c.rd + n > kMaxPending) return;
    for (size_t b = 0; b < n; b++) buf[b] = char((c.wr + b) % 251);
    ssize_t r = write(d->fd, buf, n);
    if (!p.refs[1 - d->end]) return check(r == -1 && errno == EPIPE, "write(no reader)", r, errno);
    check(r == ssize_t(n), "write", r, errno);
    c.wr += n;
}

struct Later {
    int fd;
    size_t n;
    uint64_t at;
    int64_t delay_us;
};

void *write_later(void *a) {
    auto *l = static_cast<Later *>(a);
    struct timespec ts = {0, long(l->delay_us) * 1000};
    nanosleep(&ts, nullptr);
    static char b[256];
    for (size_t k = 0; k < l->n; k++) b[k] = char((l->at + k) % 251);
    ssize_t r = write(l->fd, b, l->n);
    check(r == ssize_t(l->n), "write(later)", r, errno);
    return nullptr;
}

void op_read(State *st) {
    Desc *d = pick(st);
    if (!d) return;
    Pipe &p = st->pipes[d->pipe];
    size_t n = 1 + (st->in.below(2) ? st->in.below(64) : st->in.u16() % 8192);
    if (!p.reads(d->end)) {
        ssize_t r = read(d->fd, buf, n);
        return check(r == -1 && errno == EBADF, "read(write end)", r, errno);
    }
    Chan &c = p.in(d->end);
    int peer = 1 - d->end;
    uint64_t pending = c.wr - c.rd;
    pthread_t t;
    Later later;
    bool blocks = !pending && p.refs[peer] && !p.nonblock[d->end];
    bool times_out = blocks && p.rcvtimeo[d->end];
    bool waits = blocks && !times_out;
    if (waits) { // it would block: a thread writes a moment later
        Desc *w = nullptr;
        for (Desc &x : st->fds)
            if (x.fd >= 0 && x.pipe == d->pipe && x.end == peer) w = &x;
        later = Later{w->fd, 1 + st->in.below(200), c.wr, int64_t(st->in.below(100)) * 20};
        if (pthread_create(&t, nullptr, write_later, &later) != 0) fail("pthread_create");
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ssize_t r;
    do r = read(d->fd, buf, n); // libFuzzer's SIGALRM (-timeout) has no SA_RESTART
    while (r < 0 && errno == EINTR);
    int e = errno;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (waits) {
        pthread_join(t, nullptr);
        c.wr += later.n;
        pending = c.wr - c.rd;
    }
    if (times_out) {
        int64_t us = (t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
        check(r == -1 && e == EAGAIN, "read(SO_RCVTIMEO)", r, e);
        if (us + 1000 < p.rcvtimeo[d->end] || us > 5000000) // the kernel rounds to its tick
            fail("read with SO_RCVTIMEO %lld us took %lld us", (long long)p.rcvtimeo[d->end], (long long)us);
        return;
    }
    if (!pending) {
        // A socket whose peer went with data unread says ECONNRESET once.
        if (!p.refs[peer]) return check(r == 0 || (p.sock && r == -1 && e == ECONNRESET), "read(no writer)", r, e);
        return check(r == -1 && e == EAGAIN, "read(nonblocking, empty)", r, e);
    }
    // A pipe hands over what it has, up to n (a waiting read: what came first).
    bool ok = r > 0 && uint64_t(r) <= pending && size_t(r) <= n && (waits || size_t(r) == std::min<uint64_t>(n, pending));
    check(ok, "read", r, e);
    for (ssize_t b = 0; b < r; b++)
        if (uint8_t(buf[b]) != uint8_t((c.rd + uint64_t(b)) % 251))
            fail("read: byte %llu is %u, not %u", (unsigned long long)(c.rd + uint64_t(b)), uint8_t(buf[b]),
                 unsigned((c.rd + uint64_t(b)) % 251));
    c.rd += uint64_t(r);
}

void op_poll(State *st) {
    Desc *d = pick(st);
    if (!d) return;
    Pipe &p = st->pipes[d->pipe];
    struct pollfd pf = {d->fd, short(POLLIN | POLLOUT), 0};
    int timeout = st->in.flip() ? 0 : 1, r;
    do r = poll(&pf, 1, timeout);
    while (r < 0 && errno == EINTR);
    check(r >= 0, "poll", r, errno);
    if (p.sock) { // readable with data or once the peer is gone
        bool in = p.in(d->end).wr > p.in(d->end).rd || !p.refs[1 - d->end];
        if (bool(pf.revents & POLLIN) != in || r != (pf.revents ? 1 : 0))
            fail("poll of a socket: revents %#x, POLLIN %s", pf.revents, in ? "expected" : "not expected");
        return;
    }
    short want;
    if (d->end == 0) want = short((p.ch[0].wr > p.ch[0].rd ? POLLIN : 0) | (p.refs[1] ? 0 : POLLHUP));
    else want = short(p.refs[0] ? POLLOUT : POLLOUT | POLLERR);
    if (pf.revents != want || r != (want ? 1 : 0))
        fail("poll of a %s end: revents %#x, want %#x", d->end ? "write" : "read", pf.revents, want);
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

// Pipes, counted around each run: the runtime under the shim may start a
// poller (an epoll and an eventfd) for a worker it adds meanwhile.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int base_fds = fuzz::open_fds("pipe:");
    auto *st = new State{Input{data, size}, {}, 0, {}};
    for (int ops = 0; !st->in.empty() && ops < 64; ops++) {
        unsigned op = st->in.below(11);
        if (trace) fprintf(stderr, "op %u\n", op);
        switch (op) {
        case 0: op_pipe(st); break;
        case 1: op_dup(st); break;
        case 2: op_dup2(st); break;
        case 3: op_close(st); break;
        case 4: op_nonblock(st); break;
        case 5: op_getfl(st); break;
        case 6: op_write(st); break;
        case 7: case 8: op_read(st); break;
        case 9: op_timeout(st); break;
        default: op_poll(st); break;
        }
    }
    for (Desc &d : st->fds)
        if (d.fd >= 0) close(d.fd);
    delete st;
    int now = fuzz::open_fds("pipe:");
    if (now != base_fds) {
        fuzz::list_fds();
        fail("%d descriptors open after the run, %d before", now, base_fds);
    }
    return 0;
}
