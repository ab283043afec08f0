// Calls that wait where no interposer sees (glibc's resolver, NSS modules,
// getaddrinfo_a(GAI_WAIT)) run on a pool of plain OS threads while the green
// thread parks (helpers.cpp).  Only the call moves: errno and h_errno are
// carried to the helper and back, and signals for the waiting thread run
// their handlers meanwhile.
#pragma once
#include <cerrno>
#include <dlfcn.h>
#include <netdb.h>

#include "shim.hpp"

namespace shim {

struct HelperJob {
    void (*run)(void *);
    void *ctx;
    int err, herr;                  // errno and h_errno: the caller's in, the call's out
    uint32_t done = 0;              // futex word the caller parks on
    HelperJob *next = nullptr;
};

// Queue j; false when no helper can ever take it (none could be started).
bool helper_submit(HelperJob *j);
// Park t until a helper ran j.  Signals for t run their handlers meanwhile,
// as they interrupt a blocking call with OS threads; the call is no
// cancellation point, since the helper writes into the caller's memory
// until it is done.
void helper_wait(Thread *t, HelperJob *j);

// f() on a helper while the calling green thread t parks; on t itself, as
// a call that waits in the kernel, when no helper can be had.
template <class F> auto helper_call(Thread *t, F f) -> decltype(f()) {
    using R = decltype(f());
    struct Ctx {
        F *f;
        R r;
    } c{&f, R{}};
    HelperJob j;
    j.run = [](void *p) {
        auto *c = static_cast<Ctx *>(p);
        c->r = (*c->f)();
    };
    j.ctx = &c;
    j.err = errno;
    j.herr = h_errno;
    if (!helper_submit(&j)) return kernel_call(f, R{}, true);
    helper_wait(t, &j);
    errno = j.err;
    h_errno = j.herr;
    return c.r;
}

// f() on a helper when called on a green thread, else right here.
template <class F> auto offload(F f) -> decltype(f()) {
    Thread *t = green() ? self() : nullptr;
    if (!t) return f();
    return helper_call(t, f);
}

template <class T> T next_fn(const char *name) { return reinterpret_cast<T>(dlsym(RTLD_NEXT, name)); }

} // namespace shim
