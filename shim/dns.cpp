// Name resolution.  glibc's resolver waits for its UDP/TCP answers in its
// own poll(), which no interposer sees: a green thread looking up a name
// would hold its worker for the whole round trip, and lookups from many
// green threads would queue behind each other until sysmon moved them and
// added workers (which then stay for good), the other threads slowed
// meanwhile.  So each lookup runs on a pool of plain OS threads while the
// green thread parks, as Go's cgo resolver takes an OS thread per lookup
// (bounded there by a semaphore, here by kMaxHelpers); idle helpers end.
//
// What moves to the helper thread is only the call; what the caller sees
// stays its own: errno and h_errno are carried over both ways; results are
// malloc'ed by libc on the helper and freed by the program as ever
// (freeaddrinfo), which any thread-safe malloc allows; gethostbyname's
// static buffer is the process's in glibc anyway.  The one piece of
// per-thread state a lookup reads is the thread's resolver state (_res).
// A helper's _res is glibc's default for the process (resolv.conf,
// RES_OPTIONS, reloaded when the file changes), which is what an untouched
// _res of the caller would become; when the caller has touched its own
// (res_init, _res.options or the server list set by hand), the call runs
// on the caller's thread as before, with exactly that state: a kernel_call
// that hands the worker's queue on.
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <dlfcn.h>
#include <netdb.h>
#include <resolv.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "real.hpp"
#include "shim.hpp"

