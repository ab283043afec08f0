// Every system call the engine makes, made directly: a preload shim
// interposes libc's wrappers (read, close, poll, syscall...), and the engine
// calling them would recurse into itself; libc's read and write are also
// cancellation points (two extra calls around each).  Each sys_NAME keeps
// the contract of libc's NAME (-1 and errno on failure; sys_clock_nanosleep
// returns the error, as clock_nanosleep).  t/imports-check.sh keeps it so.
#pragma once
#include <cerrno>
#include <fcntl.h>
#include <cstdint>
#include <ctime>
#include <csignal>
#include <cstring>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fault.hpp" // test builds only (-DNP_FAULTS); empty otherwise

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "netpoll: no raw system calls for this architecture"
#endif

namespace np {

inline long raw_syscall3(long nr, long a, long b, long c) {
#if defined(__x86_64__)
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = nr;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
#endif
}

inline long raw_syscall6(long nr, long a, long b, long c, long d, long e, long f) {
#if defined(__x86_64__)
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return r;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = nr;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
#endif
}

inline long raw_syscall4(long nr, long a, long b, long c, long d) { return raw_syscall6(nr, a, b, c, d, 0, 0); }

inline ssize_t sys_result(long r) {
    if (r < 0 && r > -4096) {
        errno = int(-r);
        return -1;
    }
    return r;
}

// NP_FAULTS (src/fault.hpp): the call fails with errno e without being made.
#ifdef NP_FAULTS
inline ssize_t fault_fail(int e) {
    errno = e;
    return -1;
}
// An I/O wrapper's fault: fail it, or shorten it (a copy of its iovec).
#define NP_FAULT_IO(op, fd, n)                                                  \
    do {                                                                       \
        if (int fault_e_ = fault_io(op, fd, &(n))) return fault_fail(fault_e_); \
    } while (0)
#define NP_FAULT_IOV(op, fd, iov, cnt)                                         \
    struct iovec fault_tmp_[kFaultIov];                                        \
    do {                                                                       \
        size_t fault_all_ = fault_iov_len(iov, cnt), fault_n_ = fault_all_;    \
        NP_FAULT_IO(op, fd, fault_n_);                                         \
        if (fault_n_ < fault_all_) {                                           \
            cnt = fault_clip_iov(iov, cnt, fault_n_, fault_tmp_);              \
            iov = fault_tmp_;                                                  \
        }                                                                      \
    } while (0)
#else
#define NP_FAULT_IO(op, fd, n) ((void)0)
#define NP_FAULT_IOV(op, fd, iov, cnt) ((void)0)
#endif

inline ssize_t sys_read(int fd, void *buf, size_t n) {
    NP_FAULT_IO(kFaultRead, fd, n);
    return sys_result(raw_syscall3(SYS_read, fd, long(buf), long(n)));
}

inline ssize_t sys_write(int fd, const void *buf, size_t n) {
    NP_FAULT_IO(kFaultWrite, fd, n);
    return sys_result(raw_syscall3(SYS_write, fd, long(buf), long(n)));
}

inline ssize_t sys_pread(int fd, void *buf, size_t n, off_t off) {
    return sys_result(raw_syscall6(SYS_pread64, fd, long(buf), long(n), long(off), 0, 0));
}

inline ssize_t sys_readv(int fd, const struct iovec *iov, int cnt) {
    NP_FAULT_IOV(kFaultRead, fd, iov, cnt);
    return sys_result(raw_syscall3(SYS_readv, fd, long(iov), cnt));
}

inline ssize_t sys_writev(int fd, const struct iovec *iov, int cnt) {
    NP_FAULT_IOV(kFaultWrite, fd, iov, cnt);
    return sys_result(raw_syscall3(SYS_writev, fd, long(iov), cnt));
}

inline int sys_close(int fd) {
#ifdef NP_FAULTS
    int r = int(sys_result(raw_syscall3(SYS_close, fd, 0, 0)));
    return r == 0 && fault_close() ? int(fault_fail(EINTR)) : r; // closed all the same
#else
    return int(sys_result(raw_syscall3(SYS_close, fd, 0, 0)));
#endif
}

inline int sys_fcntl(int fd, int cmd, long arg = 0) {
    return int(sys_result(raw_syscall3(SYS_fcntl, fd, cmd, arg)));
}

inline int sys_ioctl(int fd, unsigned long req, void *arg) {
    return int(sys_result(raw_syscall3(SYS_ioctl, fd, long(req), long(arg))));
}

inline int sys_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
#ifdef NP_FAULTS
    size_t fault_n = 0;
    NP_FAULT_IO(kFaultAccept, fd, fault_n);
#endif
    return int(sys_result(raw_syscall6(SYS_accept4, fd, long(addr), long(len), flags, 0, 0)));
}

