// libc's own definitions of names a preload shim interposes, looked up in
// libc's scope: dlsym on libc's handle searches libc and what it depends
// on, never a library preloaded before it.  Also the targets of the
// Makefile's -Wl,--wrap (JEMALLOC_WRAP), which keep the statically linked
// jemalloc off those names.
#include "alloc.hpp"
#include "libc_real.hpp"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <gnu/lib-names.h>

#include "config.h"
#include "sanitizer.hpp"
#include "sys.hpp"

namespace np {

namespace {

template <size_t N> struct Name {
    constexpr Name(const char (&a)[N]) { std::copy_n(a, N, s); }
    char s[N];
};

[[noreturn]] void missing(const char *name) {
    static const char msg[] = "netpoll: not in " LIBC_SO ": ";
    sys_write(2, msg, sizeof msg - 1);
    sys_write(2, name, strlen(name));
    sys_write(2, "\n", 1);
    abort();
}

// dlopen allocates: with the program's malloc, as our jemalloc is hidden.
void *libc_sym(const char *name) {
#if NP_ASAN || NP_TSAN
    // The sanitizer's interceptor, which calls libc's: it must see the
    // workers start (their state: fake stacks, fibers) and, for TSan, the
    // locks taken.  ASan needs no more than the first: its interceptors
    // call the next definition after its runtime, a preload shim's when
    // one follows it, which must not take the engine's locks, masks and
    // handlers for the program's.
    char iname[64] = "__interceptor_";
    if ((!NP_ASAN || strcmp(name, "pthread_create") == 0) && strlen(name) < sizeof iname - 15) {
        strcat(iname, name);
        if (void *f = dlsym(RTLD_DEFAULT, iname)) return f;
    }
#endif
    // No lock: racers all get the same handle.
    static std::atomic<void *> libc;
    void *h = libc.load(std::memory_order_acquire);
    if (!h) {
        h = dlopen(LIBC_SO, RTLD_NOLOAD | RTLD_LAZY);
        libc.store(h, std::memory_order_release);
    }
    void *f = h ? dlsym(h, name) : nullptr;
    if (!f) missing(name);
    return f;
}

// Resolved on first use: jemalloc locks before our constructors run.
template <Name name, class F> F *real() {
    static std::atomic<F *> fn;
    F *f = fn.load(std::memory_order_relaxed);
    if (!f) fn.store(f = reinterpret_cast<F *>(libc_sym(name.s)), std::memory_order_relaxed);
    return f;
}

#define REAL(name) real<#name, decltype(::name)>()

thread_local bool os_create; // in os_pthread_create

// pthread_create for a thread of the engine's own.  Under a sanitizer that
// is its interceptor, whose own call reaches a preload shim's first when
// one follows the sanitizer's runtime: the shim passes it on to libc's
// while os_create says so (npshim_os_thread_starting).
int os_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg) {
    os_create = true;
    int e = REAL(pthread_create)(t, a, fn, arg);
    os_create = false;
    return e;
}

} // namespace

bool os_thread_starting() { return os_create; }

int start_os_thread(void *(*fn)(void *), void *arg, pthread_t *out) {
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    // The default stack size: glibc carves the program's static TLS out of
    // a thread's stack, and a host may have a lot of it.
    // The system call itself: a worker may be started from a green thread
    // (start_rest), whose mask a shim keeps as its own (pthread_sigmask).
    // All but glibc's own two (32: cancellation, 33: setxid, which
    // setuid and setgroups wait on every thread to take), as glibc's
    // pthread_sigmask never blocks them.
    uint64_t all = ~(uint64_t(1) << 31 | uint64_t(1) << 32), old = 0;
    raw_syscall4(SYS_rt_sigprocmask, SIG_SETMASK, long(&all), long(&old), 8);
    pthread_t t;
    int e = os_pthread_create(&t, &a, fn, arg);
    raw_syscall4(SYS_rt_sigprocmask, SIG_SETMASK, long(&old), 0, 8);
    pthread_attr_destroy(&a);
    if (!e && out) *out = t;
    return e;
}

int real_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    return REAL(sigaction)(sig, act, old);
}

