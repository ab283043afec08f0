// The descriptor ABI, after Go's internal/poll (fd_unix.go): each operation
// takes its direction's fdMutex lock, checks errors and drops stale
// readiness before the syscall (so an expired deadline fails even when data
// is ready), retries EINTR, and parks on EAGAIN.
#include <cerrno>
#include <climits>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "errno_guard.hpp"
#include "netpoll.h"
#include "poll_desc.hpp"
#include "port.hpp"
#include "runtime.hpp"
#include "sys.hpp"

using namespace np;

namespace {


constexpr size_t kMaxRW = size_t(1) << 30; // one call moves at most 1 GiB

PollDesc *pd_of(np_fd *p) { return reinterpret_cast<PollDesc *>(p); }

// Holds a direction of the fdMutex for the length of an operation.
class OpLock {
public:
    OpLock(PollDesc *pd, int mode) : pd_(pd), dir_(mode == NP_READ ? 0 : 1) {
        preempt_point();
        err_ = pd->is_free ? -EBADF : pd->fdmu.rwlock(dir_);
    }
    ~OpLock() {
        if (!err_) pd_->fdmu.rwunlock(dir_);
    }
    int err() const { return err_; }

private:
    PollDesc *pd_;
    int dir_;
    int err_;
};

// Runs op until it does not say "try again", parking on EAGAIN.  op returns
// the syscall's result and leaves errno set on failure.
//
// Every operation tries its system call first, as Go does, even right
// after a short read.  A short read does not mean the descriptor is empty:
// the kernel stops early with data still queued at the end of a unix-socket
// message that carries descriptors (SCM_RIGHTS), where the sending process
// changes under SO_PASSCRED, at the TCP (and unix) urgent mark, after each
// packet of a packet-mode pipe (O_DIRECT, set by the writer), at SCTP
// message and kTLS record boundaries -- and no new edge announces the rest.
// Waiting for an edge after a short read (which saved the read that says
// EAGAIN) parked such readers forever.  Making it exact would take a
// FIONREAD per short read, which costs as much as the read it saves (about
// 200 ns either, measured on TCP and unix sockets), so the hint is gone.
template <class Op> ssize_t io_loop(PollDesc *pd, int mode, bool dontwait, Op op) {
    if (int e = pd_reset(pd, mode)) return e;
    for (;;) {
        ssize_t r = op();
        if (r >= 0) return r;
        int e = errno;
        if (e == EINTR) continue;
        if (e == EAGAIN && pd->pollable && !pd->user_nonblock && !dontwait) {
            if (int w = pd_wait(pd, mode)) return w;
            continue;
        }
        return -e;
    }
}

// Regular files: the same call, run where blocking stalls no worker.
template <class Op> ssize_t file_op(Op op) {
    struct Ctx {
        Op *op;
        int err;
    } c{&op, 0};
    long r = blocking_call(
        [](void *p) -> long {
            auto *c = static_cast<Ctx *>(p);
            ssize_t r;
            do r = (*c->op)();
            while (r < 0 && errno == EINTR);
            c->err = r < 0 ? errno : 0;
            return long(r);
        },
        &c);
    return r < 0 ? -c.err : r;
}

template <class Op> ssize_t do_io(PollDesc *pd, int mode, bool dontwait, Op op) {
    if (!pd->pollable) {
        if (int e = pd_check_err(pd, mode)) return e;
        return file_op(op);
    }
    return io_loop(pd, mode, dontwait, op);
}

int open_fd(int fd, unsigned flags, np_fd **out) {
    if (!out) return -EINVAL;
    if (fd < 0) return -EBADF;
    if (flags & ~NP_OPEN_NONBLOCK) return -EINVAL;
    int fl = sys_fcntl(fd, F_GETFL);
    if (fl < 0) return -errno;
    if (int e = runtime_ensure()) return e;
    PollDesc *pd = pd_alloc();
    if (!pd) return -ENOMEM;
    pd->fd = fd;
    pd->user_nonblock = flags & NP_OPEN_NONBLOCK;
    pd_open(pd);
    Port *port = open_port();
    pd->port.store(port, std::memory_order_relaxed);
    int e = port->open(fd, pd);
    if (e == -EPERM) {
        pd->pollable = false; // a regular file: blocking I/O on helpers
    } else if (e) {
        pd_free(pd);
        return e;
    } else {
        pd->pollable = true;
        if (!(fl & O_NONBLOCK) && sys_fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            e = -errno;
            port->close(fd, pd);
            pd_free(pd);
            return e;
        }
    }
    rt->descriptors.fetch_add(1, std::memory_order_relaxed);
    *out = reinterpret_cast<np_fd *>(pd);
    return 0;
}

} // namespace

