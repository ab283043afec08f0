// A TCB per legacy thread, made the way pthread_create makes one: the
// static TLS area and struct pthread from ld.so's own calls
// (_dl_allocate_tls copies every module's TLS image into place), then the
// fields start_thread sets up, since a copy keeps pointers into the TCB it
// was copied from.  glibc 2.36 (Debian 12); offsets that have libthread_db
// descriptors are read from them, the rest are checked against that version.
#include "tcb.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <link.h>
#include <locale.h>
#include <pthread.h>
#include <sys/mman.h>
#include <utility>

#include "cpu_relax.hpp"
#include "shim.hpp"

namespace shim {

namespace {

// struct pthread, glibc 2.36 x86-64 (nptl/descr.h).
constexpr size_t kTcbSelf = 0x00, kDtv = 0x08, kSelf = 0x10, kMultipleThreads = 0x18;
constexpr size_t kList = 704, kTid = 720, kRobustPrev = 728, kRobustHead = 736;
constexpr size_t kCleanup = 760, kCleanupJmpBuf = 768, kCancelHandling = 776;
constexpr size_t kSpecific1st = 784, kSpecific = 1296, kSpecificUsed = 1552, kUserStack = 1554;
constexpr size_t kStackBlock = 1680, kStackBlockSize = 1688, kGuardSize = 1696;
constexpr size_t kRes = 1720, kResSize = 568, kTlsState = 2304, kTlsStateEnd = 2336;
constexpr size_t kSizeofPthread = 2368;
constexpr size_t kKeys = 1024, kKeys2nd = 32, kDestructorIterations = 4;

struct KeyStruct {
    uintptr_t seq;
    void (*destr)(void *);
};
struct KeyData {
    uintptr_t seq;
    void *data;
};
struct DtvEntry { // dtv_t: dtv[-1].counter its length, dtv[modid].val a block
    union {
        size_t counter;
        char *val;
    };
    void *to_free;
};

void *(*dl_allocate_tls)(void *);
void (*dl_deallocate_tls)(void *, bool);
void (*dl_get_tls_static_info)(size_t *, size_t *);
void (*ctype_init)();
void (*call_tls_dtors)();
KeyStruct *pthread_keys;
ptrdiff_t rseq_offset = -1;
long resp_off;          // __resp relative to the thread pointer
long libc_tls_off;      // libc's static TLS block relative to the thread pointer
size_t libc_tls_size;
long errno_off;

size_t static_size, static_align, block_size, rec_off;
size_t tls_area;        // static TLS below the thread pointer (surplus included)
// The engine's TLS block relative to the thread pointer (whole words).
// Its allocator's state (jemalloc's tsd, most of the block) is used only
// on the workers' own TCBs (on_os_stack), and tls_worker is written at
// every switch: a green TCB leaves the block unwritten, zero but for that
// word, so the page it fills is never touched.
long engine_lo, engine_hi;
alignas(64) char tcb_template[kSizeofPthread];
// ld.so builds each new TCB's dtv and TLS images here, one at a time;
// only the words that differ are copied into place, so pages that would
// get nothing but zeros stay untouched (and the engine's block is left
// out).  Its engine block keeps the pristine image for fork (below).
std::atomic_flag scratch_lock = ATOMIC_FLAG_INIT;
char *scratch;

// Blocks are never unmapped: a pool, as glibc's stack cache.
std::atomic_flag pool_lock = ATOMIC_FLAG_INIT;
char *free_blocks;
char *slab_next, *slab_end;

template <class T> T &at(void *tcb, size_t off) { return *reinterpret_cast<T *>(static_cast<char *>(tcb) + off); }

const uint32_t *desc(const char *name) { return static_cast<const uint32_t *>(dlsym(RTLD_DEFAULT, name)); }

void *tp() {
    void *p;
#if defined(__x86_64__)
    __asm__ volatile("mov %%fs:0, %0" : "=r"(p));
#else
    p = __builtin_thread_pointer();
#endif
    return p;
}

int find_libc_tls(struct dl_phdr_info *info, size_t, void *) {
    if (!info->dlpi_name || !strstr(info->dlpi_name, "/libc.so.6") || !info->dlpi_tls_data) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_TLS) {
            libc_tls_off = static_cast<char *>(info->dlpi_tls_data) - static_cast<char *>(tp());
            libc_tls_size = info->dlpi_phdr[i].p_memsz;
            return 1;
        }
    return 0;
}

// The engine's TLS block (libnetpoll.so.1, the module holding
// npshim_os_tp): this thread's instance, if it is in static TLS.
struct EngineTls {
    uintptr_t code;
    bool found, in_static;
};
int find_engine_tls(struct dl_phdr_info *info, size_t, void *arg) {
    auto *e = static_cast<EngineTls *>(arg);
    bool here = false, tls = false;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) &ph = info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
        if (ph.p_type == PT_LOAD && e->code >= lo && e->code < lo + ph.p_memsz) here = true;
        if (ph.p_type == PT_TLS) tls = true;
    }
    if (!here) return 0;
    e->found = true;
    // Static TLS lies within static_size of the thread pointer (below it
    // on x86-64, above on aarch64); dynamic TLS is allocated apart.
    auto d = reinterpret_cast<intptr_t>(info->dlpi_tls_data) - reinterpret_cast<intptr_t>(tp());
    e->in_static = !tls || (info->dlpi_tls_data && d > -intptr_t(static_size) && d < intptr_t(static_size));
    for (int i = 0; tls && e->in_static && i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_TLS) {
            engine_lo = (d + 7) & ~7l; // inward: a neighbour's bytes are copied
            engine_hi = (d + long(info->dlpi_phdr[i].p_memsz)) & ~7l;
        }
    return 1;
}

