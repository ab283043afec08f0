// The spin-wait hint of the CPU, for the shim's short spins.
#pragma once

namespace shim {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

} // namespace shim
