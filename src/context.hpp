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
}
