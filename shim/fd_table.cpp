#include "fd_table.hpp"

#include <cerrno>
#include <climits>
#include <dlfcn.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "real.hpp"
#include "shim.hpp"

namespace shim {

// A seccomp filter is in (process.cpp's note_seccomp_filter): no probes of
// our own from now on.  Defined here, where it is read most: t/fuzz links
// this file alone.
std::atomic<bool> sandboxed{false};

namespace {

np_fd *const kBusy = reinterpret_cast<np_fd *>(1);

std::atomic<Fd *> table{nullptr};
std::atomic<size_t> table_n{0};
// One past the highest number looked up: the entries above it were never
// written, so a forked child's sweep stops there (and leaves their pages
// untouched).
std::atomic<size_t> table_used{0};

void note_used(size_t fd) {
    size_t u = table_used.load(std::memory_order_relaxed);
    while (u <= fd && !table_used.compare_exchange_weak(u, fd + 1, std::memory_order_seq_cst)) {
    }
}

// Sized by the hard open-file limit (only touched entries cost memory).
// Made without a lock, so that a signal handler's call, landing inside the
// first one on the same thread, makes its own instead of waiting for good:
// the first size and the first mapping stand, a loser's goes.
Fd *table_init() {
    size_t want = 1u << 16, n = 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY) want = rl.rlim_max;
    if (want > (1u << 24)) want = 1u << 24;
    if (!table_n.compare_exchange_strong(n, want, std::memory_order_acq_rel)) want = n;
    void *m = mmap(nullptr, want * sizeof(Fd), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m == MAP_FAILED) return nullptr;
    Fd *t = nullptr; // all-zero is a valid empty Fd
    if (table.compare_exchange_strong(t, static_cast<Fd *>(m), std::memory_order_acq_rel)) return static_cast<Fd *>(m);
    munmap(m, want * sizeof(Fd));
    return t;
}

int64_t timeo(int fd, int opt) {
    struct timeval tv = {};
    socklen_t len = sizeof tv;
    if (getsockopt(fd, SOL_SOCKET, opt, &tv, &len) != 0) return 0;
    return ns_sat(int64_t(tv.tv_sec), int64_t(tv.tv_usec) * 1000);
}

std::atomic<uint32_t> timeouts_gen{1};

// The generation first: a change made while these are read is seen next time.
// Under a seccomp filter they are not asked (Firefox's refuses): those
// set through setsockopt here (fd_timeout_set) are all that is known.
void read_timeouts(int fd, Fd *e) {
    uint32_t gen = timeouts_gen.load(std::memory_order_acquire);
    if (!sandboxed.load(std::memory_order_relaxed)) {
        e->rcvtimeo = timeo(fd, SO_RCVTIMEO);
        e->sndtimeo = timeo(fd, SO_SNDTIMEO);
    }
    e->timeo_gen.store(gen, std::memory_order_release);
}

} // namespace

Fd *fd_entry(int fd) {
    Fd *t = table.load(std::memory_order_acquire);
    if (!t && !(t = table_init())) return nullptr;
    if (fd < 0 || size_t(fd) >= table_n.load(std::memory_order_relaxed)) return nullptr;
    if (size_t(fd) >= table_used.load(std::memory_order_relaxed)) note_used(size_t(fd));
    return &t[fd];
}

void fd_timeouts_changed() { timeouts_gen.fetch_add(1, std::memory_order_acq_rel); }

// Files without an inode of their own share one anonymous inode: only
// their /proc link tells them apart.  The event files among them poll
// readable when a read would not block; the rest (an epoll set, a pidfd)
// fail a read at once, so they are called as they are.
static Kind anon_kind(int fd, Fd *e) {
    static const struct {
        const char *name;
        uint8_t min_read;
    } pollable[] = {{"anon_inode:[eventfd]", 8},
                    {"anon_inode:[timerfd]", 8},
                    {"anon_inode:[signalfd]", 128},
                    {"anon_inode:inotify", 0},
                    {"anon_inode:[fanotify]", 0}};
    char path[40], link[64];
    if (sandboxed.load(std::memory_order_relaxed)) return kDirect; // as without procfs
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n <= 0) return kDirect; // no procfs: the call as it is
    link[n] = 0;
    for (const auto &p : pollable)
        if (strcmp(link, p.name) == 0) {
            e->min_read = p.min_read;
            return kPollable;
        }
    return kDirect;
}

