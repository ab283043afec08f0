// Blocking descriptor calls park the green thread: Go's per-call loop
// (npshim_io) around one non-blocking attempt.  The file's flags stay the
// program's, so each attempt is non-blocking by itself: MSG_DONTWAIT on
// sockets, readiness first for pipes, ttys and devices.  Regular files
// have no readiness and are called as they are.
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fd_table.hpp"
#include "real.hpp"
#include "shim.hpp"

namespace shim {

namespace {

constexpr size_t kPipeChunk = 4096; // a pipe that polls writable takes this without blocking
constexpr int kMaxIov = 64;          // buffers of a writev per call (a copy on the stack)

// Readiness first, for files whose flags we may not touch.
bool ready_now(int fd, short ev) {
    struct pollfd p = {fd, ev, 0};
    return real.poll(&p, 1, 0) > 0;
}

// Not ready, and open that way: a pipe's write end read (or its read end
// written) is never ready, and the call itself fails at once (EBADF).
bool must_wait(int fd, short ev) {
    if (ready_now(fd, ev)) return false;
    int fl = real.fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_ACCMODE) != (ev == POLLIN ? O_WRONLY : O_RDONLY);
}

inline ssize_t neg(ssize_t r) { return r < 0 ? -errno : r; }

// The call after readiness can still block: another process, or a thread
// that does not park here, took what was ready (two apache children
// accepting on one socket, make's job-server pipe).  It then waits in the
// kernel as a plain thread's would, where a signal sent to the thread
// interrupts it: apache wakes its listener so.
template <class F> ssize_t after_ready(int fd, F f) {
    if (fd_prog_nonblock(fd)) return neg(f());
    return neg(kernel_call(f, ssize_t(-1), false, false));
}

// Held from the readiness check to the call: another thread of this
// process waiting on the same file (an accept pool) does not take what
// was ready in between, so the call blocks in the kernel only when
// another process took it.  The others park meanwhile.
class ReadyTurn {
  public:
    explicit ReadyTurn(Fd *e) : w_(e ? &e->ready_turn : nullptr) {
        if (!w_) return;
        uint32_t c = 0;
        if (w_->compare_exchange_strong(c, 1, std::memory_order_acquire)) return;
        if (c != 2) c = w_->exchange(2, std::memory_order_acquire);
        while (c != 0) {
            npshim_futex_wait(word(), 2, 0);
            c = w_->exchange(2, std::memory_order_acquire);
        }
    }
    ~ReadyTurn() {
        if (w_ && w_->exchange(0, std::memory_order_release) == 2) npshim_futex_wake(word(), 1);
    }
    ReadyTurn(const ReadyTurn &) = delete;
    ReadyTurn &operator=(const ReadyTurn &) = delete;

