// splice(2), tee(2) and vmsplice(2) park.  Each attempt is made
// non-blocking: SPLICE_F_NONBLOCK for a pipe's side, and O_NONBLOCK for
// the call itself on a blocking socket's, as sendfile's (the kernel's
// socket side looks at the file's flags only).  When the attempt would
// block, the thread parks on the side that is not ready, then tries again.
#include <cerrno>
#include <fcntl.h>
#include <poll.h>
#include <sys/uio.h>

#include "fd_table.hpp"
#include "real.hpp"
#include "shim.hpp"

namespace shim {

namespace {

// One descriptor of the call.
struct Side {
    int fd;
    int mode;          // NP_READ: the call reads it; NP_WRITE: writes it
    bool parks;        // a pipe or socket whose wait parks here
    bool sock;         // O_NONBLOCK for the call (the program's is off)
    int saved = -1;    // the file's flags while that is set
};

Side side(int fd, int mode) {
    Side s{fd, mode, false, false};
    Kind k = kUnknown;
    s.parks = parks_as(fd, &k);
    s.sock = s.parks && (k == kStream || k == kDgram) && !fd_prog_nonblock(fd);
    return s;
}

bool ready(const Side &s) {
    struct pollfd p = {s.fd, short(s.mode == NP_READ ? POLLIN : POLLOUT), 0};
    return real.poll(&p, 1, 0) != 0; // an error: the call says which
}

// The call with every side non-blocking; -errno.
template <class F> long attempt(Side *s, int n, F call) {
    for (int i = 0; i < n; i++)
        if (s[i].sock) s[i].saved = fd_nonblock_begin(s[i].fd);
    long r = call(SPLICE_F_NONBLOCK);
    int err = errno;
    for (int i = 0; i < n; i++) {
        fd_nonblock_end(s[i].fd, s[i].saved);
        s[i].saved = -1;
    }
    return r < 0 ? -err : r;
}

// call(extra flags) makes the real call.  A side the program made
// non-blocking gives EAGAIN as the kernel's; a close during the park,
// EBADF; a handler, EINTR or a restart as its SA_RESTART says; a socket's
// SO_RCVTIMEO/SO_SNDTIMEO, EAGAIN.
template <class F> long parked(Side *s, int n, F call) {
    Errno keep;
    test_cancel(self());
    for (;;) {
        long r = attempt(s, n, call);
        if (r != -EAGAIN) return ret(keep.pass(r));
        Side *w = nullptr;
        for (int i = 0; i < n && !w; i++)
            if (s[i].parks && !ready(s[i])) w = &s[i];
        // Every side ready, yet it would block: another process took
        // what was ready.  It waits in the kernel, as a plain thread's.
        if (!w) return kernel_call([&] { return call(0u); }, -1L, false, true, true);
        int p = wait_ready(w->fd, w->mode);
        if (p < 0) return ret(p);
    }
}

} // namespace

} // namespace shim

using namespace shim;

extern "C" {

ssize_t splice(int in, loff_t *inoff, int out, loff_t *outoff, size_t len, unsigned flags) {
    auto call = [&](unsigned more) { return real.splice(in, inoff, out, outoff, len, flags | more); };
    // SPLICE_F_NONBLOCK asked for: the pipe's side does not wait, the
    // socket's waits as the file's flags say; the kernel knows which.
    if (!green() || (flags & SPLICE_F_NONBLOCK)) return call(0u);
    Side s[2] = {side(in, NP_READ), side(out, NP_WRITE)};
    if (!s[0].parks && !s[1].parks) return call(0u);
    return parked(s, 2, call);
}

ssize_t tee(int in, int out, size_t len, unsigned flags) {
    auto call = [&](unsigned more) { return real.tee(in, out, len, flags | more); };
    if (!green() || (flags & SPLICE_F_NONBLOCK)) return call(0u);
    Side s[2] = {side(in, NP_READ), side(out, NP_WRITE)};
    if (!s[0].parks && !s[1].parks) return call(0u);
    return parked(s, 2, call);
}

// A pipe's write end takes the pages; its read end gives them.
ssize_t vmsplice(int fd, const struct iovec *iov, size_t n, unsigned flags) {
    auto call = [&](unsigned more) { return real.vmsplice(fd, iov, n, flags | more); };
    if (!green() || (flags & SPLICE_F_NONBLOCK)) return call(0u);
    int fl = real.fcntl(fd, F_GETFL);
    if (fl < 0) return call(0u);
    Side s = side(fd, (fl & O_ACCMODE) == O_RDONLY ? NP_READ : NP_WRITE);
    if (!s.parks) return call(0u);
    return parked(&s, 1, call);
}

} // extern "C"