size_t real_fwrite(const void *p, size_t size, size_t n, FILE *f) { return REAL(fwrite)(p, size, n, f); }

void say(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = size_t(n) < sizeof buf ? size_t(n) : sizeof buf - 1;
    ssize_t r = sys_write(2, buf, len);
    (void)r;
}

} // namespace np

#if HAVE_JEMALLOC
using np::real;

extern "C" {

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg) {
    return np::os_pthread_create(t, a, fn, arg);
}
int __wrap_pthread_join(pthread_t t, void **ret) { return REAL(pthread_join)(t, ret); }

int __wrap_pthread_key_create(pthread_key_t *k, void (*dtor)(void *)) {
    return REAL(pthread_key_create)(k, np::heap_key_dtor(dtor));
}
int __wrap_pthread_setspecific(pthread_key_t k, const void *v) { return REAL(pthread_setspecific)(k, v); }
// The static C++ runtime's (Makefile: STATIC_CXXRT): its thread-safety
// test takes __pthread_key_create's address, its once-only set-ups call
// pthread_once.
int __wrap___pthread_key_create(pthread_key_t *k, void (*dtor)(void *)) { return REAL(pthread_key_create)(k, dtor); }
int __wrap_pthread_once(pthread_once_t *o, void (*fn)()) { return REAL(pthread_once)(o, fn); }

int __wrap_pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a) {
    return REAL(pthread_mutex_init)(m, a);
}
int __wrap_pthread_mutex_lock(pthread_mutex_t *m) { return REAL(pthread_mutex_lock)(m); }
int __wrap_pthread_mutex_trylock(pthread_mutex_t *m) { return REAL(pthread_mutex_trylock)(m); }
int __wrap_pthread_mutex_unlock(pthread_mutex_t *m) { return REAL(pthread_mutex_unlock)(m); }

int __wrap_pthread_cond_init(pthread_cond_t *c, const pthread_condattr_t *a) {
    return REAL(pthread_cond_init)(c, a);
}
int __wrap_pthread_cond_signal(pthread_cond_t *c) { return REAL(pthread_cond_signal)(c); }
int __wrap_pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m) { return REAL(pthread_cond_wait)(c, m); }
int __wrap_pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *ts) {
    return REAL(pthread_cond_timedwait)(c, m, ts);
}

// jemalloc's background threads and the static C++ runtime name threads
// and block signals: always the OS thread's own, never a green one's.
int __wrap_pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
    return REAL(pthread_sigmask)(how, set, old);
}
int __wrap_pthread_setname_np(pthread_t t, const char *name) { return REAL(pthread_setname_np)(t, name); }
int __wrap_pthread_getname_np(pthread_t t, char *buf, size_t n) { return REAL(pthread_getname_np)(t, buf, n); }

int __wrap_fprintf(FILE *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = REAL(vfprintf)(f, fmt, ap);
    va_end(ap);
    return r;
}
int __wrap_fputc(int c, FILE *f) { return REAL(fputc)(c, f); }
int __wrap_fputs(const char *s, FILE *f) { return REAL(fputs)(s, f); }
size_t __wrap_fwrite(const void *p, size_t size, size_t n, FILE *f) { return REAL(fwrite)(p, size, n, f); }
int __wrap_close(int fd) { return np::sys_close(fd); }
int __wrap_sched_yield() { return np::sys_sched_yield(); }
// Its CPU count and its background threads' pins: the OS thread's own.
int __wrap_sched_getaffinity(pid_t pid, size_t size, cpu_set_t *set) {
    return np::sys_sched_getaffinity(pid, size, set);
}
int __wrap_sched_setaffinity(pid_t pid, size_t size, const cpu_set_t *set) {
    return np::sys_sched_setaffinity(pid, size, set);
}

// jemalloc reads and writes files through syscall(SYS_read, ...) and the
// like: six arguments, as many as any system call takes.
long __wrap_syscall(long nr, ...) {
    va_list ap;
    va_start(ap, nr);
    long a[6];
    for (long &x : a) x = va_arg(ap, long);
    va_end(ap);
    return np::sys_result(np::raw_syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5]));
}

} // extern "C"
#endif
