// The one context-switch primitive (assembly in src/arch/, one file per
// architecture and ABI).  Everything that changes stacks goes through here,
// so sanitizer and valgrind annotations have a single place to live.
#pragma once

extern "C" {
// Save the caller's callee-saved and FP-control state on its stack, store
// its sp in *from_sp, resume to_sp; the resumed side gets arg as result.
void *np_ctx_switch(void **from_sp, void *to_sp, void *arg);
// A frame on a fresh stack whose first resumption calls entry(arg).
void *np_ctx_make(void *stack_top, void (*entry)(void *));
// Call fn(arg) on another stack (sp, aligned down to 16), then come back.
void np_ctx_call_on(void *sp, void (*fn)(void *), void *arg);
}

namespace np {
// Run fn(arg) on the worker's own OS stack when called on a green thread's
// stack (else in place): for the paths whose depth the engine does not
// control -- the allocator's slow paths (a thread's first allocation, cache
// refills), which need more stack than a small green thread has.  fn must
// not park or switch threads.  (scheduler.cpp)
void on_os_stack(void (*fn)(void *), void *arg);
} // namespace np