void spin(std::atomic_flag &f) {
    while (f.test_and_set(std::memory_order_acquire)) cpu_relax();
}
void lock() { spin(pool_lock); }
void unlock() { pool_lock.clear(std::memory_order_release); }

// dst = src over [lo, hi) (offsets from the two thread pointers, whole
// words), storing only the words that differ: reading an untouched page
// maps the shared zero page, writing it would commit one.  Mostly equal:
// compared a line at a time first.
void copy_changed(char *dst, const char *src, long lo, long hi) {
    for (long at = lo; at < hi;) {
        long n = std::min(hi - at, 64 - (at & 63)); // to the next line
        if (memcmp(dst + at, src + at, size_t(n)) != 0) {
            auto *d = reinterpret_cast<uint64_t *>(dst + at);
            auto *w = reinterpret_cast<const uint64_t *>(src + at);
            for (long i = 0; i < n / 8; i++)
                if (d[i] != w[i]) d[i] = w[i];
        }
        at += n;
    }
}

// A new TCB's TLS, [lo, 0) from the thread pointer, from scratch's, but
// for up to two ranges it keeps (empty ones: lo == hi).
void copy_tls(char *tcb, long lo, long a_lo, long a_hi, long b_lo, long b_hi) {
    if (a_lo > b_lo) {
        std::swap(a_lo, b_lo);
        std::swap(a_hi, b_hi);
    }
    for (auto [keep_lo, keep_hi] : {std::pair{a_lo, a_hi}, std::pair{b_lo, b_hi}}) {
        if (keep_lo >= keep_hi) continue;
        copy_changed(tcb, scratch, lo, keep_lo);
        lo = std::max(lo, keep_hi);
    }
    copy_changed(tcb, scratch, lo, 0);
}

// The slabs' address ranges, for tcb_record (appended under the pool lock,
// read without it: a range once published never changes).
constexpr int kMaxSlabs = 1 << 14;
std::atomic<int> nslabs{0};
uintptr_t slab_lo[kMaxSlabs], slab_hi[kMaxSlabs];

bool in_slabs(const void *p) {
    uintptr_t a = uintptr_t(p);
    for (int i = nslabs.load(std::memory_order_acquire); i-- > 0;)
        if (a >= slab_lo[i] && a < slab_hi[i]) return true;
    return false;
}

