// Random sequences of ABI calls on a few descriptors (pipes, socket pairs,
// loopback listeners and clients, a regular file), from a green thread and
// from green threads it spawns, with short deadlines, bad arguments and
// closes under way.  Every result must be one of those the man pages list
// (exactly the one they promise where the harness knows it: -EBADF after
// np_close, -ETIMEDOUT after a deadline in the past, -EEXIST for a second
// registration, ...), what is read from a pipe or a stream socket pair is
// what was written to it, in order, and no descriptor may be left open
// afterwards.
//
// Bounded: every registered descriptor has a deadline at most kMaxDl ahead
// in both directions, kept so after any np_set_deadline, and a run is at
// most kMaxOps calls.
#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.hpp"
#include "netpoll.h"

using fuzz::fail;
using fuzz::Input;

namespace {

constexpr int kSlots = 10;
constexpr int kKids = 8;
constexpr int kMaxOps = 48;
constexpr int64_t kMaxDl = 2'000'000; // 2 ms

enum Kind { kNone, kPipeR, kPipeW, kStream, kDgram, kListen, kClient, kFile };

struct Slot {
    int fd = -1;          // the OS descriptor while open
    np_fd *pd = nullptr;  // its registration, or a closed one (stale)
    bool stale = false;   // pd was closed: every call on it is -EBADF
    bool nonblock = false;
    bool expired[2] = {}; // a deadline known to have passed (read, write)
    Kind kind = kNone;
    struct sockaddr_storage addr = {}; // a listener's
    socklen_t alen = 0;
    int family = 0;
    int rx = -1, tx = -1; // the byte streams read and written here (Chan)
};

// One direction of a pipe or a stream socket pair, written and read only
// by the run's main thread: what comes out is what went in, in order.
// Byte p of a stream is p % 251.  Given up (tainted) when another thread,
// a dup, a shutdown or a close may change it.
struct Chan {
    bool tainted = false;
    uint64_t wr = 0, rd = 0;
};
constexpr int kChans = 32;

struct Kid {
    np_thread *t = nullptr;
    int slot = -1;
};

struct State {
    Input in;
    Slot s[kSlots];
    Kid kids[kKids];
    std::atomic<int> detached{0};
    int ops = 0;
    Chan chans[kChans];
    int nchans = 0;
};

int new_chan(State *st) { return st->nchans < kChans ? st->nchans++ : -1; }

void taint(State *st, const Slot &s) {
    if (s.rx >= 0) st->chans[s.rx].tainted = true;
    if (s.tx >= 0) st->chans[s.tx].tainted = true;
}

unsigned abstract_seq;

// ---- the documented results ------------------------------------------------

bool one_of(long r, std::initializer_list<int> errs) {
    for (int e : errs)
        if (r == -e) return true;
    return false;
}

bool trace = getenv("FUZZ_TRACE"); // each call and its result on stderr

void expect(bool ok, const char *call, long r, int slot) {
    if (trace) fprintf(stderr, "  %s slot %d: %ld\n", call, slot, r);
    if (!ok) fail("%s on slot %d returned %ld (%s)", call, slot, r, r < 0 ? strerror(int(-r)) : "");
}

// What read(2)/write(2) and the socket calls may say on these descriptors.
// A read-side call also says -ENOTSUP after an error-only event (EPOLLERR
// alone: a pipe's write end, full, whose reader is gone), as Go's
// ErrNotPollable (pollEventErr).
bool read_err(long r, const Slot &s) {
    return one_of(r, {EBADF, ETIMEDOUT, ECONNRESET, ENOTCONN, ECONNREFUSED, EIO, EISDIR, EINVAL, ENOTSUP}) ||
           (s.nonblock && r == -EAGAIN);
}
bool write_err(long r, const Slot &s) {
    return one_of(r, {EBADF, ETIMEDOUT, EPIPE, ECONNRESET, ENOTCONN, EDESTADDRREQ, EMSGSIZE, EIO,
                      ECONNREFUSED, EINVAL}) ||
           (s.nonblock && r == -EAGAIN);
}
bool wait_err(long r, const Slot &s, bool wr) {
    return one_of(r, {EBADF, ETIMEDOUT}) || ((s.kind == kFile || !wr) && r == -ENOTSUP);
}

bool pollable(const Slot &s) { return s.kind != kFile; }

// ---- descriptors -------------------------------------------------------------

int free_slot(State *st) {
    for (int i = 0; i < kSlots; i++)
        if (st->s[i].fd < 0 && !st->s[i].pd) return i;
    return -1;
}

bool two_free(State *st, int *a, int *b) {
    *a = free_slot(st);
    if (*a < 0) return false;
    for (int i = *a + 1; i < kSlots; i++)
        if (st->s[i].fd < 0 && !st->s[i].pd) return *b = i, true;
    return false;
}

bool any_stale(const State *st) {
    for (const Slot &s : st->s)
        if (s.stale) return true;
    return false;
}

// A slot to call on: open or stale, or -1.
int pick(State *st) {
    int i = st->in.below(kSlots);
    for (int k = 0; k < kSlots; k++, i = (i + 1) % kSlots)
        if (st->s[i].fd >= 0 || st->s[i].pd) return i;
    return -1;
}

void linger0(int fd) {
    struct linger l = {1, 0}; // a reset, not TIME_WAIT: ports last the run
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

void put(State *st, int i, int fd, Kind k, int family = 0) {
    Slot &s = st->s[i];
    s = Slot{};
    s.fd = fd;
    s.kind = k;
    s.family = family;
}

int64_t short_dl(State *st) { return np_now() + 1 + int64_t(st->in.below(200)) * (kMaxDl / 200); }

// After a registration: both deadlines bounded.
void bound(State *st, Slot &s, int i) {
    if (!pollable(s)) return;
    int r = np_set_deadline(s.pd, short_dl(st), NP_READ | NP_WRITE);
    expect(r == 0, "np_set_deadline(bound)", r, i);
    s.expired[0] = s.expired[1] = false;
}

// Everything the children hold is given back before a call that can reuse
// a closed np_fd's memory: after that, a stale pointer would name a new
// descriptor (np_close(3), NOTES).
void settle(State *st);

void new_pipe(State *st) {
    int a, b;
    if (!two_free(st, &a, &b)) return;
    int p[2];
    if (pipe2(p, st->in.flip() ? O_NONBLOCK : 0) < 0) return;
    put(st, a, p[0], kPipeR);
    put(st, b, p[1], kPipeW);
    st->s[a].rx = st->s[b].tx = new_chan(st);
}

void new_pair(State *st) {
    int a, b;
    if (!two_free(st, &a, &b)) return;
    static const int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
    int type = types[st->in.below(3)];
    int p[2];
    if (socketpair(AF_UNIX, type, 0, p) < 0) return;
    Kind k = type == SOCK_STREAM ? kStream : kDgram;
    put(st, a, p[0], k);
    put(st, b, p[1], k);
    if (type == SOCK_STREAM) {
        st->s[a].rx = st->s[b].tx = new_chan(st);
        st->s[b].rx = st->s[a].tx = new_chan(st);
    }
}

void new_listener(State *st) {
    int i = free_slot(st);
    if (i < 0) return;
    Slot &s = st->s[i];
    bool tcp = st->in.flip();
    int backlog = st->in.below(4);
    int fd = socket(tcp ? AF_INET : AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    struct sockaddr_storage ss = {};
    socklen_t len;
    if (tcp) {
        auto *in = reinterpret_cast<struct sockaddr_in *>(&ss);
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *in;
    } else {
        auto *un = reinterpret_cast<struct sockaddr_un *>(&ss);
        un->sun_family = AF_UNIX;
        int k = snprintf(un->sun_path + 1, sizeof un->sun_path - 1, "np-fuzz-%d-%u", getpid(), abstract_seq++);
        len = socklen_t(offsetof(struct sockaddr_un, sun_path) + 1 + k);
    }
    if (bind(fd, reinterpret_cast<struct sockaddr *>(&ss), len) < 0 || listen(fd, backlog) < 0 ||
        (tcp && getsockname(fd, reinterpret_cast<struct sockaddr *>(&ss), &len) < 0)) {
        close(fd);
        return;
    }
    put(st, i, fd, kListen, tcp ? AF_INET : AF_UNIX);
    s.addr = ss;
    s.alen = len;
}

void new_client(State *st) {
    int i = free_slot(st);
    if (i < 0) return;
    int family = st->in.flip() ? AF_INET : AF_UNIX;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    if (family == AF_INET) linger0(fd);
    put(st, i, fd, kClient, family);
}

void new_file(State *st) {
    int i = free_slot(st);
    if (i < 0) return;
    int fd = memfd_create("np-fuzz", MFD_CLOEXEC);
    if (fd < 0) return;
    if (write(fd, "0123456789abcdef", 16) != 16 || lseek(fd, 0, SEEK_SET) != 0) {
        close(fd);
        return;
    }
    put(st, i, fd, kFile);
}

void new_dup(State *st) {
    int from = pick(st);
    int i = free_slot(st);
    if (from < 0 || i < 0 || st->s[from].fd < 0) return;
    int fd = fcntl(st->s[from].fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return;
    Slot &s = st->s[from];
    taint(st, s);
    Kind k = s.kind;
    put(st, i, fd, k, s.family);
    st->s[i].addr = s.addr;
    st->s[i].alen = s.alen;
}

void do_open(State *st) {
    int i = pick(st);
    if (i < 0) return;
    if (any_stale(st)) settle(st);
    Slot &s = st->s[i];
    if (s.fd < 0) return;
    unsigned flags = st->in.below(8) == 0 ? st->in.u8() : st->in.below(2);
    bool again = s.pd && !s.stale;
    if (again && !pollable(s)) return; // not registered: a second np_fd would close it twice
    np_fd *pd = nullptr;
    int r = flags ? np_open_flags(s.fd, flags, &pd) : np_open(s.fd, &pd);
    if (flags & ~NP_OPEN_NONBLOCK) {
        expect(r == -EINVAL, "np_open_flags(bad flags)", r, i);
        return;
    }
    if (again) {
        expect(r == -EEXIST, "np_open(registered)", r, i);
        return;
    }
    expect(r == 0 || one_of(r, {ENOMEM, ENOSPC}), "np_open", r, i);
    if (r) return;
    if (!pd) fail("np_open returned 0 and no np_fd");
    s.pd = pd;
    s.stale = false;
    s.nonblock = flags & NP_OPEN_NONBLOCK;
    bound(st, s, i);
}

void do_close(State *st) {
    int i = pick(st);
    if (i < 0) return;
    Slot &s = st->s[i];
    taint(st, s);
    if (!s.pd) { // not registered: a plain close, as the program would
        close(s.fd);
        s.fd = -1;
        s.kind = kNone;
        return;
    }
    int r = np_close(s.pd);
    if (s.stale) {
        expect(r == -EBADF, "np_close(closed)", r, i);
        return;
    }
    expect(r == 0, "np_close", r, i);
    s.fd = -1;
    s.stale = true;
}

// ---- calls on a registered descriptor -----------------------------------------

// The result every call on a closed np_fd has, or that a passed deadline
// gives a pollable one; 1 when not known.
long known(const Slot &s, int dir) {
    if (s.stale) return -EBADF;
    if (pollable(s) && s.expired[dir]) return -ETIMEDOUT;
    return 1;
}

void note_timeout(Slot &s, int dir, long r) {
    if (r == -ETIMEDOUT) s.expired[dir] = true;
}

void do_wait(State *st, bool wr) {
    int i = pick(st);
    if (i < 0 || !st->s[i].pd) return;
    Slot &s = st->s[i];
    long k = known(s, wr);
    int r = wr ? np_wait_write(s.pd) : np_wait_read(s.pd);
    const char *name = wr ? "np_wait_write" : "np_wait_read";
    if (k != 1) expect(r == k, name, r, i);
    else if (!pollable(s)) expect(r == -ENOTSUP, name, r, i);
    else expect(r == 0 || wait_err(r, s, wr), name, r, i);
    note_timeout(s, wr, r);
}

void do_deadline(State *st) {
    int i = pick(st);
    if (i < 0 || !st->s[i].pd) return;
    Slot &s = st->s[i];
    int mode = st->in.below(8) == 0 ? int(st->in.u32()) : 1 + st->in.below(3);
    int64_t now = np_now(), d;
    switch (st->in.below(6)) {
    case 0: d = 0; break;
    case 1: d = now - int64_t(st->in.u16()) * 1000; break; // past
    case 2: d = int64_t(st->in.u64()); break;
    case 3: d = st->in.flip() ? INT64_MAX : INT64_MIN; break;
    default: d = now + int64_t(st->in.below(200)) * (kMaxDl / 200); break;
    }
    int r = np_set_deadline(s.pd, d, mode);
    bool good_mode = mode == NP_READ || mode == NP_WRITE || mode == (NP_READ | NP_WRITE);
    if (!good_mode) expect(r == -EINVAL, "np_set_deadline(bad mode)", r, i);
    else if (s.stale) expect(r == -EBADF, "np_set_deadline(closed)", r, i);
    else if (!pollable(s)) expect(r == -ENOTSUP, "np_set_deadline(file)", r, i);
    else expect(r == 0, "np_set_deadline", r, i);
    if (r || s.stale || !pollable(s)) return;
    for (int dir = 0; dir < 2; dir++) {
        if (!(mode & (1 << dir))) continue;
        s.expired[dir] = d != 0 && d <= now;
        // No deadline, or a far one: bounded again at once.
        if (d == 0 || d > now + kMaxDl) {
            int64_t nd = short_dl(st);
            expect(np_set_deadline(s.pd, nd, 1 << dir) == 0, "np_set_deadline(again)", 0, i);
        }
    }
}

char big[1 << 16];
char sink[1 << 16];
char kidbuf[1 << 16]; // what the other threads write

size_t io_size(State *st) {
    switch (st->in.below(4)) {
    case 0: return 0;
    case 1: return 1 + st->in.below(16);
    case 2: return 1 + st->in.u16() % 4096;
    default: return sizeof big;
    }
}

void do_read(State *st) {
    int i = pick(st);
    if (i < 0 || !st->s[i].pd) return;
    Slot &s = st->s[i];
    size_t n = io_size(st);
    unsigned how = st->in.below(5);
    bool null_buf = how == 4 && n;
    long k = known(s, 0);
    long r;
    if (how == 1 && n) {
        struct iovec iov[2] = {{sink, n / 2}, {sink + n / 2, n - n / 2}};
        r = np_readv(s.pd, iov, 2);
    } else if (how == 2) {
        r = np_recvfrom(s.pd, sink, n, st->in.flip() ? MSG_DONTWAIT : 0, nullptr, nullptr);
        if (r == -ENOTSOCK && (s.kind == kPipeR || s.kind == kPipeW || s.kind == kFile)) return;
    } else {
        r = np_read(s.pd, null_buf ? nullptr : sink, n);
    }
    if (null_buf) return expect(r == -EINVAL, "np_read(NULL)", r, i);
    if (r >= 0 && size_t(r) > n) fail("np_read returned %ld > %zu", r, n);
    if (k != 1 && n) expect(r == k, "np_read", r, i);
    // recvfrom with MSG_DONTWAIT may say -EAGAIN; a stream's recv on a listener -ENOTCONN
    else expect(r >= 0 || read_err(r, s) || (how == 2 && r == -EAGAIN), "np_read", r, i);
    note_timeout(s, 0, r);
    if (s.rx < 0 || st->chans[s.rx].tainted || s.stale || !n) return;
    Chan &c = st->chans[s.rx];
    if (r > 0) {
        if (c.rd + uint64_t(r) > c.wr) fail("slot %d: read %ld bytes, %llu were written", i, r, (unsigned long long)(c.wr - c.rd));
        for (long b = 0; b < r; b++)
            if (uint8_t(sink[b]) != uint8_t((c.rd + uint64_t(b)) % 251))
                fail("slot %d: byte %llu of the stream is %u, not %u", i, (unsigned long long)(c.rd + uint64_t(b)),
                     uint8_t(sink[b]), unsigned((c.rd + uint64_t(b)) % 251));
        c.rd += uint64_t(r);
    } else if (c.wr > c.rd && (r == 0 || r == -EAGAIN)) {
        fail("slot %d: read returned %ld with %llu bytes written and not read", i, r, (unsigned long long)(c.wr - c.rd));
    }
}

// The next n bytes of the stream written here, in big.
void fill(State *st, const Slot &s, size_t n) {
    uint64_t at = s.tx >= 0 ? st->chans[s.tx].wr : 0;
    for (size_t b = 0; b < n; b++) big[b] = char((at + b) % 251);
}

void do_write(State *st) {
    int i = pick(st);
    if (i < 0 || !st->s[i].pd) return;
    Slot &s = st->s[i];
    size_t n = io_size(st);
    unsigned how = st->in.below(5);
    bool null_buf = how == 4 && n;
    long k = known(s, 1);
    long r;
    fill(st, s, n);
    if (how == 1) {
        struct iovec iov[2] = {{big, n / 2}, {big + n / 2, n - n / 2}};
        r = np_writev(s.pd, iov, 2);
    } else if (how == 2) {
        r = np_sendto(s.pd, big, n, st->in.flip() ? MSG_DONTWAIT : 0, nullptr, 0);
        if (r == -ENOTSOCK) return; // a pipe or a file
    } else {
        r = np_write(s.pd, null_buf ? nullptr : big, n);
    }
    if (null_buf) return expect(r == -EINVAL, "np_write(NULL)", r, i);
    if (r >= 0 && size_t(r) > n) fail("np_write returned %ld > %zu", r, n);
    if (k != 1) expect(r == k, "np_write", r, i);
    else expect(r >= 0 || write_err(r, s) || (how == 2 && r == -EAGAIN), "np_write", r, i);
    note_timeout(s, 1, r);
    if (r > 0 && s.tx >= 0) st->chans[s.tx].wr += uint64_t(r);
}

void do_accept(State *st) {
    int i = pick(st);
    if (i < 0 || !st->s[i].pd) return;
    if (any_stale(st)) settle(st);
    int j = free_slot(st);
    if (j < 0 || !st->s[i].pd) return;
    Slot &s = st->s[i];
    long k = known(s, 0);
    np_fd *c = nullptr;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    unsigned how = st->in.below(4);
    int r = how == 0   ? np_accept(s.pd, &c, nullptr, nullptr)
            : how == 1 ? np_accept(s.pd, &c, reinterpret_cast<struct sockaddr *>(&ss), &len)
            : how == 2 ? np_accept(s.pd, nullptr, nullptr, nullptr)
                       : np_accept(s.pd, &c, reinterpret_cast<struct sockaddr *>(&ss), nullptr);
    if (how >= 2) return expect(r == -EINVAL, "np_accept(bad args)", r, i);
    if (k != 1) expect(r == k, "np_accept", r, i);
    else if (s.kind != kListen || !pollable(s)) // (a listener shut down is not listening: -EINVAL)
        expect(one_of(r, {EINVAL, ENOTSOCK, EOPNOTSUPP, EBADF, ETIMEDOUT}), "np_accept(not a listener)", r, i);
    else
        expect(r == 0 || one_of(r, {EINVAL, EBADF, ETIMEDOUT, EMFILE, ENFILE, ENOBUFS, ENOMEM, EPERM, EPROTO}) ||
                   (s.nonblock && r == -EAGAIN),
               "np_accept", r, i);
    note_timeout(s, 0, r);
    if (r) return;
    int fd = np_fileno(c);
    if (fd < 0) fail("np_fileno of an accepted np_fd: %d", fd);
    if (s.family == AF_INET) linger0(fd);
    put(st, j, fd, kStream);
    st->s[j].pd = c;
    bound(st, st->s[j], j);
}

void do_connect(State *st) {
    int i = pick(st);
    if (i < 0 || !st->s[i].pd) return;
    Slot &s = st->s[i];
    struct sockaddr_storage ss = {};
    socklen_t len = 0;
    unsigned how = st->in.below(6);
    if (how < 3) { // a listener's address
        int l = st->in.below(kSlots);
        for (int t = 0; t < kSlots && st->s[l].kind != kListen; t++) l = (l + 1) % kSlots;
        if (st->s[l].kind != kListen) return;
        ss = st->s[l].addr;
        len = st->s[l].alen;
    } else if (how == 3) { // a port nobody listens on, or a path that is not there
        auto *un = reinterpret_cast<struct sockaddr_un *>(&ss);
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, "/nonexistent/np-fuzz");
        len = sizeof *un;
    } else if (how == 4) { // garbage
        len = st->in.below(sizeof ss + 8);
        for (socklen_t b = 0; b < len && b < sizeof ss; b++) reinterpret_cast<uint8_t *>(&ss)[b] = st->in.u8();
        if (reinterpret_cast<struct sockaddr *>(&ss)->sa_family == AF_INET) // loopback only
            reinterpret_cast<struct sockaddr_in *>(&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (reinterpret_cast<struct sockaddr *>(&ss)->sa_family == AF_INET6) // nowhere
            ss.ss_family = AF_UNSPEC;
        if (len > sizeof ss) len = sizeof ss;
    }
    long k = known(s, 1);
    int r = how == 5 ? np_connect(s.pd, nullptr, 0) : np_connect(s.pd, reinterpret_cast<struct sockaddr *>(&ss), len);
    if (how == 5) return expect(r == -EINVAL, "np_connect(NULL)", r, i);
    if (k != 1) expect(r == k, "np_connect", r, i);
    else if (!pollable(s)) expect(r == -ENOTSOCK, "np_connect(file)", r, i);
    else
        expect(r == 0 || one_of(r, {EINVAL, EBADF, ETIMEDOUT, EAGAIN, ECONNREFUSED, ENETUNREACH, EHOSTUNREACH,
                                    EADDRNOTAVAIL, EADDRINUSE, EAFNOSUPPORT, EISCONN, EACCES, EPERM, ENOENT,
                                    ENOTSOCK, EPROTOTYPE, ECONNRESET, EOPNOTSUPP, ECONNABORTED}) ||
                   (s.nonblock && r == -EINPROGRESS),
               "np_connect", r, i);
    note_timeout(s, 1, r);
}

// ---- green threads --------------------------------------------------------------

struct KidArg {
    np_fd *pd;
    Slot copy;
    unsigned op;
    State *st;
    bool detached;
};

void *kid_run(void *p) {
    auto *a = static_cast<KidArg *>(p);
    char buf[256];
    long r;
    const Slot &s = a->copy;
    switch (a->op % 5) {
    case 0:
        r = np_read(a->pd, buf, sizeof buf);
        expect(r >= 0 || read_err(r, s), "np_read(kid)", r, -1);
        break;
    case 1:
        r = np_write(a->pd, kidbuf, a->op & 8 ? sizeof kidbuf : sizeof buf);
        expect(r >= 0 || write_err(r, s), "np_write(kid)", r, -1);
        break;
    case 2:
        r = np_wait_read(a->pd);
        expect(r == 0 || wait_err(r, s, false), "np_wait_read(kid)", r, -1);
        break;
    case 3:
        r = np_wait_write(a->pd);
        expect(r == 0 || wait_err(r, s, true), "np_wait_write(kid)", r, -1);
        break;
    default:
        np_sleep(int64_t(a->op & 0xff) * 1000);
        break;
    }
    if (a->detached) a->st->detached.fetch_sub(1);
    delete a;
    return nullptr;
}

void kid_go(void *p) { kid_run(p); }

void do_spawn(State *st, bool detached) {
    int i = pick(st);
    if (i < 0 || !st->s[i].pd) return;
    int k = 0;
    if (!detached) {
        while (k < kKids && st->kids[k].t) k++;
        if (k == kKids) return;
    } else if (st->detached.load() >= kKids) {
        return;
    }
    taint(st, st->s[i]);
    auto *a = new KidArg{st->s[i].pd, st->s[i], st->in.u8(), st, detached};
    if (detached) {
        st->detached.fetch_add(1);
        int r = np_go(kid_go, a);
        if (r) {
            st->detached.fetch_sub(1);
            delete a;
            expect(one_of(r, {ENOMEM, EAGAIN}), "np_go", r, i);
        }
        return;
    }
    int r = np_spawn(&st->kids[k].t, kid_run, a);
    if (r) {
        st->kids[k].t = nullptr;
        delete a;
        expect(one_of(r, {ENOMEM, EAGAIN}), "np_spawn", r, i);
        return;
    }
    st->kids[k].slot = i;
}

void join_kid(State *st, int k) {
    if (!st->kids[k].t) return;
    void *res = &res;
    int r = np_join(st->kids[k].t, &res);
    expect(r == 0, "np_join", r, st->kids[k].slot);
    if (res != nullptr) fail("np_join: result %p, not the thread's", res);
    st->kids[k].t = nullptr;
}

void settle(State *st) {
    for (int k = 0; k < kKids; k++) join_kid(st, k);
    while (st->detached.load() > 0) np_sleep(50'000);
    for (Slot &s : st->s)
        if (s.stale) s = Slot{};
}

void bad_args(State *st) {
    np_fd *pd = nullptr;
    np_thread *t = nullptr;
    char b[4];
    long r;
    switch (st->in.below(13)) {
    case 0: r = np_open(-1 - st->in.below(100), &pd); expect(r == -EBADF, "np_open(-1)", r, -1); break;
    case 1: r = np_open(100000 + st->in.u16(), &pd); expect(r == -EBADF, "np_open(not open)", r, -1); break;
    case 2: r = np_open(0, nullptr); expect(r == -EINVAL, "np_open(NULL)", r, -1); break;
    case 3: r = np_close(nullptr); expect(r == -EINVAL, "np_close(NULL)", r, -1); break;
    case 4: r = np_read(nullptr, b, 1); expect(r == -EINVAL, "np_read(NULL)", r, -1); break;
    case 5: r = np_write(nullptr, b, 1); expect(r == -EINVAL, "np_write(NULL)", r, -1); break;
    case 6: r = np_wait_read(nullptr) + np_wait_write(nullptr); expect(r == -2 * EINVAL, "np_wait(NULL)", r, -1); break;
    case 7: r = np_set_deadline(nullptr, np_now(), NP_READ); expect(r == -EINVAL, "np_set_deadline(NULL)", r, -1); break;
    case 8: r = np_spawn(&t, nullptr, nullptr); expect(r == -EINVAL, "np_spawn(NULL fn)", r, -1);
            r = np_spawn(nullptr, kid_run, nullptr); expect(r == -EINVAL, "np_spawn(NULL t)", r, -1); break;
    case 9: r = np_join(nullptr, nullptr); expect(r == -EINVAL, "np_join(NULL)", r, -1); break;
    case 10: r = np_go(nullptr, nullptr); expect(r == -EINVAL, "np_go(NULL)", r, -1);
             r = np_go_stack(kid_go, nullptr, st->in.below(2) ? 1 : (size_t(1) << 31));
             expect(r == -EINVAL, "np_go_stack(bad size)", r, -1); break;
    case 11: { // bad vectors and address lengths on a real descriptor
        int i = pick(st);
        if (i < 0 || !st->s[i].pd) break;
        np_fd *p = st->s[i].pd;
        struct iovec iov = {b, 1};
        struct sockaddr_storage ss;
        int cnt = st->in.flip() ? -1 - int(st->in.below(4)) : IOV_MAX + 1 + int(st->in.below(4));
        r = np_readv(p, &iov, cnt);
        expect(r == -EINVAL, "np_readv(bad count)", r, i);
        r = np_writev(p, nullptr, 1 + int(st->in.below(4)));
        expect(r == -EINVAL, "np_writev(NULL)", r, i);
        r = np_recvfrom(p, b, 1, MSG_DONTWAIT, reinterpret_cast<struct sockaddr *>(&ss), nullptr);
        expect(r == -EINVAL, "np_recvfrom(no length)", r, i);
        r = np_recvmsg(p, nullptr, 0) + np_sendmsg(p, nullptr, 0);
        expect(r == -2 * EINVAL, "np_recvmsg/np_sendmsg(NULL)", r, i);
        break;
    }
    default: r = np_accept(nullptr, &pd, nullptr, nullptr) + np_connect(nullptr, nullptr, 0) +
                 np_fileno(nullptr);
             expect(r == -3 * EINVAL, "np_accept/np_connect/np_fileno(NULL)", r, -1); break;
    }
}

void do_shutdown(State *st) {
    int i = pick(st);
    if (i < 0 || st->s[i].fd < 0) return;
    taint(st, st->s[i]);
    shutdown(st->s[i].fd, int(st->in.below(3))); // ENOTSOCK for pipes: fine
}

int run(void *p) {
    auto *st = static_cast<State *>(p);
    while (!st->in.empty() && st->ops++ < kMaxOps) {
        unsigned op = st->in.below(20);
        if (trace) fprintf(stderr, "op %u\n", op);
        switch (op) {
        case 0: new_pipe(st); break;
        case 1: new_pair(st); break;
        case 2: new_listener(st); break;
        case 3: new_client(st); break;
        case 4: st->in.flip() ? new_file(st) : new_dup(st); break;
        case 5: case 6: do_open(st); break;
        case 7: do_close(st); break;
        case 8: do_wait(st, st->in.flip()); break;
        case 9: do_deadline(st); break;
        case 10: case 11: do_read(st); break;
        case 12: case 13: do_write(st); break;
        case 14: do_accept(st); break;
        case 15: do_connect(st); break;
        case 16: do_spawn(st, st->in.flip()); break;
        case 17: join_kid(st, st->in.below(kKids)); break;
        case 18: bad_args(st); break;
        default:
            if (st->in.flip()) do_shutdown(st);
            else np_sleep(int64_t(st->in.below(50)) * 10'000);
            break;
        }
    }
    settle(st);
    for (int i = 0; i < kSlots; i++) {
        Slot &s = st->s[i];
        if (s.pd && !s.stale) expect(np_close(s.pd) == 0, "np_close(end)", 0, i);
        else if (s.fd >= 0) close(s.fd);
        s = Slot{};
    }
    return 0;
}

int run_input(const uint8_t *data, size_t size) {
    auto *st = new State;
    st->in = Input{data, size};
    int r = np_main(run, st);
    delete st;
    return r;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    signal(SIGPIPE, SIG_IGN);
    memset(kidbuf, 'x', sizeof kidbuf);
    np_config cfg = {};
    cfg.size = sizeof cfg;
    if (int r = np_init(&cfg)) fail("np_init: %d", r);
    // Everything once, so what the runtime opens on first use is counted.
    static const uint8_t warm[] = {0, 1, 2, 3, 4, 1, 5, 0, 5, 1, 5, 2, 5, 3, 10, 0, 12, 0, 14, 0, 16, 0, 7, 0};
    run_input(warm, sizeof warm);
    fuzz::start_symbolizer();
    return 0;
}

// Counted around each run (libFuzzer opens files of its own between runs).
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int base_fds = fuzz::open_fds();
    int r = run_input(data, size);
    if (r) fail("np_main returned %d", r);
    int now = fuzz::open_fds();
    if (now != base_fds) {
        fuzz::list_fds();
        fail("%d descriptors open after the run, %d before", now, base_fds);
    }
    return 0;
}