// A TCP socket with an upper layer (kernel TLS): a read of it may stop
// at a record's end with more queued.
bool tcp_ulp(int fd) {
    char name[16] = {};
    socklen_t len = sizeof name;
    return getsockopt(fd, IPPROTO_TCP, TCP_ULP, name, &len) == 0 && name[0];
}

Kind fd_kind(int fd, Fd *e) {
    auto k = Kind(e->kind.load(std::memory_order_acquire));
    if ((k == kStream || k == kDgram) &&
        e->timeo_gen.load(std::memory_order_acquire) != timeouts_gen.load(std::memory_order_acquire))
        read_timeouts(fd, e);
    if (k != kUnknown) return k;
    struct stat st;
    if (fstat(fd, &st) != 0) return kUnknown; // EBADF: let the call say so
    if (S_ISSOCK(st.st_mode) && sandboxed.load(std::memory_order_relaxed)) {
        // A socket first seen under a seccomp filter: its type would take a
        // getsockopt the program did not make, which Chromium's renderer
        // filter answers by crashing the process.  Its calls go to libc as
        // they are (a blocking one holds its worker, as a call the library
        // cannot see does); the sockets seen before the filter keep theirs.
        k = kDirect;
    } else if (S_ISSOCK(st.st_mode)) {
        int type = 0;
        socklen_t len = sizeof type;
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
        k = type == SOCK_STREAM ? kStream : kDgram;
        // Not SCTP or MPTCP: a read of theirs may stop at a message's end.
        // (Not asked under a seccomp filter: then a short read proves nothing.)
        int proto = -1;
        len = sizeof proto;
        e->drains = k == kStream && !sandboxed.load(std::memory_order_relaxed) &&
                    getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 &&
                    (proto == 0 || proto == IPPROTO_TCP);
        if (e->drains && proto == IPPROTO_TCP) e->drains = !tcp_ulp(fd);
        read_timeouts(fd, e);
    } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
        k = kPollable;
        // Until a call says otherwise; never under a seccomp filter, which
        // may refuse preadv2 and pwritev2 (Firefox's does, by SIGSYS).
        e->nowait = S_ISFIFO(st.st_mode) && !sandboxed.load(std::memory_order_relaxed);
        e->write_direct = S_ISCHR(st.st_mode) && !isatty(fd);
    } else if ((st.st_mode & S_IFMT) == 0) {
        k = anon_kind(fd, e);
    } else {
        k = kDirect;
    }
    e->kind.store(k, std::memory_order_release);
    return k;
}

np_fd *fd_registered_now(Fd *e) {
    np_fd *pd = e->pd.load(std::memory_order_acquire);
    return pd == kBusy ? nullptr : pd;
}

np_fd *fd_registered(int fd, Fd *e) {
    for (;;) {
        np_fd *pd = e->pd.load(std::memory_order_acquire);
        if (pd && pd != kBusy) return pd;
        if (pd == kBusy) {
            sched_yield();
            continue;
        }
        if (!e->pd.compare_exchange_strong(pd, kBusy)) continue;
        np_fd *got = nullptr;
        if (npshim_fd_open(fd, &got) != 0) got = nullptr;
        e->pd.store(got, std::memory_order_release);
        return got;
    }
}

namespace {
// What the number's file was found to be: another file, or none, now.
void unclassify(Fd *e) {
    e->kind.store(kUnknown, std::memory_order_release);
    e->nb_gen.store(0, std::memory_order_release);
    e->rcvtimeo = e->sndtimeo = 0;
    e->min_read = 0;
    e->nowait = false;
    e->write_direct = false;
    e->drains = false;
    e->accepted = false;
    e->drained.store(0, std::memory_order_relaxed);
}
} // namespace

void fd_reset(int fd) {
    if (Fd *e = fd_entry(fd)) unclassify(e);
}

void (*fd_closing)(int fd);

int fd_forget(int fd) {
    Fd *e = fd_entry(fd);
    if (!e) return 0;
    e->closes.fetch_add(1, std::memory_order_seq_cst);
    if (e->private_waits.load(std::memory_order_seq_cst) && fd_closing) fd_closing(fd);
    np_fd *pd;
    for (;;) {
        pd = e->pd.load(std::memory_order_acquire);
        if (pd == kBusy) {
            sched_yield();
            continue;
        }
        if (e->pd.compare_exchange_strong(pd, nullptr)) break;
    }
    unclassify(e);
    return pd ? npshim_fd_forget(pd) : 0;
}

constexpr uint32_t kCloseWaiters = 1u << 31;

void fd_close_begin(Fd *e) { e->closing.fetch_add(1, std::memory_order_seq_cst); }

