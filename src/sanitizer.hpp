// Stack-switch annotations for AddressSanitizer and ThreadSanitizer: every
// np_ctx_switch (scheduler.cpp) is bracketed by san_switch_begin/_end, the
// start of a new thread by san_switch_end, and np_ctx_call_on (on_os_stack)
// by san_call_on.  Without a sanitizer all of it is inline no-ops.
//
// ASan: the stack being entered is announced with its bounds (a green
// thread's Stack, or the worker's own OS stack, learnt at the first switch
// out of it: ASan hands back the bounds of the stack it leaves, so the shim's
// pthread_getattr_np is never asked), each context keeps its fake stack
// (detect_stack_use_after_return) across switches, and a thread that ends
// passes nullptr so its fake stack is freed.
// TSan: a fiber per green thread, made at its first switch-in and destroyed
// when the thread is released; g0 is the OS thread's own fiber.
#pragma once
#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define NP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NP_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define NP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NP_TSAN 1
#endif
#endif

#ifndef NP_ASAN
#define NP_ASAN 0
#endif
#ifndef NP_TSAN
#define NP_TSAN 0
#endif

#include "context.hpp"
#if NP_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if NP_TSAN
#include <sanitizer/tsan_interface.h>
#endif

// `char *name`: an address in the caller's frame on the stack it runs on
// (under ASan a local's own address may be on its fake stack instead).
#if NP_ASAN
#define NP_STACK_HERE(name) char *name = static_cast<char *>(__builtin_frame_address(0))
#else
#define NP_STACK_HERE(name) \
    char name##_byte;       \
    char *name = &name##_byte
#endif

namespace np {

// Per green thread (GThread::san).
struct SanThread {
#if NP_ASAN
    void *fake = nullptr;     // its fake stack while switched out
#endif
#if NP_TSAN
    void *fiber = nullptr;    // made at its first switch-in
#endif
};

// Per worker (Worker::san): its scheduler context, g0.
struct SanWorker {
#if NP_ASAN
    void *g0_fake = nullptr;
    const void *g0_lo = nullptr;
    size_t g0_size = 0;
    bool from_g0 = false;     // the switch under way left g0
#endif
#if NP_TSAN
    void *g0_fiber = nullptr;
#endif
};

#if NP_ASAN || NP_TSAN
// Right before np_ctx_switch(from -> to); null is g0.  `dying`: from has
// returned and never runs again.
template <class W, class G>
inline void san_switch_begin(W *w, G *from, G *to, bool dying) {
#if NP_ASAN
    void **save = dying ? nullptr : from ? &from->san.fake : &w->san.g0_fake;
    w->san.from_g0 = !from;
    if (to) __sanitizer_start_switch_fiber(save, to->stack.lo, size_t(to->stack.hi - to->stack.lo));
    else __sanitizer_start_switch_fiber(save, w->san.g0_lo, w->san.g0_size);
#endif
#if NP_TSAN
    (void)dying;
    if (!from) w->san.g0_fiber = __tsan_get_current_fiber();
    void *f;
    if (to) {
        if (!to->san.fiber) to->san.fiber = __tsan_create_fiber(0);
        f = to->san.fiber;
    } else {
        f = w->san.g0_fiber;
    }
    __tsan_switch_to_fiber(f, 0);
#endif
}

// Right after np_ctx_switch returns (and first thing in a new thread), on
// the worker now running `self` (null: g0).
template <class W, class G>
inline void san_switch_end(W *w, G *self) {
#if NP_ASAN
    const void *old_lo;
    size_t old_size;
    __sanitizer_finish_switch_fiber(self ? self->san.fake : w->san.g0_fake, &old_lo, &old_size);
    if (w->san.from_g0) {
        w->san.g0_lo = old_lo;
        w->san.g0_size = old_size;
        w->san.from_g0 = false;
    }
#else
    (void)w;
    (void)self;
#endif
}

// A green stack about to be reused: frames of its last thread may have left
// redzones poisoned there.
inline void san_stack_fresh(void *lo, size_t size) {
#if NP_ASAN
    ASAN_UNPOISON_MEMORY_REGION(lo, size);
#else
    (void)lo;
    (void)size;
#endif
}

// The thread is being released (not running anywhere).
template <class G>
inline void san_thread_release(G *g) {
#if NP_TSAN
    if (g->san.fiber) __tsan_destroy_fiber(g->san.fiber);
    g->san.fiber = nullptr;
#else
    (void)g;
#endif
}

// on_os_stack: np_ctx_call_on(top, fn, arg) from green thread g onto w's
// OS stack (at top), announced as a switch there and back.
template <class W, class G>
inline void san_call_on(W *w, G *g, void *top, void (*fn)(void *), void *arg) {
#if NP_ASAN
    struct Call {
        W *w;
        G *g;
        void (*fn)(void *);
        void *arg;
        static void run(void *p) {
            Call *c = static_cast<Call *>(p);
            __sanitizer_finish_switch_fiber(c->w->san.g0_fake, nullptr, nullptr);
            c->fn(c->arg);
            __sanitizer_start_switch_fiber(&c->w->san.g0_fake, c->g->stack.lo,
                                           size_t(c->g->stack.hi - c->g->stack.lo));
        }
    } c{w, g, fn, arg};
    __sanitizer_start_switch_fiber(&g->san.fake, w->san.g0_lo, w->san.g0_size);
    np_ctx_call_on(top, Call::run, &c);
    __sanitizer_finish_switch_fiber(g->san.fake, nullptr, nullptr);
#else
    (void)w;
    (void)g;
    np_ctx_call_on(top, fn, arg);
#endif
}
#else
template <class W, class G> inline void san_switch_begin(W *, G *, G *, bool) {}
template <class W, class G> inline void san_switch_end(W *, G *) {}
inline void san_stack_fresh(void *, size_t) {}
template <class G> inline void san_thread_release(G *) {}
template <class W, class G>
inline void san_call_on(W *, G *, void *top, void (*fn)(void *), void *arg) {
    np_ctx_call_on(top, fn, arg);
}
#endif

} // namespace np