inline int sys_connect(int fd, const struct sockaddr *addr, socklen_t len) {
#ifdef NP_FAULTS
    int r = int(sys_result(raw_syscall3(SYS_connect, fd, long(addr), long(len))));
    // Started: as a signal's EINTR, the connection goes on (and its end
    // makes the socket writable).
    if (r < 0 && errno == EINPROGRESS && fault_connect(fd)) return int(fault_fail(EINTR));
    return r;
#else
    return int(sys_result(raw_syscall3(SYS_connect, fd, long(addr), long(len))));
#endif
}

inline ssize_t sys_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr,
                            socklen_t *len) {
    NP_FAULT_IO(kFaultRecv, fd, n);
    return sys_result(raw_syscall6(SYS_recvfrom, fd, long(buf), long(n), flags, long(addr), long(len)));
}

inline ssize_t sys_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
                          socklen_t len) {
    NP_FAULT_IO(kFaultSend, fd, n);
    return sys_result(raw_syscall6(SYS_sendto, fd, long(buf), long(n), flags, long(addr), long(len)));
}

inline ssize_t sys_recvmsg(int fd, struct msghdr *msg, int flags) {
#ifdef NP_FAULTS
    struct msghdr m = *msg;
    const struct iovec *iov = m.msg_iov;
    int cnt = int(m.msg_iovlen);
    NP_FAULT_IOV(kFaultRecv, fd, iov, cnt);
    m.msg_iov = const_cast<struct iovec *>(iov);
    m.msg_iovlen = size_t(cnt);
    ssize_t r = sys_result(raw_syscall3(SYS_recvmsg, fd, long(&m), flags));
    msg->msg_namelen = m.msg_namelen;
    msg->msg_controllen = m.msg_controllen;
    msg->msg_flags = m.msg_flags;
    return r;
#else
    return sys_result(raw_syscall3(SYS_recvmsg, fd, long(msg), flags));
#endif
}

inline ssize_t sys_sendmsg(int fd, const struct msghdr *msg, int flags) {
#ifdef NP_FAULTS
    struct msghdr m = *msg;
    const struct iovec *iov = m.msg_iov;
    int cnt = int(m.msg_iovlen);
    NP_FAULT_IOV(kFaultSend, fd, iov, cnt);
    m.msg_iov = const_cast<struct iovec *>(iov);
    m.msg_iovlen = size_t(cnt);
    return sys_result(raw_syscall3(SYS_sendmsg, fd, long(&m), flags));
#else
    return sys_result(raw_syscall3(SYS_sendmsg, fd, long(msg), flags));
#endif
}

// The kernel's signal set is 8 bytes (_NSIG / 8), not glibc's sigset_t.
constexpr long kKernelSigsetSize = 8;

// epoll_pwait with no mask: aarch64 has no epoll_wait.
inline int sys_epoll_wait(int epfd, struct epoll_event *evs, int cap, int timeout_ms) {
#ifdef NP_FAULTS
    if (timeout_ms != 0 && fault_wait()) return int(fault_fail(EINTR));
#endif
    return int(sys_result(
        raw_syscall6(SYS_epoll_pwait, epfd, long(evs), cap, timeout_ms, 0, kKernelSigsetSize)));
}

#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441 // the same number on x86-64 and aarch64
#endif

// epoll_pwait2 with no mask: the delay to the nanosecond (<0 forever).
// Linux 5.11 and later; ENOSYS before (EPERM under some seccomp filters).
inline int sys_epoll_wait_ns(int epfd, struct epoll_event *evs, int cap, int64_t delay_ns) {
    struct timespec ts = {time_t(delay_ns / 1000000000), long(delay_ns % 1000000000)};
    struct timespec *tp = delay_ns < 0 ? nullptr : &ts;
#ifdef NP_FAULTS
    if (delay_ns != 0 && fault_wait()) return int(fault_fail(EINTR));
#endif
    return int(sys_result(raw_syscall6(SYS_epoll_pwait2, epfd, long(evs), cap, long(tp), 0, kKernelSigsetSize)));
}