void fd_close_end(Fd *e) {
    int err = errno; // the close's
    uint32_t c = e->closing.fetch_sub(1, std::memory_order_seq_cst) - 1;
    // The last close under way: its waiters go on.
    if (c == kCloseWaiters && e->closing.compare_exchange_strong(c, 0, std::memory_order_seq_cst))
        npshim_futex_wake(reinterpret_cast<const uint32_t *>(&e->closing), INT_MAX);
    errno = err;
}

void fd_close_wait(int fd) {
    Fd *e = fd_entry(fd);
    if (!e) return;
    int err = errno;
    uint32_t c = e->closing.load(std::memory_order_seq_cst);
    while (c & ~kCloseWaiters) {
        if (!(c & kCloseWaiters) && !e->closing.compare_exchange_weak(c, c | kCloseWaiters, std::memory_order_seq_cst))
            continue;
        npshim_futex_wait(reinterpret_cast<const uint32_t *>(&e->closing), c | kCloseWaiters, 0);
        c = e->closing.load(std::memory_order_seq_cst);
    }
    errno = err;
}

namespace {
std::atomic<uint32_t> flags_gen{1};
// O_NONBLOCK and the timeouts belong to the open file, which a child (or
// a parent) shares: once one may exist, a change made there is not seen
// here, so the caches below are not trusted (one F_GETFL per call that
// would block, one getsockopt per park with a timeout to know).
std::atomic<bool> shared{false};
} // namespace

void fd_flags_changed() { flags_gen.fetch_add(1, std::memory_order_acq_rel); }

// Stored once: every fork calls this, and a page written after a fork is
// copied (in the parent while the child lives, and in the child).
void fd_files_shared() {
    if (!shared.load(std::memory_order_relaxed)) shared.store(true, std::memory_order_relaxed);
}

bool fd_files_are_shared() { return shared.load(std::memory_order_relaxed); }

void fd_timeout_set(int fd, int opt, const void *val, socklen_t len) {
    Fd *e = fd_entry(fd);
    if (!e || !val || len < sizeof(struct timeval)) return;
    auto *tv = static_cast<const struct timeval *>(val);
    (opt == SO_RCVTIMEO ? e->rcvtimeo : e->sndtimeo) = ns_sat(int64_t(tv->tv_sec), int64_t(tv->tv_usec) * 1000);
}

int64_t fd_timeout(int fd, Fd *e, int mode) {
    if (shared.load(std::memory_order_relaxed) && !sandboxed.load(std::memory_order_relaxed)) {
        auto k = Kind(e->kind.load(std::memory_order_acquire));
        if (k == kStream || k == kDgram) return timeo(fd, mode == NP_READ ? SO_RCVTIMEO : SO_SNDTIMEO);
    }
    return mode == NP_READ ? e->rcvtimeo : e->sndtimeo;
}

bool fd_prog_nonblock(int fd) {
    Fd *e = fd_entry(fd);
    uint32_t gen = flags_gen.load(std::memory_order_acquire);
    if (e && e->nb_gen.load(std::memory_order_acquire) == gen && !shared.load(std::memory_order_relaxed))
        return e->nb;
    int fl = real.fcntl(fd, F_GETFL);
    bool nb = fl >= 0 && (fl & O_NONBLOCK);
    if (e && fl >= 0) {
        e->nb = nb;
        e->nb_gen.store(gen, std::memory_order_release);
    }
    return nb;
}


int fd_nonblock_begin(int fd) {
    int fl = real.fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_NONBLOCK) || real.fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) return -1;
    return fl;
}

void fd_nonblock_end(int fd, int saved) {
    if (saved < 0) return;
    int e = errno; // the call's
    real.fcntl(fd, F_SETFL, saved);
    errno = e;
}

void fd_after_fork() {
    fd_files_shared(); // with the parent
    Fd *t = table.load(std::memory_order_relaxed);
    for (size_t fd = 0, n = t ? table_used.load(std::memory_order_relaxed) : 0; fd < n; fd++) {
        Fd &e = t[fd];
        if (e.kind.load(std::memory_order_relaxed) == kInternal) real.close(int(fd));
        if (e.kind.load(std::memory_order_relaxed) == kUnknown && !e.pd.load(std::memory_order_relaxed)) continue;
        e.pd.store(nullptr, std::memory_order_relaxed);
        unclassify(&e);
    }
}

int fd_start_runtime() {
    fd_entry(0);
    // The descriptors the engine opens (its pollers, its wake-ups) are
    // noted as internal as they are made (engine_fds.cpp), now and later.
    return np_init(nullptr);
}

} // namespace shim