  private:
    const uint32_t *word() const { return reinterpret_cast<const uint32_t *>(w_); }
    std::atomic<uint32_t> *w_;
};

// A read of a stream socket that may come back short: the length asked,
// the registration, and its read readinesses when the attempt began.
struct Drain {
    size_t want;
    np_fd *pd;
    uint32_t events;
};

struct Buf {
    void *b;
    size_t n;
    int flags;
    struct sockaddr *addr;
    socklen_t *alen;
    const struct sockaddr *to;
    socklen_t tolen;
    const struct iovec *iov;
    int iovcnt;
    struct msghdr *msg;
    const struct msghdr *cmsg;
    struct mmsghdr *mmsg; // recvmmsg, sendmmsg: the vector and its length
    unsigned vlen;
    int in;       // sendfile: the file sent, and where from
    off_t *inoff;
    bool pollable;
    bool nowait; // a pipe the kernel reads and writes per call without blocking
    Fd *e;
    Drain *drain;
};

// Not tried under a seccomp filter (see note_seccomp_filter), checked at
// each try: a call that began before the filter went in may retry after.
// RWF_NOWAIT refused (EOPNOTSUPP: a named FIFO, an older kernel; EINVAL,
// ENOSYS: older still): this file goes the readiness way from now on, and
// so does this call.  Any other result is the call's.
bool nowait_refused(ssize_t r, Buf *a) {
    if (r >= 0 || (errno != EOPNOTSUPP && errno != EINVAL && errno != ENOSYS)) return false;
    a->nowait = false;
    a->e->nowait.store(false, std::memory_order_relaxed);
    return true;
}

ssize_t op_read(int fd, void *c) {
    auto *a = static_cast<Buf *>(c);
    if (a->nowait && !sandboxed.load(std::memory_order_relaxed)) {
        struct iovec v = {a->b, a->n};
        ssize_t r = preadv2(fd, &v, 1, -1, RWF_NOWAIT);
        if (!nowait_refused(r, a)) return neg(r);
    }
    ReadyTurn turn(a->pollable ? a->e : nullptr);
    if (a->pollable && must_wait(fd, POLLIN)) return -EAGAIN;
    return after_ready(fd, [&] { return real.read(fd, a->b, a->n); });
}
ssize_t op_recv(int fd, void *c) {
    auto *a = static_cast<Buf *>(c);
    if (Drain *d = a->drain; d && d->pd) d->events = npshim_io_events(d->pd);
    return neg(real.recvfrom(fd, a->b, a->n, a->flags | MSG_DONTWAIT, a->addr, a->alen));
}
ssize_t op_write(int fd, void *c) {
    auto *a = static_cast<Buf *>(c);
    if (a->nowait && !sandboxed.load(std::memory_order_relaxed)) { // all that fits; PIPE_BUF or less all or nothing, as O_NONBLOCK's
        struct iovec v = {a->b, a->n};
        ssize_t r = pwritev2(fd, &v, 1, -1, RWF_NOWAIT);
        if (!nowait_refused(r, a)) return neg(r);
    }
    ReadyTurn turn(a->pollable ? a->e : nullptr);
    if (a->pollable && must_wait(fd, POLLOUT)) return -EAGAIN;
    return after_ready(fd, [&] { return real.write(fd, a->b, a->pollable && a->n > kPipeChunk ? kPipeChunk : a->n); });
}
ssize_t op_send(int fd, void *c) {
    auto *a = static_cast<Buf *>(c);
    return neg(real.sendto(fd, a->b, a->n, a->flags | MSG_DONTWAIT, a->to, a->tolen));
}
ssize_t op_readv(int fd, void *c) {
    auto *a = static_cast<Buf *>(c);
    if (a->nowait && !sandboxed.load(std::memory_order_relaxed)) {
        ssize_t r = preadv2(fd, a->iov, a->iovcnt, -1, RWF_NOWAIT);
        if (!nowait_refused(r, a)) return neg(r);
    }
    ReadyTurn turn(a->pollable ? a->e : nullptr);
    if (a->pollable && must_wait(fd, POLLIN)) return -EAGAIN;
    return after_ready(fd, [&] { return real.readv(fd, a->iov, a->iovcnt); });
}
ssize_t op_recvmsg(int fd, void *c) {
    auto *a = static_cast<Buf *>(c);
    return neg(real.recvmsg(fd, a->msg, a->flags | MSG_DONTWAIT));
}
ssize_t op_recvmmsg(int fd, void *c) {
    auto *a = static_cast<Buf *>(c);
    return neg(real.recvmmsg(fd, a->mmsg, a->vlen, a->flags | MSG_DONTWAIT, nullptr));
}
ssize_t op_sendmmsg(int fd, void *c) {
    auto *a = static_cast<Buf *>(c);
    return neg(real.sendmmsg(fd, a->mmsg, a->vlen, a->flags | MSG_DONTWAIT));
}
ssize_t op_sendv(int fd, void *c) {
    auto *a = static_cast<Buf *>(c);
    struct msghdr m = {};
    m.msg_iov = const_cast<struct iovec *>(a->iov);
    m.msg_iovlen = size_t(a->iovcnt);
    return neg(real.sendmsg(fd, &m, MSG_DONTWAIT));
}
// A pipe, a terminal: per call with RWF_NOWAIT where the file takes it,
// else readiness, then at most what a writable pipe takes at once.
ssize_t op_writev(int fd, void *c) {
    auto *a = static_cast<Buf *>(c);
    if (a->nowait && !sandboxed.load(std::memory_order_relaxed)) {
        ssize_t r = pwritev2(fd, a->iov, a->iovcnt, -1, RWF_NOWAIT);
        if (!nowait_refused(r, a)) return neg(r);
    }
    ReadyTurn turn(a->e);
    if (must_wait(fd, POLLOUT)) return -EAGAIN;
    struct iovec v[kMaxIov];
    int n = 0;
    for (size_t room = kPipeChunk; n < a->iovcnt && n < kMaxIov && room; n++) {
        v[n] = a->iov[n];
        if (v[n].iov_len > room) v[n].iov_len = room;
        room -= v[n].iov_len;
    }
    return after_ready(fd, [&] { return real.writev(fd, v, n); });
}
ssize_t op_sendmsg(int fd, void *c) {
    auto *a = static_cast<Buf *>(c);
    return neg(real.sendmsg(fd, a->cmsg, a->flags | MSG_DONTWAIT));
}
ssize_t op_accept(int fd, void *c) {
    auto *a = static_cast<Buf *>(c);
    // accept4 has no per-call flag: readiness first.
    ReadyTurn turn(a->e);
    if (!ready_now(fd, POLLIN)) return -EAGAIN;
    return after_ready(fd, [&] { return ssize_t(real.accept4(fd, a->addr, a->alen, a->flags)); });
}
ssize_t op_sockerr(int fd, void *) {
    int err = 0;
    socklen_t len = sizeof err;
    if (!ready_now(fd, POLLOUT)) return -EAGAIN;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return -errno;
    return err ? -err : 0;
}

// sendfile(2) has no per-call flag, and blocks on the socket as long as
// it is full: O_NONBLOCK for the call itself, as connect's.
ssize_t op_sendfile(int fd, void *c) {
    auto *a = static_cast<Buf *>(c);
    int saved = fd_nonblock_begin(fd);
    ssize_t r = neg(real.sendfile(fd, a->in, a->inoff, a->n));
    fd_nonblock_end(fd, saved);
    return r;
}

// Only whether there is something to read (or the end, or an error),
// or room to write.
ssize_t op_ready_in(int fd, void *) { return ready_now(fd, POLLIN) ? 0 : -EAGAIN; }
ssize_t op_ready_out(int fd, void *) { return ready_now(fd, POLLOUT) ? 0 : -EAGAIN; }

// The attempt of the rest of a call on a stream socket that moved
// something already: when the socket has an error pending (a reset while
// a send waited for room), the call ends with its count, and the error
// stays for the next call, as the kernel's send and MSG_WAITALL receive
// end so.  The attempt took the error, and the count hid it: a send after
// a reset said EPIPE where it says ECONNRESET.  (Not pipes: a write to
// one whose reader is gone raises SIGPIPE with its count, as here.)
// What is still queued to read comes first, as the kernel's read takes it
// before it stops at the error.
struct Rest {
    npshim_op op;
    void *ctx;
    int mode;
};
ssize_t op_rest(int fd, void *c) {
    auto *a = static_cast<Rest *>(c);
    struct pollfd p = {fd, 0, 0};
    int queued = 0;
    if (real.poll(&p, 1, 0) == 1 && (p.revents & POLLERR) &&
        !(a->mode == NP_READ && real.ioctl(fd, FIONREAD, &queued) == 0 && queued > 0))
        return -EPIPE; // the count goes back, not this
    return a->op(fd, a->ctx);
}

// One blocking call: the attempt, and when it would block (and the program
// did not ask for that), park until ready, within SO_RCVTIMEO/SO_SNDTIMEO.
// d: a stream read; the attempt is not made when the last read emptied
// the socket and no readiness has come since (it could only say EAGAIN:
// one system call in three of a request and its answer).
// more: the rest of a call that moved something already (a stream send,
// a MSG_WAITALL receive): a handler that runs before it ends the call
// (-EINTR here, the count so far to the program), as the kernel returns a
// short count from such a call once a signal comes.
ssize_t blocking_call(int fd, Fd *e, int mode, npshim_op op, void *ctx, bool dontwait, Drain *d, bool more) {
    Errno keep; // a call that succeeds leaves errno alone, whatever its attempts set
    Thread *t = self();
    npshim_safe_point();
    test_cancel(t);
    if (sig_pending(t) && sig_deliver(t) != 0 && more) return -EINTR; // else nothing to interrupt yet
    Rest rest{op, ctx, mode};
    if (more && e && e->kind.load(std::memory_order_relaxed) == kStream) op = op_rest, ctx = &rest;
    uint32_t closes = e ? e->closes.load(std::memory_order_seq_cst) : 0;
    // Registered already: whether another operation runs between this
    // attempt and the park (npshim_io then tries again before it waits).
    np_fd *seen_pd = e ? fd_registered_now(e) : nullptr;
    uint32_t seq = seen_pd ? npshim_io_seq(seen_pd, mode) : 0;
    unsigned drained = 0;
    int nb = -1; // the program's O_NONBLOCK, once asked (after a fork, a system call)
    if (d && (d->pd = seen_pd) && !dontwait) {
        uint64_t m = e->drained.load(std::memory_order_relaxed);
        if (m && m == ((uint64_t(npshim_io_events(seen_pd)) << 1) | 1) && !(nb = fd_prog_nonblock(fd)))
            drained = NPSHIM_DRAINED;
    }
    ssize_t r = drained ? -EAGAIN : op(fd, ctx);
    if (r != -EAGAIN || dontwait || !e || (nb < 0 ? fd_prog_nonblock(fd) : nb)) return keep.pass(r);
    np_fd *pd = fd_registered(fd, e);
    // Closed since the attempt (and the number maybe reused): the call was
    // on the file that is gone, as a close during a parked call (Go's
    // ErrNetClosing, EBADF).
    if (e->closes.load(std::memory_order_seq_cst) != closes) {
        fd_close_wait(fd);
        return -EBADF;
    }
    if (!pd) { // cannot be registered: wait the old way (this worker stalls)
        struct pollfd p = {fd, short(mode == NP_READ ? POLLIN : POLLOUT), 0};
        while (r == -EAGAIN && real.poll(&p, 1, -1) >= 0) r = op(fd, ctx);
        return keep.pass(r);
    }
    int64_t timeout = fd_timeout(fd, e, mode);
    int64_t deadline = timeout ? np_now() + timeout : 0;
    if (d) d->pd = pd;
    for (;;) {
        bool interrupted;
        // seq: the attempt said EAGAIN (not made: NPSHIM_DRAINED says when to skip it)
        r = fd_park(t, fd, pd, mode, deadline, op, ctx, &interrupted, pd == seen_pd && !drained ? &seq : nullptr,
                    drained);
        drained = 0; // a handler may read it meanwhile
        if (!interrupted || r != -ETIMEDOUT) break;
        test_cancel(t);
        // A signal: its handler runs here; the call restarts only if it
        // asked SA_RESTART, the socket has no timeout, and nothing moved
        // yet (as Linux does).
        int h = sig_deliver(t); // 0: a process's signal another thread took
        if (h < 0 || (h > 0 && (timeout || more))) return -EINTR;
    }
    if (r == -ETIMEDOUT) r = -EAGAIN; // what the kernel says when SO_*TIMEO runs out
    return keep.pass(r);
}

ssize_t blocking(int fd, Fd *e, int mode, npshim_op op, void *ctx, bool dontwait, Drain *d = nullptr,
                 bool more = false) {
    ssize_t r = blocking_call(fd, e, mode, op, ctx, dontwait, d, more);
    if (d && e) // short: it took all there was when its attempt began
        e->drained.store(d->pd && r > 0 && size_t(r) < d->want ? (uint64_t(d->events) << 1) | 1 : 0,
                         std::memory_order_relaxed);
    return r;
}

// A socket's number that read(2) or write(2) found a file of another kind:
// the socket was closed where the library could not see (libc's own
// close, a raw system call) and the number reused.  Its entry goes, and
// the call is made again once.
bool stale(int fd) {
    Fd *e = fd_entry(fd);
    Kind k = e ? Kind(e->kind.load(std::memory_order_acquire)) : kUnknown;
    if (k != kStream && k != kDgram) return false;
    fd_forget(fd);
    return true;
}

// The shared front: not ours to park (plain OS thread, regular file, the
// shim off) goes straight to libc.
Fd *parkable(int fd, Kind *k) {
    if (!green()) return nullptr;
    // Nor in a fault handler: it runs on top of the faulting code, which
    // may be the shim's own (a SIGSYS a seccomp filter raises for a system
    // call we make, such as fd_kind's fstat: Firefox's handler then reports
    // it with sendmsg, which classified its socket, trapped again, and so
    // on until the green stack overflowed).
    if (self()->fault_depth) return nullptr;
    Fd *e = fd_entry(fd);
    if (!e) return nullptr;
    *k = fd_kind(fd, e);
    return *k == kUnknown || *k == kDirect || *k == kInternal ? nullptr : e;
}

} // namespace

