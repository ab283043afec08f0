// The engine opens descriptors after start-up too (a worker added while
// others are stuck in the kernel: its epoll set or io_uring ring, and its
// wake-up eventfd).  They are noted as they are made, by who called: the
// engine's code.  (Not in fd_table.cpp, which
// t/fuzz links alone.)
#include <cerrno>
#include <dlfcn.h>
#include <fcntl.h>
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

// The load address of the object holding `in`, or null.
void *object_of(const void *in) {
    Dl_info i;
    return in && dladdr(in, &i) ? i.dli_fbase : nullptr;
}

// The caller's object, looked up once per call (epoll_create1 runs for
// every short-lived set); the engine's and the shim's found once.
bool from_engine(void *caller_obj) {
    static void *engine = object_of(reinterpret_cast<void *>(&np_init));
    return engine && caller_obj == engine;
}
bool from_shim(void *caller_obj) {
    static void *shim = object_of(reinterpret_cast<void *>(&object_of));
    return shim && caller_obj == shim;
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

int opened(int fd, const void *caller) {
    if (fd < 0 || active <= 0) return fd;
    void *obj = object_of(caller);
    bool engine = from_engine(obj);
    if (!engine && !from_shim(obj)) return fd; // the program's
    fd = above_stdio(fd);
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
int io_uring_queue_init_params(unsigned entries, struct io_uring *ring, struct io_uring_params *p) {
    static auto fn = shim::next<int (*)(unsigned, struct io_uring *, struct io_uring_params *)>(
        "io_uring_queue_init_params");
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
