// The hot-path system calls made directly: libc's read and write are
// cancellation points (two extra calls around each) and, under a preload
// shim, the very symbols being interposed.  Same contract as libc: -1 and
// errno on failure.  Other architectures use libc.
#pragma once
#include <cerrno>
#include <sys/syscall.h>
#include <unistd.h>

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
#else
    long r = syscall(nr, a, b, c);
    return r < 0 ? -errno : r;
#endif
}

inline ssize_t sys_result(long r) {
    if (r < 0 && r > -4096) {
        errno = int(-r);
        return -1;
    }
    return r;
}

inline ssize_t sys_read(int fd, void *buf, size_t n) {
    return sys_result(raw_syscall3(SYS_read, fd, long(buf), long(n)));
}

inline ssize_t sys_write(int fd, const void *buf, size_t n) {
    return sys_result(raw_syscall3(SYS_write, fd, long(buf), long(n)));
}

} // namespace np