// A read libc will make itself (stdio's): parks until fd has something to
// read, as the read would wait, ended the same ways (SO_RCVTIMEO's EAGAIN,
// a handler's EINTR, a close's EBADF).  0 also for a file that does not
// park here, or that the program made non-blocking.
bool parks_here(int fd) {
    Kind k;
    return parkable(fd, &k) != nullptr;
}

int wait_readable(int fd) {
    return parks_here(fd) && !fd_prog_nonblock(fd) ? wait_ready(fd, NP_READ) : 0;
}

bool parks_as(int fd, Kind *k) { return parkable(fd, k) != nullptr; }

int wait_ready(int fd, int mode) {
    Kind k;
    Fd *e = parkable(fd, &k);
    if (!e) return 0;
    ssize_t r = blocking(fd, e, mode, mode == NP_READ ? op_ready_in : op_ready_out, nullptr, false);
    return r < 0 ? int(r) : 0;
}

namespace {

// A setsockopt(SO_LINGER) with a time was made: closes may linger.
std::atomic<bool> linger_asked{false};

// The last close of a TCP socket with SO_LINGER on and a time sends the
// FIN after what is queued, then waits in the kernel until the FIN is
// acknowledged (all sent before it too), the time runs out, or a signal
// comes.  That held the worker: privoxy lingers 5 s on each client it
// answered, and 100 slow readers held every worker sysmon may add, so the
// whole process waited.  So the green thread makes the kernel's first step
// itself (shutdown(SHUT_WR): the FIN goes now, as the close would send it)
// and parks until the send queue, which counts the FIN, is empty: looking
// again after 50 us, then twice the interval up to 10 ms.  The close after
// it has nothing left to wait for.  Unread data, at the start or coming
// meanwhile, makes the kernel's close reset the connection, with no wait.
// Made only where this close is surely the last one (Fd::accepted, and no
// other process): another reference would mean no FIN and no wait.  A
// handler ends the wait, as it ends the kernel's; so does the time, and
// the close is then made without lingering, since the kernel's wait would
// be over by then.
void linger_park(int fd) {
    if (!green() || self()->fault_depth || sandboxed.load(std::memory_order_relaxed) || fd_files_are_shared())
        return;
    Errno keep;
    struct linger lg = {};
    socklen_t len = sizeof lg;
    int proto = 0;
    socklen_t plen = sizeof proto;
    int n = 0;
    if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len) == 0 && lg.l_onoff && lg.l_linger > 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &plen) == 0 && proto == IPPROTO_TCP &&
        real.ioctl(fd, FIONREAD, &n) == 0 && n == 0 &&
        real.syscall(SYS_shutdown, fd, SHUT_WR, 0, 0, 0, 0) == 0) { // not by name: a program may have its own
        Thread *t = self();
        int64_t deadline = np_now() + ns_sat(lg.l_linger, 0), step = 50000;
        bool over = false;
        while (real.ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0 && real.ioctl(fd, FIONREAD, &n) == 0 && n == 0) {
            int64_t now = np_now();
            if ((over = now >= deadline)) break;
            // As a cancellation point's wait, so the signals stay for us to
            // see; a cancel ends it as its signal ends the kernel's, and acts
            // at the thread's next cancellation point, the file closed.
            futex_wait(&t->sleep_word, 0, deadline - now > step ? now + step : deadline, true);
            if (step < 10000000) step *= 2;
            if ((over = (sig_pending(t) && sig_deliver(t) != 0) ||
                        (t->cancel_pending.load() && !t->cancel_disabled)))
                break;
        }
        if (over) {
            struct linger off = {0, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, sizeof off);
        }
    }
    keep.pass(0);
}