namespace shim {

namespace {

constexpr int kMaxHelpers = 256; // lookups in flight at once (Go: 500); more queue
constexpr int64_t kHelperIdle = 10'000'000'000; // an idle helper exits after 10 s

struct Job {
    void (*run)(void *);
    void *ctx;
    int err, herr;        // errno and h_errno: the caller's in, the call's out
    uint32_t done = 0;    // futex word the caller parks on
    Job *next = nullptr;
};

struct Pool {
    std::atomic<bool> lk{false};
    Job *head = nullptr, *tail = nullptr;
    int queued = 0, threads = 0, idle = 0;
    uint32_t seq = 0;     // futex word idle helpers sleep on
};
Pool pool;

inline void relax() {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}
// Held for a few instructions only, by green and plain threads alike; a
// holder the kernel preempted gets the CPU back (a worker spinning on it
// would stall every thread queued there).
void lock() {
    for (int spins = 0; pool.lk.exchange(true, std::memory_order_acquire);)
        while (pool.lk.load(std::memory_order_relaxed))
            if (++spins < 100) relax();
            else real.syscall(SYS_sched_yield, 0, 0, 0, 0, 0, 0);
}
void unlock() { pool.lk.store(false, std::memory_order_release); }

Job *pop_locked() {
    Job *j = pool.head;
    if (j) {
        pool.head = j->next;
        if (!pool.head) pool.tail = nullptr;
        pool.queued--;
    }
    return j;
}

void *helper_main(void *) {
    bool idle_long = false;
    for (;;) {
        uint32_t s = __atomic_load_n(&pool.seq, __ATOMIC_ACQUIRE);
        lock();
        Job *j = pop_locked();
        if (!j && idle_long) {
            pool.threads--;
            unlock();
            return nullptr;
        }
        if (!j) pool.idle++;
        unlock();
        if (!j) {
            idle_long = npshim_futex_wait(&pool.seq, s, np_now() + kHelperIdle) == -ETIMEDOUT;
            lock();
            pool.idle--;
            unlock();
            continue;
        }
        idle_long = false;
        errno = j->err;
        h_errno = j->herr;
        j->run(j->ctx);
        j->err = errno;
        j->herr = h_errno;
        __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
        // j may be gone now (its caller saw done): the wake uses the address only.
        npshim_futex_wake(&j->done, 1);
    }
}

// A forked child has none of the helpers, nor the callers of queued jobs.
void after_fork_child() { new (&pool) Pool(); }

// Queue j; false when no helper can ever take it (none could be started).
bool submit(Job *j) {
    static std::atomic<bool> atfork{false};
    if (!atfork.exchange(true)) pthread_atfork(nullptr, nullptr, after_fork_child);
    lock();
    if (pool.tail) pool.tail->next = j;
    else pool.head = j;
    pool.tail = j;
    pool.queued++;
    // More jobs waiting than helpers free to take them: one more helper, so
    // lookups never queue behind each other below the cap.
    bool spawn = pool.queued > pool.idle && pool.threads < kMaxHelpers;
    if (spawn) pool.threads++;
    bool wake = pool.idle > 0;
    unlock();
    if (wake) {
        __atomic_fetch_add(&pool.seq, 1, __ATOMIC_RELEASE);
        npshim_futex_wake(&pool.seq, 1);
    }
    if (!spawn) return true;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    real.pthread_sigmask(SIG_SETMASK, &all, &old); // the program's signals are not for helpers
    pthread_t th;
    int e = real.pthread_create(&th, &a, helper_main, nullptr);
    real.pthread_sigmask(SIG_SETMASK, &old, nullptr);
    pthread_attr_destroy(&a);
    if (!e) return true;
    lock();
    pool.threads--;
    bool orphan = false;
    if (pool.threads == 0) { // nobody will take it: the caller runs it itself
        for (Job **p = &pool.head; *p; p = &(*p)->next) {
            if (*p != j) continue;
            *p = j->next;
            if (pool.tail == j) {
                pool.tail = nullptr;
                for (Job *q = pool.head; q; q = q->next) pool.tail = q;
            }
            pool.queued--;
            orphan = true;
            break;
        }
    }
    unlock();
    return !orphan;
}

// Park until the helper is done.  Signals for the thread run meanwhile, as
// they interrupt glibc's poll() with OS threads (which then waits on); the
// lookup is no cancellation point here, since the helper writes into the
// caller's memory until it is done.
void wait_done(Thread *t, Job *j) {
    while (!__atomic_load_n(&j->done, __ATOMIC_ACQUIRE)) {
        t->wait_word.store(&j->done, std::memory_order_seq_cst);
        if (sig_pending(t)) {
            t->wait_word.store(nullptr, std::memory_order_relaxed);
            sig_deliver(t);
            continue;
        }
        npshim_futex_wait(&j->done, 0, 0);
        t->wait_word.store(nullptr, std::memory_order_relaxed);
    }
}

// The caller's own _res as a fresh thread has it: all zero bytes.
bool own_res_untouched() {
    const unsigned char *p = reinterpret_cast<const unsigned char *>(__res_state());
    for (size_t i = 0; i < sizeof(struct __res_state); i++)
        if (p[i]) return false;
    return true;
}

// f() on a helper while the green thread parks.  own_res: f reads the
// thread's implicit _res (all but the res_n* calls, which are given theirs).
template <class F> auto lookup(F f, bool own_res) -> decltype(f()) {
    using R = decltype(f());
    Thread *t = green() ? self() : nullptr;
    if (!t) return f();
    if (own_res && !own_res_untouched()) return kernel_call(f, R{}, true);
    struct Ctx {
        F *f;
        R r;
    } c{&f, R{}};
    Job j;
    j.run = [](void *p) {
        auto *c = static_cast<Ctx *>(p);
        c->r = (*c->f)();
    };
    j.ctx = &c;
    j.err = errno;
    j.herr = h_errno;
    if (!submit(&j)) return kernel_call(f, R{}, true);
    wait_done(t, &j);
    errno = j.err;
    h_errno = j.herr;
    return c.r;
}

template <class T> T next_fn(const char *name) { return reinterpret_cast<T>(dlsym(RTLD_NEXT, name)); }

// res_query or __res_query, whichever this glibc has (the same function).
template <class T> T next_res(const char *name) {
    if (void *f = dlsym(RTLD_NEXT, name)) return reinterpret_cast<T>(f);
    char alt[64];
    if (name[0] == '_') snprintf(alt, sizeof alt, "%s", name + 2);
    else snprintf(alt, sizeof alt, "__%s", name);
    return reinterpret_cast<T>(dlsym(RTLD_NEXT, alt));
}

} // namespace

} // namespace shim

using namespace shim;

extern "C" {

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
    static auto fn = next_fn<decltype(&getaddrinfo)>("getaddrinfo");
    return lookup([&] { return fn(node, service, hints, res); }, true);
}

int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                char *serv, socklen_t servlen, int flags) {
    static auto fn = next_fn<decltype(&getnameinfo)>("getnameinfo");
    return lookup([&] { return fn(sa, salen, host, hostlen, serv, servlen, flags); }, true);
}

struct hostent *gethostbyname(const char *name) {
    static auto fn = next_fn<decltype(&gethostbyname)>("gethostbyname");
    return lookup([&] { return fn(name); }, true);
}

struct hostent *gethostbyname2(const char *name, int af) {
    static auto fn = next_fn<decltype(&gethostbyname2)>("gethostbyname2");
    return lookup([&] { return fn(name, af); }, true);
}

struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type) {
    static auto fn = next_fn<decltype(&gethostbyaddr)>("gethostbyaddr");
    return lookup([&] { return fn(addr, len, type); }, true);
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                    struct hostent **result, int *h_errnop) {
    static auto fn = next_fn<decltype(&gethostbyname_r)>("gethostbyname_r");
    return lookup([&] { return fn(name, ret, buf, buflen, result, h_errnop); }, true);
}

int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                     struct hostent **result, int *h_errnop) {
    static auto fn = next_fn<decltype(&gethostbyname2_r)>("gethostbyname2_r");
    return lookup([&] { return fn(name, af, ret, buf, buflen, result, h_errnop); }, true);
}

int gethostbyaddr_r(const void *addr, socklen_t len, int type, struct hostent *ret, char *buf,
                    size_t buflen, struct hostent **result, int *h_errnop) {
    static auto fn = next_fn<decltype(&gethostbyaddr_r)>("gethostbyaddr_r");
    return lookup([&] { return fn(addr, len, type, ret, buf, buflen, result, h_errnop); }, true);
}

// The res_* calls: glibc 2.34+ links new programs to res_query@GLIBC_2.34,
// older ones to __res_query@GLIBC_2.2.5 (once libresolv's); both land here.
#define NP_RES_QUERY(name)                                                                      \
    int name(const char *dname, int cls, int type, unsigned char *answer, int anslen) {        \
        static auto fn = next_res<int (*)(const char *, int, int, unsigned char *, int)>(#name); \
        return lookup([&] { return fn(dname, cls, type, answer, anslen); }, true);             \
    }
NP_RES_QUERY(res_query)
NP_RES_QUERY(__res_query)
NP_RES_QUERY(res_search)
NP_RES_QUERY(__res_search)
#undef NP_RES_QUERY

#define NP_RES_QUERYDOMAIN(name)                                                               \
    int name(const char *dname, const char *domain, int cls, int type, unsigned char *answer, \
             int anslen) {                                                                     \
        static auto fn =                                                                       \
            next_res<int (*)(const char *, const char *, int, int, unsigned char *, int)>(#name); \
        return lookup([&] { return fn(dname, domain, cls, type, answer, anslen); }, true);    \
    }
NP_RES_QUERYDOMAIN(res_querydomain)
NP_RES_QUERYDOMAIN(__res_querydomain)
#undef NP_RES_QUERYDOMAIN

#define NP_RES_SEND(name)                                                                      \
    int name(const unsigned char *msg, int msglen, unsigned char *answer, int anslen) {       \
        static auto fn = next_res<int (*)(const unsigned char *, int, unsigned char *, int)>(#name); \
        return lookup([&] { return fn(msg, msglen, answer, anslen); }, true);                 \
    }
NP_RES_SEND(res_send)
NP_RES_SEND(__res_send)
#undef NP_RES_SEND

// The res_n* calls are given their state: it goes with the call, whatever
// the caller did to it.
#define NP_RES_NQUERY(name)                                                                     \
    int name(res_state st, const char *dname, int cls, int type, unsigned char *answer,        \
             int anslen) {                                                                      \
        static auto fn =                                                                        \
            next_res<int (*)(res_state, const char *, int, int, unsigned char *, int)>(#name);   \
        return lookup([&] { return fn(st, dname, cls, type, answer, anslen); }, false);        \
    }
NP_RES_NQUERY(res_nquery)
NP_RES_NQUERY(__res_nquery)
NP_RES_NQUERY(res_nsearch)
NP_RES_NQUERY(__res_nsearch)
#undef NP_RES_NQUERY

#define NP_RES_NQUERYDOMAIN(name)                                                              \
    int name(res_state st, const char *dname, const char *domain, int cls, int type,          \
             unsigned char *answer, int anslen) {                                              \
        static auto fn = next_res<int (*)(res_state, const char *, const char *, int, int,     \
                                         unsigned char *, int)>(#name);                        \
        return lookup([&] { return fn(st, dname, domain, cls, type, answer, anslen); }, false); \
    }
NP_RES_NQUERYDOMAIN(res_nquerydomain)
NP_RES_NQUERYDOMAIN(__res_nquerydomain)
#undef NP_RES_NQUERYDOMAIN

#define NP_RES_NSEND(name)                                                                     \
    int name(res_state st, const unsigned char *msg, int msglen, unsigned char *answer,       \
             int anslen) {                                                                     \
        static auto fn =                                                                       \
            next_res<int (*)(res_state, const unsigned char *, int, unsigned char *, int)>(#name); \
        return lookup([&] { return fn(st, msg, msglen, answer, anslen); }, false);            \
    }
NP_RES_NSEND(res_nsend)
NP_RES_NSEND(__res_nsend)
#undef NP_RES_NSEND

} // extern "C"
