// A glibc TCB (struct pthread plus the static TLS blocks below it) for each
// legacy thread, so errno, __thread variables, pthread keys and the C++
// exception state are its own.  glibc 2.36's layout; checked at start-up
// against the descriptors libthread_db uses (tcb.cpp).
#pragma once
#include <cstddef>

namespace shim {

struct Thread;

bool tcb_init();                    // false: this glibc is not one we know
// A new TCB for a thread running on [stack_lo, +stack_size), with its
// Thread record right above it.  Null on exhaustion.  os_thread: an OS
// thread enters it (not a green thread on a worker), so the engine's own
// TLS in it is set up too.
Thread *tcb_new(void *stack_lo, size_t stack_size, size_t guard, bool os_thread = false);
void tcb_set_stack(void *tcb, void *lo, size_t size, size_t guard);
void tcb_free(void *tcb);           // after the thread has stopped for good
Thread *tcb_record(void *tcb);      // the record of a TCB made here, or null
bool tcb_made_here(const void *tcb); // in the memory TCBs are made in (live or not)
bool tcb_setxid_marked(void *tcb);   // glibc's set*id waits for this thread to take part
void *tcb_current();                // the TCB entered on this OS thread now
// On the new thread itself, first thing: what glibc's start_thread sets up.
void tcb_thread_start(void *tcb);
// On the ending thread, last thing: thread_local destructors, key
// destructors, and the per-thread buffers glibc frees at thread exit.
void tcb_thread_end(void *tcb);
// pthread_exit unwinds to the unwind buffer the thread's entry set up.
void tcb_set_unwind_buf(void *tcb, void *buf);
void *tcb_unwind_buf(void *tcb);
void tcb_clear_exiting(void *tcb);
void tcb_after_fork();              // the pool's lock, as a forked child finds it
// ld.so's recursive locks, named by the TCB's tid: told to the engine
// (npshim_tid_owner_words), found where this glibc keeps them.
void tcb_rtld_locks();
extern long tcb_tid_offset;
// glibc's robust_list_head in the TCB (list, futex_offset, list_op_pending).
void *tcb_robust_head(void *tcb);
extern size_t tcb_sizeof_pthread;

} // namespace shim