// newfd names old's file too (dup, F_DUPFD): a new file under that
// number, and two references to old's.
void shared_now(int old, int newfd) {
    fd_reset(newfd);
    if (Fd *o = fd_entry(old)) o->accepted = false;
}

// Descriptors sent with SCM_RIGHTS: their files have another reference.
void passed_on(const struct msghdr *m) {
    if (!m || !m->msg_control) return;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(const_cast<struct msghdr *>(m), c)) {
        if (c->cmsg_len < CMSG_LEN(0)) break; // malformed: the kernel refuses it
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t room = size_t(static_cast<char *>(m->msg_control) + m->msg_controllen -
                             reinterpret_cast<char *>(CMSG_DATA(c)));
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        if (n > room / sizeof(int)) n = room / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (Fd *e = fd_entry(fd)) e->accepted = false;
        }
    }
}

// A blocking stream write moves everything, as the kernel's would.
ssize_t write_all(int fd, Fd *e, npshim_op op, Buf *a, bool loop) {
    size_t done = 0, n = a->n;
    const char *base = static_cast<const char *>(a->b);
    do {
        a->b = const_cast<char *>(base + done);
        a->n = n - done;
        ssize_t r = blocking(fd, e, NP_WRITE, op, a, a->flags & MSG_DONTWAIT, nullptr, done > 0);
        if (r < 0) return done ? ssize_t(done) : r;
        done += size_t(r);
    } while (loop && done < n);
    return ssize_t(done);
}

