// The thread pointer (x86-64 fs base, aarch64 tpidr_el0): glibc's TCB, and
// the base of every static TLS variable.  A shim green thread has a TCB of
// its own, entered at each switch (scheduler.cpp), so its errno and
// __thread variables are its own whichever worker runs it.
#pragma once
#include <cstdint>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <asm/prctl.h>
#endif

namespace np {

inline void *tp_get() {
#if defined(__x86_64__)
    void *p;
    __asm__ volatile("mov %%fs:0, %0" : "=r"(p)); // glibc's TCB points at itself
    return p;
#elif defined(__aarch64__)
    void *p;
    __asm__ volatile("mrs %0, tpidr_el0" : "=r"(p));
    return p;
#else
#error "no thread pointer for this architecture"
#endif
}

#if defined(__x86_64__)
// wrfsbase where the kernel enabled it (AT_HWCAP2 bit 1), else a syscall.
inline bool tp_fast() {
    static const int fast = (getauxval(AT_HWCAP2) & 2) ? 1 : 0;
    return fast;
}
#endif

inline void tp_set(void *p) {
#if defined(__x86_64__)
    if (__builtin_expect(tp_fast(), 1)) {
        __asm__ volatile("wrfsbase %0" ::"r"(p) : "memory");
        return;
    }
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(long(SYS_arch_prctl)), "D"(long(ARCH_SET_FS)), "S"(p)
                     : "rcx", "r11", "memory");
    (void)r;
#elif defined(__aarch64__)
    __asm__ volatile("msr tpidr_el0, %0" ::"r"(p) : "memory");
#endif
}

// The gs base (x86-64): not the shim's, the program's, kept per OS thread by
// the kernel.  Where user space may write it (the same FSGSBASE as
// tp_fast), code points it at memory of its own and reads %gs:offset across
// calls that may park: wasm2c's "segue" (Firefox's RLBox-sandboxed
// libraries) keeps a sandbox's linear memory there.  So each green thread
// carries its own across switches, as it carries its TCB.  Without FSGSBASE
// only arch_prctl(ARCH_SET_GS) writes it, and no such code relies on it.
inline uintptr_t gs_get() {
#if defined(__x86_64__)
    if (__builtin_expect(tp_fast(), 1)) {
        uintptr_t v;
        __asm__ volatile("rdgsbase %0" : "=r"(v));
        return v;
    }
#endif
    return 0;
}

// Save the running context's gs base in *save and enter next's.
inline void gs_switch(uintptr_t *save, uintptr_t next) {
#if defined(__x86_64__)
    if (__builtin_expect(tp_fast(), 1)) {
        uintptr_t cur;
        __asm__ volatile("rdgsbase %0" : "=r"(cur));
        *save = cur;
        if (cur != next) __asm__ volatile("wrgsbase %0" ::"r"(next) : "memory");
    }
#else
    (void)save;
    (void)next;
#endif
}

} // namespace np