// ppoll with no mask: aarch64 has no poll.  The delay in nanoseconds (<0
// forever): ppoll takes a timespec, so a timer due in 50 us is not
// rounded up to poll's 1 ms.
inline int sys_poll(struct pollfd *fds, nfds_t n, int64_t delay_ns) {
    struct timespec ts = {time_t(delay_ns / 1000000000), long(delay_ns % 1000000000)};
    struct timespec *tp = delay_ns < 0 ? nullptr : &ts;
#ifdef NP_FAULTS
    if (delay_ns != 0 && fault_wait()) return int(fault_fail(EINTR));
#endif
    return int(sys_result(raw_syscall6(SYS_ppoll, long(fds), long(n), long(tp), 0, kKernelSigsetSize, 0)));
}

// As clock_nanosleep: 0 or the error number, errno untouched.
inline int sys_clock_nanosleep(clockid_t clk, int flags, const struct timespec *req,
                               struct timespec *rem) {
#ifdef NP_FAULTS
    if (fault_wait()) { // interrupted at once: nothing of it slept
        if (rem && !(flags & TIMER_ABSTIME)) *rem = *req;
        return EINTR;
    }
#endif
    return int(-raw_syscall6(SYS_clock_nanosleep, clk, flags, long(req), long(rem), 0, 0));
}

inline long sys_futex(uint32_t *word, int op, uint32_t val, const struct timespec *ts,
                      uint32_t *word2, uint32_t val3) {
#ifdef NP_FAULTS
    int cmd = op & FUTEX_CMD_MASK;
    if ((cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET) && fault_wait()) return fault_fail(EINTR);
#endif
    return sys_result(raw_syscall6(SYS_futex, long(word), op, val, long(ts), long(word2), val3));
}

// A descriptor the engine keeps, moved above 0, 1 and 2 if it got one of
// them: a program started with those closed would write its output there,
// or dup2() /dev/null onto them, as daemons do.
inline int sys_above_stdio(int fd) {
    if (fd < 0 || fd > 2) return fd;
    int moved = sys_fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0) return fd;
    sys_close(fd);
    return moved;
}

// One kept for good, above the numbers the program uses, as the preload
// shim moves its own: half the open-file limit, at most 1024, so that the
// program's open(2) still gets the lowest free number.
inline int sys_above_program(int fd) {
    struct rlimit rl;
    if (fd < 0 || raw_syscall6(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, long(&rl), 0, 0) != 0) return sys_above_stdio(fd);
    long lowest = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur / 2 > 1024 ? 1024 : long(rl.rlim_cur / 2);
    if (fd >= lowest) return fd;
    int moved = sys_fcntl(fd, F_DUPFD_CLOEXEC, int(lowest));
    if (moved < 0) return sys_above_stdio(fd);
    sys_close(fd);
    return moved;
}

inline int sys_open(const char *path, int flags) {
    return int(sys_result(raw_syscall3(SYS_openat, AT_FDCWD, long(path), flags)));
}

inline pid_t sys_gettid() { return pid_t(raw_syscall3(SYS_gettid, 0, 0, 0)); }

inline int sys_sched_yield() { return int(sys_result(raw_syscall3(SYS_sched_yield, 0, 0, 0))); }

// glibc's: 0, with the bytes past what the kernel wrote cleared.
inline int sys_sched_getaffinity(pid_t pid, size_t size, cpu_set_t *set) {
    long n = raw_syscall3(SYS_sched_getaffinity, pid, long(size), long(set));
    if (n < 0) return int(sys_result(n));
    memset(reinterpret_cast<char *>(set) + n, 0, size - size_t(n));
    return 0;
}
inline int sys_sched_setaffinity(pid_t pid, size_t size, const cpu_set_t *set) {
    return int(sys_result(raw_syscall3(SYS_sched_setaffinity, pid, long(size), long(set))));
}

inline int sys_sigaltstack(const stack_t *ss, stack_t *old) {
    return int(sys_result(raw_syscall3(SYS_sigaltstack, long(ss), long(old), 0)));
}

} // namespace np
