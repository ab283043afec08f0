// The preload shim's descriptor table (shim/fd_table.cpp), driven the way
// the shim's interposed calls drive it (shim/io.cpp): files opened, dup'd,
// dup2'd over, closed, their O_NONBLOCK and receive timeouts changed, and
// the table asked what each is.  Checked against the kernel: the kind of
// a file as fstat(2) says, its O_NONBLOCK as F_GETFL says, its timeouts as
// getsockopt(2) says, a registration for every pollable file naming that
// file's number, none left after a close, and the engine's own descriptors
// never closed.
#include <cerrno>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "../../shim/fd_table.hpp"
#include "../../shim/real.hpp"
#include "fuzz.hpp"

using fuzz::fail;
using fuzz::Input;
using namespace shim;

namespace {

constexpr int kMine = 12;
bool trace = getenv("FUZZ_TRACE"); // each operation on stderr

struct State {
    Input in;
    int fd[kMine];
    int n = 0;
};

uint64_t descriptors() {
    np_stats s = {};
    s.size = sizeof s;
    if (np_stats_get(&s)) fail("np_stats_get");
    return s.descriptors;
}

// The shim's close(2): an engine descriptor is kept, a registration dropped.
int shim_close(int fd) {
    Fd *e = fd_entry(fd);
    if (e && e->kind.load() == kInternal) return 0;
    fd_forget(fd);
    return close(fd);
}

void add(State *st, int fd) {
    if (fd < 0) return;
    if (st->n == kMine) {
        shim_close(fd);
        return;
    }
    st->fd[st->n++] = fd;
}

void drop(State *st, int k) {
    st->fd[k] = st->fd[--st->n];
}

int index_of(State *st, int fd) {
    for (int k = 0; k < st->n; k++)
        if (st->fd[k] == fd) return k;
    return -1;
}

Kind truth(int fd) {
    struct stat sb;
    if (fstat(fd, &sb) != 0) return kUnknown;
    if (S_ISSOCK(sb.st_mode)) {
        int type = 0;
        socklen_t len = sizeof type;
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
        return type == SOCK_STREAM ? kStream : kDgram;
    }
    if (S_ISFIFO(sb.st_mode) || S_ISCHR(sb.st_mode)) return kPollable;
    return kDirect;
}

int64_t timeo(int fd, int opt) {
    struct timeval tv = {};
    socklen_t len = sizeof tv;
    if (getsockopt(fd, SOL_SOCKET, opt, &tv, &len) != 0) return 0;
    return int64_t(tv.tv_sec) * 1000000000 + int64_t(tv.tv_usec) * 1000;
}

void open_new(State *st) {
    int p[2];
    switch (st->in.below(8)) {
    case 0:
        if (pipe2(p, st->in.flip() ? O_NONBLOCK : 0) == 0) add(st, p[0]), add(st, p[1]);
        break;
    case 1:
    case 2: {
        static const int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
        if (socketpair(AF_UNIX, types[st->in.below(3)] | (st->in.flip() ? SOCK_NONBLOCK : 0), 0, p) == 0)
            add(st, p[0]), add(st, p[1]);
        break;
    }
    case 3: add(st, memfd_create("np-fuzz", 0)); break;
    case 4: add(st, open("/dev/null", O_RDWR)); break;
    case 5: add(st, open("/", O_RDONLY | O_DIRECTORY)); break;
    case 6: add(st, eventfd(0, st->in.flip() ? EFD_NONBLOCK : 0)); break;
    default: add(st, socket(AF_INET, SOCK_STREAM, 0)); break;
    }
}

int mine(State *st) { return st->n ? st->fd[st->in.below(uint8_t(st->n))] : -1; }

// A number: one of ours, or anything (negative, past the table, closed).
int any_fd(State *st) {
    switch (st->in.below(6)) {
    case 0: return -1 - int(st->in.below(4));
    case 1: return int(st->in.u32());
    case 2: return int(st->in.below(64));
    default: return mine(st);
    }
}

void check_fd(int fd) {
    Fd *e = fd_entry(fd);
    if (fd < 0) {
        if (e) fail("fd_entry(%d) is not null", fd);
        return;
    }
    if (!e) return; // past the table
    Kind want = truth(fd);
    Kind got = fd_kind(fd, e);
    if (got == kInternal) return;
    if (got != want) fail("fd %d: kind %d, the kernel says %d", fd, got, want);
    if (got == kStream || got == kDgram) {
        if (e->rcvtimeo != timeo(fd, SO_RCVTIMEO) || e->sndtimeo != timeo(fd, SO_SNDTIMEO))
            fail("fd %d: timeouts %lld/%lld, the kernel says %lld/%lld", fd, (long long)e->rcvtimeo,
                 (long long)e->sndtimeo, (long long)timeo(fd, SO_RCVTIMEO), (long long)timeo(fd, SO_SNDTIMEO));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && fd_prog_nonblock(fd) != bool(fl & O_NONBLOCK))
        fail("fd %d: O_NONBLOCK %d, the kernel says %d", fd, !(fl & O_NONBLOCK), !!(fl & O_NONBLOCK));
}

void check_registered(int fd) {
    Fd *e = fd_entry(fd);
    if (!e || fd < 0) return;
    Kind k = fd_kind(fd, e);
    if (k == kInternal || k == kUnknown) return;
    np_fd *pd = fd_registered(fd, e);
    // Sockets and pipes are registered; a regular file or a directory never
    // (no readiness).  Character devices, eventfds and such: as the poller
    // takes them (epoll refuses /dev/null).
    struct stat sb;
    if (fstat(fd, &sb) != 0) fail("fd %d: fstat: %s", fd, strerror(errno));
    if ((S_ISSOCK(sb.st_mode) || S_ISFIFO(sb.st_mode)) && !pd) fail("fd %d: a socket or pipe not registered", fd);
    if ((S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode)) && pd) fail("fd %d: a regular file registered", fd);
    if (pd && np_fileno(pd) != fd) fail("fd %d: registration names fd %d", fd, np_fileno(pd));
}