// A block, and whether it held a TCB before (its libc TLS is then kept:
// glibc's malloc cache lives there and has no other way to be released).
// The free list's link, in the block's last bytes: the touched end.
constexpr size_t kLinkRoom = 64;
char *&link_of(char *block) { return *reinterpret_cast<char **>(block + block_size - sizeof(char *)); }
// Whether the TCB in it has its engine block written (the image, and then
// the allocator's state): an OS thread's TCB, or a green one that forked.
bool &engine_full(char *block) { return *reinterpret_cast<bool *>(block + block_size - 2 * sizeof(char *)); }

char *block_get(bool *reused) {
    lock();
    char *b = free_blocks;
    if (b) {
        free_blocks = link_of(b);
        unlock();
        *reused = true;
        return b;
    }
    if (slab_next == slab_end) {
        size_t bytes = block_size * 64;
        int n = nslabs.load(std::memory_order_relaxed);
        if (n == kMaxSlabs) {
            unlock();
            return nullptr;
        }
        void *m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            unlock();
            return nullptr;
        }
        slab_next = static_cast<char *>(m);
        slab_end = slab_next + bytes;
        slab_lo[n] = uintptr_t(slab_next);
        slab_hi[n] = uintptr_t(slab_end);
        nslabs.store(n + 1, std::memory_order_release);
    }
    b = slab_next;
    slab_next += block_size;
    unlock();
    *reused = false;
    return b;
}

// A block is whole pages, laid out as glibc lays a thread's: static TLS
// below the thread pointer, struct pthread above, then our record.  All of
// it sits at the block's end, so the part written (the modules' TLS, the
// descriptor, the record) takes the fewest pages: with the engine's block
// left unwritten, one page for the program's legacy thread; what lies
// below (the engine's block, modules whose TLS starts zeroed, the surplus
// glibc keeps for dlopen'ed modules) stays untouched.
char *tcb_in(char *block) {
    uintptr_t t = uintptr_t(block) + block_size - kLinkRoom - sizeof(Thread) - rec_off;
    return reinterpret_cast<char *>(t & ~(static_align - 1));
}

// The dtv ld.so made for scratch, its static TLS entries moved to tcb;
// *lo: the lowest module block's offset (below it, the unused surplus).
DtvEntry *dtv_move(char *tcb, long *lo) {
    auto *dtv = at<DtvEntry *>(scratch, kDtv);
    *lo = 0;
    for (size_t i = 1, n = dtv[-1].counter; i <= n; i++)
        if (dtv[i].val >= scratch - tls_area && dtv[i].val < scratch) {
            *lo = std::min(*lo, long(dtv[i].val - scratch) & ~7l);
            dtv[i].val = tcb + (dtv[i].val - scratch);
        }
    return dtv;
}

// fork's prepare handler, on the forking thread: the engine allocator's
// own handlers (registered before this one, so run after it) use that
// thread's TLS.  A green TCB gets the block's image now, keeping
// tls_worker (the one word the block holds).
void before_fork() {
    char *tcb = static_cast<char *>(tp());
    Thread *t = tcb_record(tcb);
    if (!t || engine_full(static_cast<char *>(t->block))) return;
    spin(scratch_lock);
    auto *d = reinterpret_cast<uint64_t *>(tcb + engine_lo);
    auto *s = reinterpret_cast<const uint64_t *>(scratch + engine_lo);
    for (long i = 0, n = (engine_hi - engine_lo) / 8; i < n; i++)
        if (!d[i]) d[i] = s[i];
    scratch_lock.clear(std::memory_order_release);
    engine_full(static_cast<char *>(t->block)) = true;
}

} // namespace

long tcb_tid_offset = kTid;
size_t tcb_sizeof_pthread = kSizeofPthread;

