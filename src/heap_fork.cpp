// The engine's heap (jemalloc) across fork.  jemalloc's own handlers take
// every lock of the heap before a fork, then unlock them in the parent and
// rewrite them in the child: a copy-on-write fault on each side for every
// page they sit on, paid by every fork.  Here a fork waits instead until
// no thread is inside the heap (every way in counts itself: heap_enter),
// so its locks are free and its lists whole, and the parent has nothing
// to undo.  The child still resets the heap (jemalloc's child handler:
// its list of threads, which names the parent's), but only when it first
// uses it, on the thread that forked (the one thread it has until the
// engine, having allocated, starts more): most children exec, or serve a
// connection on their plain thread and exit.  The link hands jemalloc's
// pthread_atfork and pthread_key_create calls here (-Wl,--wrap).
#include "alloc.hpp"
#include "config.h"

#if HAVE_JEMALLOC
#include "sys.hpp"

extern "C" int __register_atfork(void (*)(), void (*)(), void (*)(), void *);
extern "C" void *__dso_handle __attribute__((weak, visibility("hidden")));

namespace np {

std::atomic<uint32_t> heap_users{0};
std::atomic<bool> heap_fork_pending{false};

namespace {

void (*je_child)();
void (*je_tsd_dtor)(void *);

// Each fork is alone here: glibc holds its handler lock from the prepare
// handlers to the parent's or child's.
void prepare() {
    heap_users.fetch_or(kHeapForking, std::memory_order_seq_cst);
    while (heap_users.load(std::memory_order_acquire) != kHeapForking) sys_sched_yield();
}

void parent() { heap_users.fetch_and(~kHeapForking, std::memory_order_release); }

void child() {
    heap_users.store(0, std::memory_order_relaxed);
    heap_fork_pending.store(true, std::memory_order_relaxed);
}

// A thread ending: its heap state (the thread cache) goes back.
void tsd_dtor(void *p) {
    heap_enter();
    je_tsd_dtor(p);
    heap_leave();
}

// As the library loads (jemalloc has no constructor: src/jemalloc/build.sh):
// a fork from then on waits for whoever is inside the heap, the thread
// that makes it at the first allocation too.  Registered later, by that
// thread, the registration would wait for glibc's fork lock, held by a
// fork waiting for that thread.
__attribute__((constructor)) void heap_fork_register() {
    __register_atfork(prepare, parent, child, __dso_handle);
}

} // namespace

void heap_wait() {
    heap_users.fetch_sub(1, std::memory_order_relaxed);
    for (;;) {
        while (heap_users.load(std::memory_order_acquire) & kHeapForking) sys_sched_yield();
        if (!(heap_users.fetch_add(1, std::memory_order_seq_cst) & kHeapForking)) return;
        heap_users.fetch_sub(1, std::memory_order_relaxed);
    }
}

void heap_fork_finish() {
    if (heap_fork_pending.exchange(false, std::memory_order_acq_rel) && je_child) je_child();
}

void (*heap_key_dtor(void (*dtor)(void *)))(void *) {
    if (!dtor || je_tsd_dtor) return dtor;
    je_tsd_dtor = dtor;
    return tsd_dtor;
}

} // namespace np

extern "C" {

// jemalloc's registration (the library's only one), made as it makes the
// heap, at the engine's first allocation: this library's handlers are
// registered already (heap_fork_register).  Its prepare and parent
// handlers are not needed: nothing holds its locks at the fork.  Its child
// handler only re-creates them, as they are, with the rest.
int __wrap_pthread_atfork(void (*prep)(), void (*par)(), void (*chld)()) {
    if (np::je_child || !chld) return __register_atfork(prep, par, chld, __dso_handle);
    np::je_child = chld;
    return 0;
}

} // extern "C"
#endif
