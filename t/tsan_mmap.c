/* Under ThreadSanitizer only (make check-tsan): Criterion's BoxFort maps its
 * inheritable arena with MAP_FIXED at a random address in
 * [0x200000000000, 0x7f0000000000), mostly TSan's shadow, which TSan's mmap
 * refuses (EINVAL: "Could not initialize inheritable arena", Criterion issue
 * 274).  Such a mapping is moved into the PIE range inside BoxFort's window,
 * which TSan counts as application memory; everything else goes to TSan.
 * BoxFort first probes its candidate with mincore: TSan's reservations
 * there read as free, so that it gets as far as the mmap. */
#if defined(__SANITIZE_THREAD__)
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int tsan_reserved(uintptr_t a) {
    return a >= 0x200000000000 && a < 0x7b0000000000 && !(a >= 0x550000000000 && a < 0x568000000000);
}

__attribute__((no_sanitize_thread)) int mincore(void *addr, size_t len, unsigned char *vec) {
    if (tsan_reserved((uintptr_t)addr)) {
        errno = ENOMEM;
        return -1;
    }
    return (int)syscall(SYS_mincore, addr, len, vec);
}

extern void *__interceptor_mmap(void *, size_t, int, int, int, off_t);

/* Not instrumented: TSan maps its own memory through here while starting. */
__attribute__((no_sanitize_thread)) static void *np_mmap(void *addr, size_t len, int prot, int flags, int fd,
                                                          off_t off) {
    uintptr_t a = (uintptr_t)addr;
    const uintptr_t lo = 0x560000000000, hi = 0x568000000000;
    if ((flags & MAP_FIXED) && (flags & MAP_SHARED) && fd >= 0 && tsan_reserved(a)) {
        for (uintptr_t i = 0; i < 64; i++) {
            uintptr_t at = lo + ((a * 2654435761u + i * 0x10000000000ull / 64) % (hi - lo - len));
            at &= ~(uintptr_t)0xffff;
            long r = syscall(SYS_mmap, at, len, prot, (flags & ~MAP_FIXED) | MAP_FIXED_NOREPLACE, fd, off);
            if (r != -1) return (void *)r;
        }
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return __interceptor_mmap(addr, len, prot, flags, fd, off);
}

__attribute__((no_sanitize_thread)) void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    return np_mmap(addr, len, prot, flags, fd, off);
}

/* What Criterion calls. */
__attribute__((no_sanitize_thread)) void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    return np_mmap(addr, len, prot, flags, fd, off);
}
#else
typedef int np_tsan_mmap_unused;
#endif