// recvmmsg, sendmmsg: blocking calls on what is left of the vector, until
// it is done, or after the first when once; a failure after some messages
// returns their count.
int mmsg_calls(int fd, Fd *e, int mode, npshim_op op, struct mmsghdr *vec, unsigned vlen, int flags, bool once) {
    Buf a{};
    a.flags = flags;
    unsigned done = 0;
    while (done < vlen) {
        a.mmsg = vec + done;
        a.vlen = vlen - done;
        ssize_t r = blocking(fd, e, mode, op, &a, flags & MSG_DONTWAIT, nullptr, done > 0);
        if (r <= 0) return done ? int(done) : int(ret(r));
        done += unsigned(r);
        if (once) break;
    }
    return int(done);
}

ssize_t recv_common(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen) {
    Kind k;
    Fd *e = parkable(fd, &k);
    if (!e || (k != kStream && k != kDgram)) return real.recvfrom(fd, buf, n, flags, addr, alen);
    Buf a{};
    a.b = buf;
    a.n = n;
    a.flags = flags & ~MSG_WAITALL;
    a.addr = addr;
    a.alen = alen;
    Drain d{n, nullptr, 0};
    if (k == kStream && e->drains && !(flags & (MSG_PEEK | MSG_OOB | MSG_TRUNC | MSG_ERRQUEUE | MSG_WAITALL)))
        a.drain = &d;
    if (!(flags & MSG_WAITALL) || k != kStream)
        return ret(blocking(fd, e, NP_READ, op_recv, &a, flags & MSG_DONTWAIT, a.drain));
    size_t done = 0;
    while (done < n) {
        a.b = static_cast<char *>(buf) + done;
        a.n = n - done;
        ssize_t r = blocking(fd, e, NP_READ, op_recv, &a, flags & MSG_DONTWAIT, nullptr, done > 0);
        if (r <= 0) return done ? ssize_t(done) : ret(r);
        done += size_t(r);
    }
    return ssize_t(done);
}

ssize_t send_common(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t tolen) {
    Kind k;
    Fd *e = parkable(fd, &k);
    if (!e || (k != kStream && k != kDgram)) return real.sendto(fd, buf, n, flags, to, tolen);
    Buf a{};
    a.b = const_cast<void *>(buf);
    a.n = n;
    a.flags = flags;
    a.to = to;
    a.tolen = tolen;
    return ret(write_all(fd, e, op_send, &a, k == kStream));
}

} // namespace

} // namespace shim

using namespace shim;