namespace np {

// Close's first half, shared with the shim's npshim_fd_forget: wake the
// waiters (-EBADF), let in-flight operations leave, unregister, and free
// the descriptor; the file itself stays open.
int pd_retire(PollDesc *pd) {
    if (int e = pd->fdmu.mark_closed()) return e;
    pd_unblock(pd);          // waiters wake with -EBADF
    pd->fdmu.wait_idle();    // in-flight operations leave first
    if (pd->pollable) {
        Port *port = pd->port.load(std::memory_order_acquire);
        port->close(pd->fd, pd);
        // np_close returns with the file released (the peer sees the close,
        // the address is free): wait for the port to let go of it, reaping
        // its poller from here in case its owner is busy.  Bounded: a
        // kernel that never answers costs a second, not a hang.
        for (int64_t nap = 10'000, left = 1'000'000'000; port->closing(pd) && left > 0; left -= nap) {
            netpoll_port(port);
            if (!port->closing(pd)) break;
            np_sleep(nap);
            if (nap < 1'000'000) nap *= 2;
        }
    }
    pd_free(pd);
    rt->descriptors.fetch_sub(1, std::memory_order_relaxed);
    return 0;
}

} // namespace np

extern "C" {

int np_open(int fd, np_fd **out) {
    ErrnoGuard eg;
    return open_fd(fd, 0, out);
}

int np_open_flags(int fd, unsigned flags, np_fd **out) {
    ErrnoGuard eg;
    return open_fd(fd, flags, out);
}

int np_close(np_fd *p) {
    ErrnoGuard eg;
    if (!p) return -EINVAL;
    PollDesc *pd = pd_of(p);
    if (pd->is_free) return -EBADF;
    int fd = pd->fd;
    if (int e = pd_retire(pd)) return e;
    return sys_close(fd) < 0 && errno != EINTR ? -errno : 0;
}

int np_fileno(const np_fd *p) {
    if (!p) return -EINVAL;
    const PollDesc *pd = reinterpret_cast<const PollDesc *>(p);
    return pd->is_free ? -EBADF : pd->fd;
}

static int wait_mode(np_fd *p, int mode) {
    ErrnoGuard eg;
    if (!p) return -EINVAL;
    PollDesc *pd = pd_of(p);
    OpLock lk(pd, mode);
    if (lk.err()) return lk.err();
    if (!pd->pollable) return -ENOTSUP;
    return pd_wait(pd, mode);
}

int np_wait_read(np_fd *p) { return wait_mode(p, NP_READ); }
int np_wait_write(np_fd *p) { return wait_mode(p, NP_WRITE); }

int np_set_deadline(np_fd *p, int64_t deadline, int mode) {
    ErrnoGuard eg;
    if (!p) return -EINVAL;
    if (mode != NP_READ && mode != NP_WRITE && mode != (NP_READ | NP_WRITE)) return -EINVAL;
    PollDesc *pd = pd_of(p);
    if (pd->is_free) return -EBADF;
    if (int e = pd->fdmu.incref()) return e;
    int r = 0;
    if (!pd->pollable) r = -ENOTSUP; // no deadline, never a silent ignore
    else pd_set_deadline(pd, deadline, mode);
    pd->fdmu.decref();
    return r;
}

ssize_t np_read(np_fd *p, void *buf, size_t n) {
    ErrnoGuard eg;
    if (!p || (!buf && n)) return -EINVAL;
    PollDesc *pd = pd_of(p);
    OpLock lk(pd, NP_READ);
    if (lk.err()) return lk.err();
    if (n == 0) return 0; // no syscall, as Go
    if (n > kMaxRW) n = kMaxRW;
    int fd = pd->fd;
    return do_io(pd, NP_READ, false, [&] { return sys_read(fd, buf, n); });
}

ssize_t np_write(np_fd *p, const void *buf, size_t n) {
    ErrnoGuard eg;
    if (!p || (!buf && n)) return -EINVAL;
    PollDesc *pd = pd_of(p);
    OpLock lk(pd, NP_WRITE);
    if (lk.err()) return lk.err();
    int fd = pd->fd;
    size_t done = 0;
    if (int e = pd_check_err(pd, NP_WRITE)) return e;
    do {
        const char *b = static_cast<const char *>(buf) + done;
        size_t chunk = n - done > kMaxRW ? kMaxRW : n - done;
        ssize_t r = do_io(pd, NP_WRITE, false, [&] { return sys_write(fd, b, chunk); });
        if (r < 0) return done ? ssize_t(done) : r; // the error shows next time
        done += size_t(r);
    } while (done < n);
    return ssize_t(done);
}

static bool bad_iov(const struct iovec *iov, int cnt) {
    return cnt < 0 || cnt > IOV_MAX || (cnt && !iov);
}

ssize_t np_readv(np_fd *p, const struct iovec *iov, int cnt) {
    ErrnoGuard eg;
    if (!p || bad_iov(iov, cnt)) return -EINVAL;
    PollDesc *pd = pd_of(p);
    OpLock lk(pd, NP_READ);
    if (lk.err()) return lk.err();
    int fd = pd->fd;
    return do_io(pd, NP_READ, false, [&] { return sys_readv(fd, iov, cnt); });
}

ssize_t np_writev(np_fd *p, const struct iovec *iov, int cnt) {
    ErrnoGuard eg;
    if (!p || bad_iov(iov, cnt)) return -EINVAL;
    PollDesc *pd = pd_of(p);
    OpLock lk(pd, NP_WRITE);
    if (lk.err()) return lk.err();
    int fd = pd->fd;
    return do_io(pd, NP_WRITE, false, [&] { return sys_writev(fd, iov, cnt); });
}

ssize_t np_recvfrom(np_fd *p, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *len) {
    ErrnoGuard eg;
    if (!p || (!buf && n) || (addr && !len)) return -EINVAL;
    PollDesc *pd = pd_of(p);
    OpLock lk(pd, NP_READ);
    if (lk.err()) return lk.err();
    if (n > kMaxRW) n = kMaxRW;
    int fd = pd->fd;
    return do_io(pd, NP_READ, flags & MSG_DONTWAIT,
                 [&] { return sys_recvfrom(fd, buf, n, flags, addr, len); });
}

ssize_t np_sendto(np_fd *p, const void *buf, size_t n, int flags, const struct sockaddr *addr,
                  socklen_t len) {
    ErrnoGuard eg;
    if (!p || (!buf && n)) return -EINVAL;
    PollDesc *pd = pd_of(p);
    OpLock lk(pd, NP_WRITE);
    if (lk.err()) return lk.err();
    if (n > kMaxRW) n = kMaxRW;
    int fd = pd->fd;
    return do_io(pd, NP_WRITE, flags & MSG_DONTWAIT,
                 [&] { return sys_sendto(fd, buf, n, flags | MSG_NOSIGNAL, addr, len); });
}

ssize_t np_recvmsg(np_fd *p, struct msghdr *msg, int flags) {
    ErrnoGuard eg;
    if (!p || !msg) return -EINVAL;
    PollDesc *pd = pd_of(p);
    OpLock lk(pd, NP_READ);
    if (lk.err()) return lk.err();
    int fd = pd->fd;
    return do_io(pd, NP_READ, flags & MSG_DONTWAIT, [&] { return sys_recvmsg(fd, msg, flags); });
}

ssize_t np_sendmsg(np_fd *p, const struct msghdr *msg, int flags) {
    ErrnoGuard eg;
    if (!p || !msg) return -EINVAL;
    PollDesc *pd = pd_of(p);
    OpLock lk(pd, NP_WRITE);
    if (lk.err()) return lk.err();
    int fd = pd->fd;
    return do_io(pd, NP_WRITE, flags & MSG_DONTWAIT,
                 [&] { return sys_sendmsg(fd, msg, flags | MSG_NOSIGNAL); });
}

int np_accept(np_fd *ls, np_fd **out, struct sockaddr *addr, socklen_t *len) {
    ErrnoGuard eg;
    if (!ls || !out || (addr && !len)) return -EINVAL;
    PollDesc *pd = pd_of(ls);
    OpLock lk(pd, NP_READ);
    if (lk.err()) return lk.err();
    if (!pd->pollable) return -ENOTSOCK;
    int lfd = pd->fd;
    for (;;) {
        ssize_t r = io_loop(pd, NP_READ, false,
                            [&] { return ssize_t(sys_accept4(lfd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC)); });
        if (r == -ECONNABORTED) continue; // the peer gave up before we took it
        if (r < 0) return int(r);
        int e = open_fd(int(r), 0, out);
        if (e) sys_close(int(r));
        return e;
    }
}

int np_connect(np_fd *p, const struct sockaddr *addr, socklen_t len) {
    ErrnoGuard eg;
    if (!p || !addr) return -EINVAL;
    PollDesc *pd = pd_of(p);
    OpLock lk(pd, NP_WRITE);
    if (lk.err()) return lk.err();
    if (!pd->pollable) return -ENOTSOCK;
    if (int e = pd_reset(pd, NP_WRITE)) return e;
    int fd = pd->fd;
    if (sys_connect(fd, addr, len) == 0) return 0;
    int e = errno;
    if (e == EISCONN) return 0;
    if (e != EINPROGRESS && e != EALREADY && e != EINTR) return -e;
    if (pd->user_nonblock) return -EINPROGRESS;
    for (;;) {
        // Wake-ups can be spurious (Go #14548, #19289): ask the socket.
        if (int w = pd_wait(pd, NP_WRITE)) return w;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) return -errno;
        if (soerr == EINPROGRESS || soerr == EALREADY || soerr == EINTR) continue;
        if (soerr) return -soerr;
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof ss;
        if (getpeername(fd, reinterpret_cast<struct sockaddr *>(&ss), &sslen) == 0) return 0;
        if (errno != ENOTCONN) return -errno;
    }
}

} // extern "C"