int run(void *p) {
    auto *st = static_cast<State *>(p);
    uint64_t base = descriptors();
    for (int ops = 0; !st->in.empty() && ops < 64; ops++) {
        unsigned op = st->in.below(12);
        if (trace) {
            fprintf(stderr, "op %u, ours:", op);
            for (int k = 0; k < st->n; k++) fprintf(stderr, " %d", st->fd[k]);
            fputc('\n', stderr);
        }
        switch (op) {
        case 0: case 1: open_new(st); break;
        case 2: { // close(2) through the shim
            int fd = mine(st);
            if (fd < 0) break;
            drop(st, index_of(st, fd));
            if (shim_close(fd) != 0) fail("close(%d): %s", fd, strerror(errno));
            Fd *e = fd_entry(fd);
            if (e && (e->pd.load() || e->kind.load() != kUnknown)) fail("fd %d: an entry left after close", fd);
            break;
        }
        case 3: { // dup, F_DUPFD
            int fd = mine(st);
            if (fd < 0) break;
            int r = st->in.flip() ? dup(fd) : fcntl(fd, F_DUPFD_CLOEXEC, int(st->in.below(64)));
            if (r >= 0) fd_reset(r);
            add(st, r);
            break;
        }
        case 4: { // dup2 / dup3 over one of ours, or onto a fresh number
            int old = any_fd(st), nfd = st->in.flip() ? mine(st) : 100 + int(st->in.below(16));
            if (nfd < 0 || old == nfd) break;
            Fd *e = fd_entry(nfd);
            if (e && e->kind.load() == kInternal) break; // the shim says EBUSY
            bool was_mine = index_of(st, nfd) >= 0;
            bool open_before = fcntl(nfd, F_GETFD) >= 0;
            if (!was_mine && open_before) break; // not ours: leave it alone
            fd_forget(nfd);
            int r = st->in.flip() ? dup2(old, nfd) : dup3(old, nfd, O_CLOEXEC);
            if (r >= 0 && !was_mine) add(st, r);
            if (r < 0 && was_mine && fcntl(nfd, F_GETFD) < 0) drop(st, index_of(st, nfd));
            break;
        }
        case 5: { // F_SETFL: O_NONBLOCK on or off
            int fd = mine(st);
            if (fd < 0) break;
            int fl = fcntl(fd, F_GETFL);
            if (fl >= 0 && fcntl(fd, F_SETFL, st->in.flip() ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) == 0)
                fd_flags_changed();
            break;
        }
        case 6: { // SO_RCVTIMEO / SO_SNDTIMEO, as the shim's setsockopt
            int fd = mine(st);
            if (fd < 0) break;
            struct timeval tv = {time_t(st->in.below(3)), suseconds_t(st->in.u16() % 1000000)};
            if (setsockopt(fd, SOL_SOCKET, st->in.flip() ? SO_RCVTIMEO : SO_SNDTIMEO, &tv, sizeof tv) == 0)
                fd_timeouts_changed();
            break;
        }
        case 7: case 8: check_fd(any_fd(st)); break;
        case 9: check_registered(mine(st)); break;
        case 10: { // a program closing every descriptor it does not know
            int fd = int(st->in.below(64));
            Fd *e = fd_entry(fd);
            if (!e || e->kind.load() != kInternal) break;
            if (shim_close(fd) != 0 || fcntl(fd, F_GETFD) < 0) fail("engine fd %d closed", fd);
            break;
        }
        default: { // forget without a close: the registration comes back on use
            int fd = mine(st);
            if (fd < 0) break;
            if (int r = fd_forget(fd)) fail("fd_forget(%d): %d", fd, r);
            break;
        }
        }
    }
    while (st->n) {
        int fd = st->fd[0];
        drop(st, 0);
        if (shim_close(fd) != 0) fail("close(%d) at the end: %s", fd, strerror(errno));
    }
    if (descriptors() != base) fail("%llu registrations left, %llu before", (unsigned long long)descriptors(),
                                    (unsigned long long)base);
    return 0;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    real_init();
    if (int r = fd_start_runtime()) fail("fd_start_runtime: %d", r);
    fuzz::start_symbolizer();
    return 0;
}

// Counted around each run (libFuzzer opens files of its own between runs).
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int base_fds = fuzz::open_fds();
    State st{Input{data, size}, {}, 0};
    if (int r = np_main(run, &st)) fail("np_main: %d", r);
    int now = fuzz::open_fds();
    if (now != base_fds) {
        fuzz::list_fds();
        fail("%d descriptors open after the run, %d before", now, base_fds);
    }
    return 0;
}