extern "C" {

ssize_t read(int fd, void *buf, size_t n) {
    Kind k;
    Fd *e = parkable(fd, &k);
    if (!e || n < e->min_read) return real.read(fd, buf, n);
    Buf a{};
    a.b = buf;
    a.n = n;
    a.pollable = k == kPollable;
    a.nowait = e->nowait.load(std::memory_order_relaxed);
    a.e = e;
    Drain d{n, nullptr, 0};
    if (k == kStream && e->drains) a.drain = &d;
    ssize_t r = blocking(fd, e, NP_READ, a.pollable ? op_read : op_recv, &a, false, a.drain);
    if (r == -ENOTSOCK && stale(fd)) return read(fd, buf, n);
    return ret(r);
}

ssize_t write(int fd, const void *buf, size_t n) {
    Kind k;
    Fd *e = parkable(fd, &k);
    if (!e || e->write_direct) return real.write(fd, buf, n);
    Buf a{};
    a.b = const_cast<void *>(buf);
    a.n = n;
    a.pollable = k == kPollable;
    a.nowait = e->nowait.load(std::memory_order_relaxed);
    a.e = e;
    // write(2) on a socket is send(2) with no flags.
    ssize_t r = write_all(fd, e, a.pollable ? op_write : op_send, &a, k != kDgram);
    if (r == -ENOTSOCK && stale(fd)) return write(fd, buf, n);
    return ret(r);
}

ssize_t readv(int fd, const struct iovec *iov, int cnt) {
    Kind k;
    Fd *e = parkable(fd, &k);
    if (!e) return real.readv(fd, iov, cnt);
    Buf a{};
    a.iov = iov;
    a.iovcnt = cnt;
    a.pollable = true; // sockets too: recvmsg would need a msghdr built per call
    a.nowait = e->nowait.load(std::memory_order_relaxed);
    a.e = e;
    if (k != kPollable) {
        struct msghdr m = {};
        m.msg_iov = const_cast<struct iovec *>(iov);
        m.msg_iovlen = size_t(cnt);
        a.msg = &m;
        return ret(blocking(fd, e, NP_READ, op_recvmsg, &a, false));
    }
    return ret(blocking(fd, e, NP_READ, op_readv, &a, false));
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    Kind k;
    Fd *e = parkable(fd, &k);
    if (!e || e->write_direct) return real.writev(fd, iov, cnt);
    Buf a{};
    a.iov = iov;
    a.iovcnt = cnt;
    a.pollable = true;
    if (k == kDgram) {
        struct msghdr m = {};
        m.msg_iov = const_cast<struct iovec *>(iov);
        m.msg_iovlen = size_t(cnt);
        a.cmsg = &m;
        return ret(blocking(fd, e, NP_WRITE, op_sendmsg, &a, false));
    }
    // A blocking stream or pipe write moves everything, each step one
    // call on what is left (up to kMaxIov buffers of it): a socket's
    // buffers go out together (a header in pieces would wait on Nagle),
    // and a pipe's, PIPE_BUF or less, at once as the kernel's writev.
    struct iovec v[kMaxIov];
    a.iov = v;
    a.nowait = e->nowait.load(std::memory_order_relaxed);
    a.e = e;
    a.pollable = k == kPollable;
    ssize_t done = 0;
    size_t off = 0; // into iov[i], after a short write
    for (int i = 0; i < cnt;) {
        int n = 0;
        for (int j = i; j < cnt && n < kMaxIov; j++) {
            size_t o = j == i ? off : 0;
            if (iov[j].iov_len > o) v[n++] = {static_cast<char *>(iov[j].iov_base) + o, iov[j].iov_len - o};
        }
        if (!n) break;
        a.iovcnt = n;
        ssize_t r = blocking(fd, e, NP_WRITE, a.pollable ? op_writev : op_sendv, &a, false, nullptr, done > 0);
        if (r <= 0) return done ? done : ret(r);
        done += r;
        // Past what went: whole buffers, then into the one it stopped in.
        size_t left = size_t(r);
        while (i < cnt && left >= iov[i].iov_len - off) {
            left -= iov[i].iov_len - off;
            off = 0;
            i++;
        }
        off += left;
    }
    return done;
}

ssize_t recv(int fd, void *buf, size_t n, int flags) { return recv_common(fd, buf, n, flags, nullptr, nullptr); }
ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen) {
    return recv_common(fd, buf, n, flags, addr, alen);
}
ssize_t send(int fd, const void *buf, size_t n, int flags) { return send_common(fd, buf, n, flags, nullptr, 0); }
ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t tolen) {
    return send_common(fd, buf, n, flags, to, tolen);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
    Kind k;
    Fd *e = parkable(fd, &k);
    if (!e || k == kPollable) return real.recvmsg(fd, msg, flags);
    Buf a{};
    a.msg = msg;
    a.flags = flags;
    return ret(blocking(fd, e, NP_READ, op_recvmsg, &a, flags & MSG_DONTWAIT));
}

// recvmmsg(2): the first message is waited for as recvmsg(2) waits (the
// kernel looks at the timeout only after a message, so the first wait has
// none but SO_RCVTIMEO); each attempt takes all that is there.  Then, with
// MSG_WAITFORONE, MSG_DONTWAIT or a timeout, what came (the kernel would
// wait on after it for messages until the timeout ran out); else the
// vector is filled, waiting as the kernel does.
int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags, struct timespec *timeout) {
    Kind k;
    Fd *e = parkable(fd, &k);
    if (!e || k == kPollable || vlen == 0) return real.recvmmsg(fd, vec, vlen, flags, timeout);
    bool once = (flags & (MSG_WAITFORONE | MSG_DONTWAIT)) || timeout;
    return mmsg_calls(fd, e, NP_READ, op_recvmmsg, vec, vlen, flags & ~MSG_WAITFORONE, once);
}

