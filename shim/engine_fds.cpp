// The engine opens descriptors after start-up too (a worker added while
// others are stuck in the kernel: its epoll set or io_uring ring, and its
// wake-up eventfd).  They are noted as they are made, by who called: the
// engine's code.  (Not in fd_table.cpp, which
// t/fuzz links alone.)
#include <atomic>
#include <cerrno>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "fd_table.hpp"
#include "real.hpp"
#include "shim.hpp"

#if __has_include(<liburing.h>)
#include <liburing.h>
#define SHIM_LIBURING 1
#endif

namespace shim {
namespace {

// The executable segment holding `in`, found once by dl_iterate_phdr(),
// which takes only ld.so's list lock.  Not dladdr() at each call: it takes
// dl_load_lock, which a thread parked in a library's constructor under
// dlopen() may hold (scheduler.cpp, enter_tls), and a worker added meanwhile
// for the threads that wait for it makes its epoll set here.
struct Segment {
    uintptr_t lo = 0, hi = 0;
};
int find_segment(struct dl_phdr_info *info, size_t, void *arg) {
    auto *s = static_cast<Segment *>(arg);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) &ph = info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
        if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X) && s->lo >= lo && s->lo < lo + ph.p_memsz) {
            *s = Segment{lo, lo + ph.p_memsz};
            return 1;
        }
    }
    return 0;
}
Segment segment_of(const void *in) {
    Segment s{reinterpret_cast<uintptr_t>(in), 0};
    if (!dl_iterate_phdr(find_segment, &s)) s = Segment{};
    return s;
}
bool within(const Segment &s, const void *caller) {
    auto a = reinterpret_cast<uintptr_t>(caller);
    return a >= s.lo && a < s.hi;
}

// The engine's code and the shim's, found once.
bool from_engine(const void *caller) {
    static Segment engine = segment_of(reinterpret_cast<void *>(&np_init));
    return within(engine, caller);
}
bool from_shim(const void *caller) {
    static Segment shim = segment_of(reinterpret_cast<void *>(&segment_of));
    return within(shim, caller);
}

// Never 0, 1 or 2: a program started with them closed writes its output
// there, or opens /dev/null and dup2()s it there, as daemons do.
int above_stdio(int fd) {
    if (fd < 0 || fd > 2) return fd;
    int moved = int(real.syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 3, 0, 0, 0));
    if (moved < 0) return fd;
    real.syscall(SYS_close, fd, 0, 0, 0, 0, 0);
    return moved;
}

// The shim's short-lived epoll sets (a poll(2) or select(2) over several
// descriptors, a private wait) live as long as the wait, and a worker added
// later keeps its epoll set and eventfd: at the lowest free number they
// would hold one the program just closed (its read(2) of it gets no EBADF,
// as CPython's test_ssl checks) or would get next from open(2) or socket(2),
// where POSIX gives the lowest free one.  So they move high: to half the
// open-file limit, at most 1024 (the kernel's table grows to the number, so
// not to the limit itself).  The program can meet one at its first number
// only for the few instructions before the move.  With no room up there,
// it stays where it is, above 0, 1 and 2.
int above_program(int fd) {
    static std::atomic<long> found{0}; // no guard: poll(2) is async-signal-safe
    long lowest = found.load(std::memory_order_relaxed);
    if (!lowest) {
        struct rlimit rl;
        if (real.syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, long(&rl), 0, 0) != 0) lowest = 3;
        else lowest = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur / 2 > 1024 ? 1024 : long(rl.rlim_cur / 2);
        found.store(lowest, std::memory_order_relaxed);
    }
    if (fd < 0 || fd >= lowest) return fd;
    int moved = int(real.syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, lowest, 0, 0, 0));
    if (moved < 0) return above_stdio(fd); // the limit lowered since, or full there
    real.syscall(SYS_close, fd, 0, 0, 0, 0, 0);
    return moved;
}

int opened(int fd, const void *caller) {
    if (fd < 0 || active <= 0) return fd;
    bool engine = from_engine(caller);
    if (!engine && !from_shim(caller)) return fd; // the program's
    fd = above_program(fd);
    if (engine)
        if (Fd *e = fd_entry(fd)) e->kind.store(kInternal, std::memory_order_release);
    return fd;
}

template <class T> T next(const char *name) { return reinterpret_cast<T>(dlsym(RTLD_NEXT, name)); }

} // namespace
} // namespace shim

extern "C" {

int epoll_create(int size) {
    shim::on(); // real.* are set
    return shim::opened(shim::real.epoll_create(size), __builtin_return_address(0));
}

int epoll_create1(int flags) {
    shim::on(); // real.* are set
    return shim::opened(shim::real.epoll_create1(flags), __builtin_return_address(0));
}

int eventfd(unsigned int count, int flags) {
    shim::on(); // real.* are set
    return shim::opened(shim::real.eventfd(count, flags), __builtin_return_address(0));
}

#ifdef SHIM_LIBURING
// liburing makes the ring with a system call of its own: its ring_fd.
// The engine loads liburing itself, out of the global scope
// (ports/uring_link.cpp), and calls here through it: liburing is then found
// in its handle, not next.
int io_uring_queue_init_params(unsigned entries, struct io_uring *ring, struct io_uring_params *p) {
    using Init = int (*)(unsigned, struct io_uring *, struct io_uring_params *);
    static auto fn = [] {
        Init f = shim::next<Init>("io_uring_queue_init_params");
        void *h = f ? nullptr : dlopen("liburing.so.2", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
        return h ? reinterpret_cast<Init>(dlsym(h, "io_uring_queue_init_params")) : f;
    }();
    if (!fn) return -ENOSYS;
    int r = fn(entries, ring, p);
    if (r == 0) { // the ring's descriptor may move: a dup is the same ring
        int fd = shim::opened(ring->ring_fd, __builtin_return_address(0));
        if (ring->enter_ring_fd == ring->ring_fd) ring->enter_ring_fd = fd;
        ring->ring_fd = fd;
    }
    return r;
}
#endif

} // extern "C"
