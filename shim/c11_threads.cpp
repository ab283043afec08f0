// C11 threads (<threads.h>).  glibc builds them on its pthread functions
// through internal calls a preload cannot see: thrd_create would start an
// OS thread, mtx_lock and cnd_wait would block the worker, and an
// mtx_unlock would not wake a thread parked on the same mutex by
// pthread_mutex_lock (a hang).  Each goes here to the interposed pthread
// call it stands for, with C11's results (glibc's thrd_err_map).  mtx_init,
// cnd_init, the tss_* calls, thrd_current and thrd_equal stay glibc's: they
// do not wait, and act on the calling thread's own TCB.
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <dlfcn.h>
#include <sched.h>
#include <threads.h>

#include "shim.hpp"

namespace {

int c11(int err) {
    switch (err) {
    case 0: return thrd_success;
    case ENOMEM: return thrd_nomem;
    case ETIMEDOUT: return thrd_timedout;
    case EBUSY: return thrd_busy;
    default: return thrd_error;
    }
}

template <class F> F glibc(const char *name) { return reinterpret_cast<F>(dlsym(RTLD_NEXT, name)); }

struct Start {
    thrd_start_t fn;
    void *arg;
};

// The int result travels as glibc carries it, through the pointer.
void *c11_entry(void *p) {
    Start s = *static_cast<Start *>(p);
    free(p);
    return reinterpret_cast<void *>(uintptr_t(s.fn(s.arg)));
}

pthread_mutex_t *mutex(mtx_t *m) { return reinterpret_cast<pthread_mutex_t *>(m); }
pthread_cond_t *cond(cnd_t *c) { return reinterpret_cast<pthread_cond_t *>(c); }

} // namespace

using namespace shim;

extern "C" {

int thrd_create(thrd_t *th, thrd_start_t fn, void *arg) {
    if (!on()) {
        static auto f = glibc<decltype(&thrd_create)>("thrd_create");
        return f(th, fn, arg);
    }
    auto *s = static_cast<Start *>(malloc(sizeof(Start)));
    if (!s) return thrd_nomem;
    *s = {fn, arg};
    int e = pthread_create(th, nullptr, c11_entry, s);
    if (e) free(s);
    // glibc's own answer to a thread it cannot make is EAGAIN: thrd_error.
    return c11(e);
}

int thrd_join(thrd_t th, int *res) {
    void *r = nullptr;
    int e = pthread_join(th, &r);
    if (e == 0 && res) *res = int(uintptr_t(r));
    return c11(e);
}

int thrd_detach(thrd_t th) { return c11(pthread_detach(th)); }

void thrd_exit(int res) { pthread_exit(reinterpret_cast<void *>(uintptr_t(res))); }

int thrd_sleep(const struct timespec *d, struct timespec *rem) {
    switch (clock_nanosleep(CLOCK_REALTIME, 0, d, rem)) {
    case 0: return 0;
    case EINTR: return -1;
    default: return -2;
    }
}

void thrd_yield(void) { sched_yield(); }

int mtx_lock(mtx_t *m) { return c11(pthread_mutex_lock(mutex(m))); }
int mtx_trylock(mtx_t *m) { return c11(pthread_mutex_trylock(mutex(m))); }
int mtx_timedlock(mtx_t *__restrict m, const struct timespec *__restrict abs) {
    return c11(pthread_mutex_timedlock(mutex(m), abs));
}
int mtx_unlock(mtx_t *m) { return c11(pthread_mutex_unlock(mutex(m))); }

int cnd_wait(cnd_t *c, mtx_t *m) { return c11(pthread_cond_wait(cond(c), mutex(m))); }
int cnd_timedwait(cnd_t *__restrict c, mtx_t *__restrict m, const struct timespec *__restrict abs) {
    return c11(pthread_cond_timedwait(cond(c), mutex(m), abs));
}
int cnd_signal(cnd_t *c) { return c11(pthread_cond_signal(cond(c))); }
int cnd_broadcast(cnd_t *c) { return c11(pthread_cond_broadcast(cond(c))); }

void call_once(once_flag *flag, void (*fn)(void)) { pthread_once(reinterpret_cast<pthread_once_t *>(flag), fn); }

} // extern "C"