bool tcb_init() {
#if !defined(__x86_64__)
    return false;
#else
    if (strcmp(gnu_get_libc_version(), "2.36") != 0) return false;
    const uint32_t *sz = desc("_thread_db_sizeof_pthread"), *tid = desc("_thread_db_pthread_tid"),
                   *spec = desc("_thread_db_pthread_specific"), *list = desc("_thread_db_pthread_list"),
                   *canc = desc("_thread_db_pthread_cancelhandling");
    if (!sz || !tid || !spec || !list || !canc) return false;
    if (*sz != kSizeofPthread || tid[2] != kTid || spec[2] != kSpecific || list[2] != kList ||
        canc[2] != kCancelHandling)
        return false;
    dl_allocate_tls = reinterpret_cast<void *(*)(void *)>(dlsym(RTLD_DEFAULT, "_dl_allocate_tls"));
    dl_deallocate_tls = reinterpret_cast<void (*)(void *, bool)>(dlsym(RTLD_DEFAULT, "_dl_deallocate_tls"));
    dl_get_tls_static_info = reinterpret_cast<void (*)(size_t *, size_t *)>(dlsym(RTLD_DEFAULT, "_dl_get_tls_static_info"));
    ctype_init = reinterpret_cast<void (*)()>(dlsym(RTLD_DEFAULT, "__ctype_init"));
    call_tls_dtors = reinterpret_cast<void (*)()>(dlsym(RTLD_DEFAULT, "__call_tls_dtors"));
    pthread_keys = static_cast<KeyStruct *>(dlsym(RTLD_DEFAULT, "__pthread_keys"));
    auto *ro = static_cast<ptrdiff_t *>(dlsym(RTLD_DEFAULT, "__rseq_offset"));
    void *resp = dlsym(RTLD_DEFAULT, "__resp"); // TLS: this thread's address
    if (!dl_allocate_tls || !dl_deallocate_tls || !dl_get_tls_static_info || !ctype_init ||
        !call_tls_dtors || !pthread_keys || !resp)
        return false;
    if (ro) rseq_offset = *ro;
    resp_off = static_cast<char *>(resp) - static_cast<char *>(tp());
    errno_off = reinterpret_cast<char *>(&errno) - static_cast<char *>(tp());
    if (!dl_iterate_phdr(find_libc_tls, nullptr)) return false;
    dl_get_tls_static_info(&static_size, &static_align);
    // The scheduler writes its worker into every TCB at one offset from the
    // thread pointer, which only static TLS has: the engine loaded at
    // start-up (LD_PRELOAD), not dlopen'ed (dynamic TLS).
    EngineTls et{reinterpret_cast<uintptr_t>(&npshim_os_tp), false, false};
    dl_iterate_phdr(find_engine_tls, &et);
    if (!et.found || !et.in_static) return false;
    if (static_align < 64) static_align = 64;
    rec_off = (kSizeofPthread + 63) & ~size_t(63);
    block_size = (static_size + static_align + rec_off + sizeof(Thread) + kLinkRoom + 4095) & ~size_t(4095);
    tls_area = static_size - kSizeofPthread;
    void *m = mmap(nullptr, block_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return false;
    scratch = tcb_in(static_cast<char *>(m));
    memcpy(tcb_template, tp(), kSizeofPthread);
    return true;
#endif
}

Thread *tcb_new(void *stack_lo, size_t stack_size, size_t guard, bool os_thread) {
    // The runtime is up, so the engine's allocator registered its fork
    // handlers: this one runs before them.
    static std::atomic<bool> hooked{false};
    if (!os_thread && !hooked.exchange(true)) pthread_atfork(before_fork, nullptr, nullptr);
    bool reused;
    char *block = block_get(&reused);
    if (!block) return nullptr;
    char *tcb = tcb_in(block);
    memcpy(tcb, tcb_template, kSizeofPthread);
    spin(scratch_lock);
    // The dtv, and every module's TLS image, made at scratch: then moved.
    if (!dl_allocate_tls(scratch)) {
        scratch_lock.clear(std::memory_order_release);
        lock();
        link_of(block) = free_blocks;
        free_blocks = block;
        unlock();
        return nullptr;
    }
    long lo;
    at<void *>(tcb, kDtv) = dtv_move(tcb, &lo);
    // A reused block keeps its libc TLS: glibc's malloc cache lives there
    // and has no other way to be released.
    long libc_lo = reused ? (libc_tls_off + 7) & ~7l : 0;
    long libc_hi = reused ? (libc_tls_off + long(libc_tls_size)) & ~7l : 0;
    bool was_full = reused && engine_full(block);
    if (os_thread) {
        copy_tls(tcb, lo, libc_lo, libc_hi, 0, 0);
    } else {
        copy_tls(tcb, lo, libc_lo, libc_hi, engine_lo, engine_hi);
        if (was_full) memset(tcb + engine_lo, 0, size_t(engine_hi - engine_lo));
    }
    scratch_lock.clear(std::memory_order_release);
    engine_full(block) = os_thread;
    if (reused) at<int>(tcb, errno_off) = 0;
    at<void *>(tcb, kTcbSelf) = tcb;
    at<void *>(tcb, kSelf) = tcb;
    at<int>(tcb, kMultipleThreads) = 1; // catomic_* must lock
    // Not on glibc's stack lists: fork's stack reclaiming leaves it alone.
    at<void *>(tcb, kList) = tcb + kList;
    at<void *>(tcb, kList + 8) = tcb + kList;
    at<bool>(tcb, kUserStack) = true;
    at<void *>(tcb, kRobustPrev) = tcb + kRobustHead;
    at<void *>(tcb, kRobustHead) = tcb + kRobustHead;
    at<void *>(tcb, kRobustHead + 16) = nullptr;
    at<void *>(tcb, kCleanup) = nullptr;
    at<void *>(tcb, kCleanupJmpBuf) = nullptr;
    at<int>(tcb, kCancelHandling) = 0;
    memset(tcb + kSpecific1st, 0, kSpecificUsed + 1 - kSpecific1st);
    at<void *>(tcb, kSpecific) = tcb + kSpecific1st;
    // The alloca cutoff, pthread_getattr_np and unwinders read these.
    at<void *>(tcb, kStackBlock) = stack_lo;
    at<size_t>(tcb, kStackBlockSize) = stack_size;
    at<size_t>(tcb, kGuardSize) = guard;
    memset(tcb + kRes, 0, kResSize);
    memset(tcb + kTlsState, 0, kTlsStateEnd - kTlsState);
    // rseq belongs to the OS thread: -2 makes sched_getcpu ask the kernel.
    if (rseq_offset >= 0) at<uint32_t>(tcb, size_t(rseq_offset) + 4) = uint32_t(-2);
    auto *t = new (tcb + rec_off) Thread();
    t->magic = Thread::kMagic;
    t->tcb = tcb;
    t->block = block;
    return t;
}

void tcb_free(void *tcb) {
    dl_deallocate_tls(tcb, false);
    Thread *t = tcb_record(tcb);
    char *block = static_cast<char *>(t->block);
    t->magic = 0;
    lock();
    link_of(block) = free_blocks;
    free_blocks = block;
    unlock();
}

void tcb_after_fork() { // written only if held: a page the child writes is copied
    if (pool_lock.test()) pool_lock.clear();
    if (scratch_lock.test()) scratch_lock.clear();
}

void tcb_thread_start(void *tcb) {
    ctype_init();
    at<void *>(tp(), resp_off) = static_cast<char *>(tcb) + kRes;
    uselocale(LC_GLOBAL_LOCALE);
}

void tcb_thread_end(void *tcb) {
    call_tls_dtors();
    // glibc's key destructors (__nptl_deallocate_tsd): rounds until no
    // destructor stores a value again.
    for (size_t round = 0; at<bool>(tcb, kSpecificUsed) && round < kDestructorIterations; round++) {
        at<bool>(tcb, kSpecificUsed) = false;
        for (size_t l1 = 0, idx = 0; l1 < kKeys / kKeys2nd; l1++) {
            auto *l2 = at<KeyData *>(tcb, kSpecific + l1 * 8);
            if (!l2) {
                idx += kKeys2nd;
                continue;
            }
            for (size_t in = 0; in < kKeys2nd; in++, idx++) {
                void *data = l2[in].data;
                if (!data) continue;
                l2[in].data = nullptr;
                if (l2[in].seq == pthread_keys[idx].seq && pthread_keys[idx].destr) pthread_keys[idx].destr(data);
            }
        }
    }
    for (size_t l1 = 1; l1 < kKeys / kKeys2nd; l1++) {
        void *&l2 = at<void *>(tcb, kSpecific + l1 * 8);
        free(l2);
        l2 = nullptr;
    }
    // strsignal's and strerror_l's buffers (tls_internal_t).
    free(at<void *>(tcb, kTlsState));
    free(at<void *>(tcb, kTlsState + 8));
    at<void *>(tcb, kTlsState) = nullptr;
    at<void *>(tcb, kTlsState + 8) = nullptr;
}

void tcb_set_stack(void *tcb, void *lo, size_t size, size_t guard) {
    at<void *>(tcb, kStackBlock) = lo;
    at<size_t>(tcb, kStackBlockSize) = size;
    at<size_t>(tcb, kGuardSize) = guard;
}

void tcb_set_unwind_buf(void *tcb, void *buf) { at<void *>(tcb, kCleanupJmpBuf) = buf; }
void *tcb_unwind_buf(void *tcb) { return at<void *>(tcb, kCleanupJmpBuf); }
void tcb_clear_exiting(void *tcb) { at<int>(tcb, kCancelHandling) = 0; }

bool tcb_setxid_marked(void *tcb) {
    constexpr int kSetxidBit = 0x40; // glibc's SETXID_BITMASK in cancelhandling
    return __atomic_load_n(&at<int>(tcb, kCancelHandling), __ATOMIC_ACQUIRE) & kSetxidBit;
}

bool tcb_made_here(const void *tcb) { return in_slabs(tcb); }

void *tcb_current() { return tp(); }
void *tcb_robust_head(void *tcb) { return static_cast<char *>(tcb) + kRobustHead; }

// ld.so's dl_load_lock, dl_load_write_lock and dl_load_tls_lock, three
// recursive pthread_mutex_t side by side in _rtld_global, are locked with
// libc's own pthread_mutex_lock(), which names the owner by the TCB's tid:
// the worker's, for every green thread it runs.  dlopen() and dlclose() hold
// dl_load_lock while a library's constructors and destructors run, which
// may park (a constructor that starts a thread and joins it, or reads a
// pipe).  The engine gives such a thread an id of its own as it parks
// (scheduler.cpp, enter_tls).  dl_iterate_phdr() holds the middle one
// while its callback runs: found there, by its owner and kind, and the
// other two checked to be recursive mutexes beside it.
namespace {
char *rtld_global;
pthread_mutex_t *rtld_write_lock;
int find_write_lock(struct dl_phdr_info *, size_t, void *) {
    pid_t me = *reinterpret_cast<pid_t *>(static_cast<char *>(tp()) + tcb_tid_offset);
    for (size_t o = sizeof(pthread_mutex_t); o + 2 * sizeof(pthread_mutex_t) <= 8192; o += 8) {
        auto *m = reinterpret_cast<pthread_mutex_t *>(rtld_global + o);
        if (m->__data.__lock && m->__data.__count == 1 && m->__data.__owner == me &&
            (m->__data.__kind & 3) == PTHREAD_MUTEX_RECURSIVE_NP) {
            rtld_write_lock = m;
            break;
        }
    }
    return 1;
}
} // namespace

void tcb_rtld_locks() {
    rtld_global = static_cast<char *>(dlsym(RTLD_DEFAULT, "_rtld_global"));
    if (!rtld_global) return;
    dl_iterate_phdr(find_write_lock, nullptr);
    pthread_mutex_t *m = rtld_write_lock;
    if (!m || (m[-1].__data.__kind & 3) != PTHREAD_MUTEX_RECURSIVE_NP ||
        (m[1].__data.__kind & 3) != PTHREAD_MUTEX_RECURSIVE_NP)
        return;
    int *words[3] = {&m[-1].__data.__owner, &m[0].__data.__owner, &m[1].__data.__owner};
    npshim_tid_owner_words(words, 3);
}

Thread *tcb_record(void *tcb) {
    // Only memory of our slabs is read: a pthread_t of a thread glibc made
    // itself (SIGEV_THREAD, AIO) has its TCB at the very top of its stack.
    if (!in_slabs(tcb)) return nullptr;
    auto *t = reinterpret_cast<Thread *>(static_cast<char *>(tcb) + rec_off);
    return t->magic == Thread::kMagic && t->tcb == tcb ? t : nullptr;
}

} // namespace shim