// sendmmsg(2) on a blocking socket sends every message, waiting as
// sendmsg(2) waits; an error after some went returns their count.  On a
// stream each message goes whole, as sendmsg's.
int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags) {
    if (on())
        for (unsigned i = 0; i < vlen; i++) passed_on(&vec[i].msg_hdr);
    Kind k;
    Fd *e = parkable(fd, &k);
    if (!e || k == kPollable || vlen == 0) return real.sendmmsg(fd, vec, vlen, flags);
    bool dontwait = flags & MSG_DONTWAIT;
    unsigned done = 0;
    if (k == kStream && !dontwait) {
        for (; done < vlen; done++) {
            ssize_t r = sendmsg(fd, &vec[done].msg_hdr, flags);
            if (r < 0) return done ? int(done) : -1;
            vec[done].msg_len = unsigned(r);
        }
        return int(done);
    }
    return mmsg_calls(fd, e, NP_WRITE, op_sendmmsg, vec, vlen, flags, dontwait);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
    if (on()) passed_on(msg);
    Kind k;
    Fd *e = parkable(fd, &k);
    if (!e || k == kPollable) return real.sendmsg(fd, msg, flags);
    Buf a{};
    a.cmsg = msg;
    a.flags = flags;
    constexpr size_t kMaxLocalIov = 64;
    if (k != kStream || (flags & MSG_DONTWAIT) || msg->msg_iovlen > kMaxLocalIov)
        return ret(blocking(fd, e, NP_WRITE, op_sendmsg, &a, flags & MSG_DONTWAIT));
    // A blocking stream send moves everything: what is left after a short
    // send goes again, without the ancillary data (sent with the first part).
    struct iovec iov[kMaxLocalIov];
    struct msghdr m = *msg;
    size_t n = msg->msg_iovlen, total = 0;
    for (size_t i = 0; i < n; i++) total += (iov[i] = msg->msg_iov[i]).iov_len;
    m.msg_iov = iov;
    a.cmsg = &m;
    size_t done = 0;
    for (size_t first = 0;;) {
        ssize_t r = blocking(fd, e, NP_WRITE, op_sendmsg, &a, false, nullptr, done > 0);
        if (r < 0) return done ? ssize_t(done) : ret(r);
        done += size_t(r);
        if (done >= total) return ssize_t(done);
        for (size_t left = size_t(r); left;) { // step over what went
            size_t take = left < iov[first].iov_len ? left : iov[first].iov_len;
            iov[first].iov_base = static_cast<char *>(iov[first].iov_base) + take;
            iov[first].iov_len -= take;
            left -= take;
            if (!iov[first].iov_len) first++;
        }
        while (first < n && !iov[first].iov_len) first++;
        m.msg_iov = iov + first;
        m.msg_iovlen = n - first;
        m.msg_control = nullptr;
        m.msg_controllen = 0;
    }
}

int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags) {
    Kind k;
    Fd *e = parkable(fd, &k);
    if (!e) return real.accept4(fd, addr, alen, flags);
    Buf a{};
    a.addr = addr;
    a.alen = alen;
    a.flags = flags;
    a.e = e;
    ssize_t r = blocking(fd, e, NP_READ, op_accept, &a, false);
    if (r >= 0) {
        fd_reset(int(r));
        if (Fd *c = fd_entry(int(r))) c->accepted = true; // ours alone, until dup'ed or passed on
    }
    return int(ret(r));
}

int accept(int fd, struct sockaddr *addr, socklen_t *alen) { return accept4(fd, addr, alen, 0); }

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    Kind k;
    Fd *e = parkable(fd, &k);
    if (!e || k != kStream || fd_prog_nonblock(fd)) return real.connect(fd, addr, len);
    Errno keep;
    // No per-call flag for connect: O_NONBLOCK only for the call itself.
    int saved = fd_nonblock_begin(fd);
    if (saved < 0) return real.connect(fd, addr, len);
    int r = real.connect(fd, addr, len);
    int err = errno;
    fd_nonblock_end(fd, saved);
    if (r != 0 && err == EAGAIN) return real.connect(fd, addr, len); // a full unix backlog: the kernel's wait
    if (r == 0 || err != EINPROGRESS) {
        errno = err;
        return r;
    }
    Buf a{};
    ssize_t w = blocking(fd, e, NP_WRITE, op_sockerr, &a, false);
    if (w == -EAGAIN && e->sndtimeo) w = -EINPROGRESS; // SO_SNDTIMEO ran out, as the kernel says
    return int(ret(keep.pass(w)));
}

// To a stream socket: parks while the socket is full, and moves all of
// count, or up to the end of the file, as the kernel's blocking call.
ssize_t sendfile(int out, int in, off_t *off, size_t count) {
    Kind k;
    Fd *e = parkable(out, &k);
    if (!e || k != kStream || count == 0 || fd_prog_nonblock(out)) return real.sendfile(out, in, off, count);
    Buf a{};
    a.in = in;
    a.inoff = off;
    size_t done = 0;
    while (done < count) {
        a.n = count - done;
        ssize_t r = blocking(out, e, NP_WRITE, op_sendfile, &a, false, nullptr, done > 0);
        if (r < 0) return done ? ssize_t(done) : ret(r);
        if (r == 0) break; // the end of the file
        done += size_t(r);
    }
    return ssize_t(done);
}

ssize_t sendfile64(int out, int in, off64_t *off, size_t count) { return sendfile(out, in, off, count); }

int close(int fd) {
    if (!on()) return real.close(fd);
    Fd *e = fd_entry(fd);
    if (!e) return real.close(fd);
    // The engine's own survive a program that closes every fd it does not know.
    if (e->kind.load(std::memory_order_acquire) == kInternal) return 0;
    bool last = linger_asked.load(std::memory_order_relaxed) && e->accepted; // fd_forget clears it
    fd_close_begin(e);
    fd_forget(fd); // wakes a thread parked on it (EBADF), as Go's close
    if (last) linger_park(fd);
    int r = real.close(fd);
    fd_close_end(e);
    return r;
}

// The program's O_NONBLOCK is read from the kernel when a call would block
// and cached: a change of any file's flags here makes every cache stale.
// Once another process may share the file (a fork or spawn, either side)
// the cache is not used (fd_files_shared).
static int fcntl_common(int fd, int cmd, void *arg, bool is64) {
    on(); // real.* are set
    auto fn = is64 ? real.fcntl64 : real.fcntl;
    int r = cmd == F_SETLKW || cmd == F_OFD_SETLKW ? kernel_call([&] { return fn(fd, cmd, arg); }, -1, false, true, true)
                                                   : fn(fd, cmd, arg);
    if (r >= 0 && on()) {
        if (cmd == F_SETFL) fd_flags_changed();
        else if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) shared_now(fd, r);
    }
    return r;
}

int fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(fd, cmd, arg, false);
}

int fcntl64(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(fd, cmd, arg, true);
}

int flock(int fd, int op) {
    on(); // real.* are set
    auto fn = real.flock;
    if (op & LOCK_NB) return fn(fd, op);
    return kernel_call([&] { return fn(fd, op); }, -1, false);
}

int lockf(int fd, int cmd, off_t len) {
    on(); // real.* are set
    auto fn = real.lockf;
    if (cmd != F_LOCK) return fn(fd, cmd, len);
    return kernel_call([&] { return fn(fd, cmd, len); }, -1, false);
}

int lockf64(int fd, int cmd, off64_t len) {
    on(); // real.* are set
    auto fn = real.lockf64;
    if (cmd != F_LOCK) return fn(fd, cmd, len);
    return kernel_call([&] { return fn(fd, cmd, len); }, -1, false);
}

int ioctl(int fd, unsigned long req, ...) {
    on(); // real.* are set
    auto fn = real.ioctl;
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    int r = fn(fd, req, arg);
    if (r == 0 && req == FIONBIO && on()) fd_flags_changed();
    return r;
}

int dup(int old) {
    on(); // real.* are set
    auto fn = real.dup;
    int r = fn(old);
    if (r >= 0 && on()) shared_now(old, r);
    return r;
}

// Closing a range: every registration in it is dropped first, and the
// engine's own descriptors are stepped over.
int close_range(unsigned first, unsigned last, int flags) {
    on(); // real.* are set
    auto fn = real.close_range;
    if (!on() || (flags & CLOSE_RANGE_CLOEXEC)) return fn(first, last, flags);
    unsigned lo = first;
    for (unsigned fd = first; fd <= last; fd++) {
        Fd *e = fd_entry(int(fd));
        if (!e) break; // past the table: nothing of ours there
        if (e->kind.load(std::memory_order_acquire) == kInternal) {
            if (fd > lo && fn(lo, fd - 1, flags) != 0) return -1;
            lo = fd + 1;
            continue;
        }
        fd_forget(int(fd));
        if (fd == ~0u) break;
    }
    return lo <= last ? fn(lo, last, flags) : 0;
}

void closefrom(int lowfd) { close_range(unsigned(lowfd < 0 ? 0 : lowfd), ~0u, 0); }

int dup2(int old, int nfd) {
    if (on() && old != nfd) {
        Fd *e = fd_entry(nfd);
        if (e && e->kind.load() == kInternal) {
            errno = EBUSY;
            return -1;
        }
        if (e) fd_close_begin(e);
        fd_forget(nfd);
        int r = real.dup2(old, nfd);
        if (e) fd_close_end(e);
        if (r >= 0)
            if (Fd *o = fd_entry(old)) o->accepted = false; // two references now
        return r;
    }
    return real.dup2(old, nfd);
}

int dup3(int old, int nfd, int flags) {
    if (on() && old != nfd) {
        Fd *e = fd_entry(nfd);
        if (e && e->kind.load() == kInternal) {
            errno = EBUSY;
            return -1;
        }
        if (e) fd_close_begin(e);
        fd_forget(nfd);
        int r = real.dup3(old, nfd, flags);
        if (e) fd_close_end(e);
        if (r >= 0)
            if (Fd *o = fd_entry(old)) o->accepted = false; // two references now
        return r;
    }
    return real.dup3(old, nfd, flags);
}

// _FORTIFY_SOURCE's entry points (Debian builds with it): checked, then ours.
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen) {
    if (n > buflen) __chk_fail();
    return read(fd, buf, n);
}
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags) {
    if (n > buflen) __chk_fail();
    return recv(fd, buf, n, flags);
}
ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *addr,
                       socklen_t *alen) {
    if (n > buflen) __chk_fail();
    return recvfrom(fd, buf, n, flags, addr, alen);
}

int setsockopt(int fd, int level, int opt, const void *val, socklen_t len) {
    on(); // real.* are set
    int r = real.setsockopt(fd, level, opt, val, len);
    // The socket's timeouts, for every descriptor of it: each reads them again.
    if (r == 0 && level == SOL_SOCKET && (opt == SO_RCVTIMEO || opt == SO_SNDTIMEO) && on()) {
        if (sandboxed.load(std::memory_order_relaxed)) fd_timeout_set(fd, opt, val, len);
        fd_timeouts_changed();
    }
    if (r == 0 && level == SOL_SOCKET && opt == SO_LINGER && val && len >= socklen_t(sizeof(struct linger))) {
        auto *lg = static_cast<const struct linger *>(val);
        if (lg->l_onoff && lg->l_linger > 0) linger_asked.store(true, std::memory_order_relaxed);
    }
    // Kernel TLS: a read may stop at a record's end, with more queued.
    if (r == 0 && level == IPPROTO_TCP && opt == TCP_ULP && on())
        if (Fd *e = fd_entry(fd)) e->drains = false;
    return r;
}

} // extern "C"

// See shim.hpp: the library's own calls come here, not to the program's.
namespace shim {
int own_close_range(unsigned first, unsigned last, int flags) __attribute__((alias("close_range")));
int own_close(int fd) __attribute__((alias("close")));
} // namespace shim
