// Legacy threads as green threads: start-up (the program's main runs as one,
// on its own TCB), pthread_create and the calls that name a thread.  Each
// green thread has a TCB of its own (tcb.cpp) entered at every switch, so
// the program sees a distinct pthread_self(), errno and TLS per thread.
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <sched.h>
#include <link.h>
#include <linux/futex.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fd_table.hpp"
#include "cpu_relax.hpp"
#include "real.hpp"
#include "shim.hpp"
#include "tcb.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define SHIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SHIM_ASAN 1
#endif
#endif
#ifdef SHIM_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace shim {

int active = -1;
__thread char *plain_handler_sp __attribute__((tls_model("initial-exec")));
__thread bool plain_no_restart __attribute__((tls_model("initial-exec")));
__thread volatile char *dispatch_selector __attribute__((tls_model("initial-exec")));

namespace {

__thread Thread *cur __attribute__((tls_model("initial-exec")));

Thread main_rec;
void *main_tcb;
void *park_tp;          // the OS main thread's TCB while main is green
int (*program_main)(int, char **, char **);
std::atomic<uint32_t> live{0};         // legacy threads other than main
std::atomic<uint32_t> main_waits{0};   // main called pthread_exit: wait for the rest
// main runs plain, on the OS main thread and stack (main_rec.stack_lo), and
// its first pthread_create may make it green (adopt_main).
std::atomic<bool> main_plain{false};
// While main is green, the OS main thread takes the process's signals for
// on_signal to route.  The ones a signalfd reads must stay pending in the
// kernel instead, as they do when every thread blocks them: it blocks
// them too, told through catcher_word.
std::atomic<uint32_t> catcher_word{0};
std::atomic<uint64_t> catcher_blocked{0};
std::atomic<uint64_t> catcher_applied{0};
std::atomic<bool> catcher_on{false};

} // namespace

void catcher_wake() {
    catcher_word.fetch_add(1, std::memory_order_release);
    real.syscall(SYS_futex, long(&catcher_word), FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
}

namespace {

// Ids for the catcher to take (catcher_copy_ids): 1 asked, 2 done.  glibc
// makes one set*id change at a time.
struct Ids {
    std::atomic<uint32_t> state{0};
    uid_t uid[3];
    gid_t gid[3];
    int ngroups;
    gid_t groups[65536]; // NGROUPS_MAX; untouched pages cost nothing
} ids;

long sys(long nr, long a = 0, long b = 0, long c = 0, long d = 0) { return real.syscall(nr, a, b, c, d, 0, 0); }

void read_ids(uid_t *u, gid_t *g, int *n, gid_t *groups) {
    sys(SYS_getresuid, long(&u[0]), long(&u[1]), long(&u[2]));
    sys(SYS_getresgid, long(&g[0]), long(&g[1]), long(&g[2]));
    *n = int(sys(SYS_getgroups, 65536, long(groups)));
}

// Groups first, then gids, uids last: once root is gone, nothing else may
// change.  Each as the kernel checks it for any thread.
void take_ids() {
    static uid_t u[3];
    static gid_t g[3];
    static int n;
    static gid_t groups[65536];
    read_ids(u, g, &n, groups);
    if (ids.ngroups >= 0 && (n != ids.ngroups || memcmp(groups, ids.groups, size_t(n) * sizeof(gid_t)) != 0))
        sys(SYS_setgroups, ids.ngroups, long(ids.groups));
    if (memcmp(g, ids.gid, sizeof g) != 0) sys(SYS_setresgid, ids.gid[0], ids.gid[1], ids.gid[2]);
    if (memcmp(u, ids.uid, sizeof u) != 0) sys(SYS_setresuid, ids.uid[0], ids.uid[1], ids.uid[2]);
}

// The OS main thread, while main is green, until the process exits.  Its
// own mask starts empty: the one it came with (exec passes the caller's
// on) is main's now, which the routing keeps (route_blocked); left on this
// thread, a signal blocked at exec would stay pending here for ever,
// whatever main unblocks (haproxy -W re-executes itself with its signals
// blocked).
[[noreturn]] void catcher_loop() {
    sigset_t none;
    sigemptyset(&none);
    real.pthread_sigmask(SIG_SETMASK, &none, nullptr);
    uint64_t applied = 0;
    for (;;) {
        uint32_t w = catcher_word.load(std::memory_order_acquire);
        uint64_t want = catcher_blocked.load(std::memory_order_acquire);
        if (want != applied) {
            sigset_t s;
            sigemptyset(&s);
            for (int sig = 1; sig < 65; sig++)
                if (want & (uint64_t(1) << (sig - 1))) sigaddset(&s, sig);
            real.pthread_sigmask(SIG_BLOCK, &s, nullptr);
            applied = want;
            catcher_applied.store(applied, std::memory_order_release);
        }
        if (ids.state.load(std::memory_order_acquire) == 1) {
            take_ids();
            ids.state.store(2, std::memory_order_release);
            sys(SYS_futex, long(&ids.state), FUTEX_WAKE_PRIVATE, 1);
        }
        // Threads that compute with signals waiting: poked every 2 ms.
        struct timespec round = {0, 2000000};
        bool again = poke_round();
        real.syscall(SYS_futex, long(&catcher_word), FUTEX_WAIT_PRIVATE, long(w), again ? long(&round) : 0, 0, 0);
    }
}

void warn(const char *why) {
    char msg[256];
    int n = snprintf(msg, sizeof msg, "netpoll-preload: %s; the program runs without green threads\n", why);
    if (n > 0) real.write ? (void)real.write(2, msg, size_t(n)) : (void)0;
}

// Whether the object `info` describes defines `name`, read from its
// dynamic symbol table itself: dlsym of a missing name mallocs its error
// message, and init_once can run inside the program's malloc (tcmalloc
// calls pthread_once from its sbrk hook holding its spin lock: swipl),
// which that malloc would wait on for ever.
bool defines(const struct dl_phdr_info *info, const char *name) {
    const ElfW(Dyn) *dyn = nullptr;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = reinterpret_cast<const ElfW(Dyn) *>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (!dyn) return false;
    const ElfW(Sym) *sym = nullptr;
    const char *str = nullptr;
    const uint32_t *gnu = nullptr, *sysv = nullptr;
    for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
        ElfW(Addr) p = d->d_un.d_ptr;
        if (p < info->dlpi_addr) p += info->dlpi_addr; // not relocated (the vdso's)
        if (d->d_tag == DT_SYMTAB) sym = reinterpret_cast<const ElfW(Sym) *>(p);
        else if (d->d_tag == DT_STRTAB) str = reinterpret_cast<const char *>(p);
        else if (d->d_tag == DT_GNU_HASH) gnu = reinterpret_cast<const uint32_t *>(p);
        else if (d->d_tag == DT_HASH) sysv = reinterpret_cast<const uint32_t *>(p);
    }
    if (!sym || !str) return false;
    auto match = [&](uint32_t i) { return sym[i].st_shndx != SHN_UNDEF && strcmp(str + sym[i].st_name, name) == 0; };
    if (gnu) {
        uint32_t nbuckets = gnu[0], symoffset = gnu[1], bloom_size = gnu[2];
        auto *buckets =
            reinterpret_cast<const uint32_t *>(reinterpret_cast<const ElfW(Addr) *>(gnu + 4) + bloom_size);
        const uint32_t *chain = buckets + nbuckets;
        uint32_t h = 5381;
        for (const unsigned char *c = reinterpret_cast<const unsigned char *>(name); *c; c++) h = h * 33 + *c;
        if (!nbuckets) return false;
        uint32_t i = buckets[h % nbuckets];
        if (i < symoffset) return false;
        for (;; i++) {
            uint32_t hh = chain[i - symoffset];
            if ((hh | 1) == (h | 1) && match(i)) return true;
            if (hh & 1) break;
        }
    } else if (sysv) {
        for (uint32_t i = 0; i < sysv[1]; i++)
            if (match(i)) return true;
    }
    return false;
}

// Whether a loaded module defines `name` (see defines).
bool defined_anywhere(const char *name) {
    struct Q {
        const char *name;
        bool found;
    } q{name, false};
    dl_iterate_phdr(
        [](struct dl_phdr_info *info, size_t, void *qv) -> int {
            auto *q = static_cast<Q *>(qv);
            return q->found = defines(info, q->name);
        },
        &q);
    return q.found;
}

// Whether an object carries Go's note (owner "Go", type 4: the build id).
bool has_go_note(const struct dl_phdr_info *info) {
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) &p = info->dlpi_phdr[i];
        if (p.p_type != PT_NOTE) continue;
        auto *at = reinterpret_cast<const char *>(info->dlpi_addr + p.p_vaddr), *end = at + p.p_memsz;
        while (at + sizeof(ElfW(Nhdr)) <= end) {
            auto *n = reinterpret_cast<const ElfW(Nhdr) *>(at);
            const char *name = at + sizeof *n;
            if ((n->n_namesz == 3 || n->n_namesz == 4) && n->n_type == 4 && memcmp(name, "Go", 3) == 0) return true;
            at = name + ((n->n_namesz + 3) & ~3u) + ((n->n_descsz + 3) & ~3u);
        }
    }
    return false;
}

// Go's code in this object: its note, or, without one (a build with
// -ldflags=-buildid=, as reproducible builds do), the crosscall2 that cgo
// exports from every executable or c-shared library that has it (not from
// a C program linked with a c-archive, which stays unseen).
bool go_object(const struct dl_phdr_info *info) { return has_go_note(info) || defines(info, "crosscall2"); }

// A program whose own runtime schedules or watches its threads, which then
// runs without green threads.  Go (built with cgo, its threads come from
// pthread_create): its scheduler would run on ours, its preemption signal
// is our poke's, and signal frames would land on goroutine stacks.
// ThreadSanitizer and MemorySanitizer: their state is the OS thread's.
// Go marks its executables with a note of its own (.note.go.buildid), and
// its libraries too: a C program linked with one built with -buildmode=
// c-shared runs Go's runtime all the same (its preemption, a tgkill of
// SIGURG, would be taken for our poke: a goroutine that spins never yields).
// Every object loaded at start is looked at, not the program alone; one
// without the note ran its goroutines on green threads (go_object).
const char *foreign_runtime() {
    if (defined_anywhere("__tsan_init")) return "a ThreadSanitizer build keeps its state per OS thread";
    if (defined_anywhere("__msan_init")) return "a MemorySanitizer build keeps its state per OS thread";
    bool go = false;
    dl_iterate_phdr(
        [](struct dl_phdr_info *info, size_t, void *found) -> int {
            return *static_cast<bool *>(found) = go_object(info);
        },
        &go);
    return go ? "Go's runtime (in the program or a library it links with) schedules its own threads" : nullptr;
}

// A Go library dlopen'ed once green threads run: too late to step aside,
// and Go's runtime runs on them.  Its preemption (a tgkill of SIGURG, to
// the OS thread) is taken for our poke: a goroutine that loops without
// calls keeps its P for good (with GOMAXPROCS=1, or against a collection's
// stop); and our signal frames land on goroutine stacks (a C host calling
// it from 8 threads crashed one run in five).  Said once, with what to do
// instead, when Go's runtime creates a thread (its constructor starts
// one): the caller's object is found without a lock (_dl_find_object; not
// dl_iterate_phdr, whose lock a fork can leave taken in the child) and read
// from its ELF header, each one once.
void late_foreign_runtime(void *caller) {
    static std::atomic<bool> said{false};
    static std::atomic<void *> plain{nullptr}; // the last caller's object, without the note
    if (said.load(std::memory_order_relaxed)) return;
    struct dl_find_object fo;
    if (_dl_find_object(caller, &fo) != 0 || plain.load(std::memory_order_relaxed) == fo.dlfo_map_start) return;
    auto *eh = static_cast<const ElfW(Ehdr) *>(fo.dlfo_map_start);
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_phentsize != sizeof(ElfW(Phdr))) return;
    struct dl_phdr_info info = {};
    info.dlpi_addr = fo.dlfo_link_map->l_addr;
    info.dlpi_phdr = reinterpret_cast<const ElfW(Phdr) *>(reinterpret_cast<const char *>(eh) + eh->e_phoff);
    info.dlpi_phnum = eh->e_phnum;
    if (!go_object(&info)) {
        plain.store(fo.dlfo_map_start, std::memory_order_relaxed);
        return;
    }
    if (!said.exchange(true)) {
        static const char msg[] = "netpoll-preload: a Go library loaded with dlopen runs on green threads, where "
                                  "it may hang or crash; link it with the program, or set NP_SHIM=0\n";
        if (real.write) (void)real.write(2, msg, sizeof msg - 1);
    }
}

void release_tcb(void *tp) {
    if (tp != main_tcb) tcb_free(tp);
}

// The size glibc gives a thread by default: RLIMIT_STACK, as pthread_create.
size_t default_stack() {
    if (const char *v = secure_getenv("NP_STACK_SIZE")) { // nprun -s
        // Read as the runtime reads it (src/config.cpp), k, m and g
        // suffixes included: NP_STACK_SIZE=256k set by hand was taken by
        // the runtime without a word and ignored here.
        char *end;
        unsigned long long n = *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
        unsigned shift = 0;
        if (n && *end) {
            const char *units = "kKmMgG", *u = strchr(units, *end);
            if (u) shift = 10 * unsigned(1 + (u - units) / 2), end++;
        }
        if (n && *end == 0 && n <= (1ull << 30) >> shift && n << shift >= 16384) return size_t(n << shift);
    }
    pthread_attr_t a;
    size_t s = 0;
    if (pthread_getattr_default_np(&a) == 0) {
        pthread_attr_getstacksize(&a, &s);
        pthread_attr_destroy(&a);
    }
    if (s < 16384) s = 8u << 20;
    return s;
}

// A few pools, not one per size: sizes round up to a power of two.
size_t stack_bucket(size_t want) {
    size_t s = 64 * 1024;
    while (s < want && s < (size_t(1) << 30)) s <<= 1;
    return s;
}

// The live legacy threads (signals sent to the process pick one).
std::atomic_flag list_lock = ATOMIC_FLAG_INIT;
Thread *list_head;

void list_lock_take() {
    while (list_lock.test_and_set(std::memory_order_acquire)) cpu_relax();
}

void thread_end(Thread *t) {
    threads_remove(t);
    sig_thread_gone(t); // one it was woken for goes to another
    tcb_thread_end(t->tcb);
    robust_owner_died(t); // after the destructors, as the kernel at exit
    cur = nullptr;
    // Its record lives until it is joined (or, detached, until it is gone).
    t->ended.store(1, std::memory_order_release);
    futex_wake(reinterpret_cast<const uint32_t *>(&t->ended), INT_MAX);
    if (live.fetch_sub(1, std::memory_order_acq_rel) == 1 && main_waits.load(std::memory_order_acquire))
        futex_wake(reinterpret_cast<const uint32_t *>(&live), INT_MAX);
}

// The green thread's body: glibc's start_thread, for our TCB.
void *green_entry(void *arg) {
    Thread *volatile t = static_cast<Thread *>(arg);
    cur = t;
    tcb_thread_start(t->tcb);
    __pthread_unwind_buf_t ub;
    // pthread_exit and cancellation unwind to here (THREAD_SELF->cleanup_jmp_buf).
    if (_setjmp(reinterpret_cast<struct __jmp_buf_tag *>(ub.__cancel_jmp_buf)) == 0) {
        memset(ub.__pad, 0, sizeof ub.__pad);
        tcb_set_unwind_buf(t->tcb, &ub);
        t->result = t->fn(t->arg);
    }
    if (cur != t) {
        // It forked and this is the child, where it went on as a plain
        // thread (threads_after_fork): no worker is under it to return to.
        // As glibc's start_thread ends a process's last thread, the child
        // exits with 0 once the threads it made since have ended, after the
        // thread's own destructors (thread_local, then pthread keys).
        tcb_thread_end(t->tcb);
        main_waits.store(1, std::memory_order_release);
        for (uint32_t n; (n = live.load(std::memory_order_acquire)) != 0;)
            futex_wait(reinterpret_cast<const uint32_t *>(&live), n, 0, false);
        exit(0);
    }
    thread_end(t);
    return t->result;
}

struct MainArgs {
    int argc;
    char **argv, **envp;
    int status;
    bool green; // a green thread from the start (else made one by adopt_main)
};

void *main_entry(void *arg) {
    auto *volatile m = static_cast<MainArgs *>(arg);
    if (m->green) {
        cur = &main_rec;
        threads_add(&main_rec);
    }
    void *saved = tcb_unwind_buf(main_tcb);
    __pthread_unwind_buf_t ub;
    if (_setjmp(reinterpret_cast<struct __jmp_buf_tag *>(ub.__cancel_jmp_buf)) == 0) {
        memset(ub.__pad, 0, sizeof ub.__pad);
        tcb_set_unwind_buf(main_tcb, &ub);
        m->status = program_main(m->argc, m->argv, m->envp);
    } else {
        // pthread_exit from main: the process lives on until the last
        // thread ends, then exits with 0.
        tcb_clear_exiting(main_tcb);
        main_waits.store(1, std::memory_order_release);
        for (uint32_t n; (n = live.load(std::memory_order_acquire)) != 0;)
            futex_wait(reinterpret_cast<const uint32_t *>(&live), n, 0, false); // handlers run meanwhile
        m->status = 0;
        tcb_set_unwind_buf(main_tcb, saved);
    }
    // What __libc_start_main does after main, done here, on main's green
    // thread, as exit() called from main is: the OS main thread, parked in
    // catcher_loop, need not be woken to do it (a wake-up per process).
    exit(m->status);
}

std::atomic<int> runtime_state{0}; // 0 not yet, 1 starting, 2 up, 3 failed

bool runtime_up() {
    int s = runtime_state.load(std::memory_order_acquire);
    if (s >= 2) return s == 2;
    if (runtime_state.compare_exchange_strong(s, 1)) {
        bool up = fd_start_runtime() == 0;
        if (up) setxid_fix(); // the workers' pthread_create installed it
        runtime_state.store(up ? 2 : 3, std::memory_order_release);
    } else {
        while (runtime_state.load(std::memory_order_acquire) == 1) sched_yield();
    }
    return runtime_state.load() == 2;
}

size_t main_stack_size() {
    struct rlimit rl;
    if (getrlimit(RLIMIT_STACK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 32u << 20;
    return stack_bucket(rl.rlim_cur < 65536 ? 65536 : rl.rlim_cur);
}

// main on the OS main thread, on its own stack, as without the library,
// until its first pthread_create (adopt_main): a process that never makes
// a second thread (most commands a shell runs) stays single-threaded, as
// unshare(CLONE_NEWUSER) and a zygote's fork require, and starts no
// runtime at all.  Until then its calls are a plain thread's, which no
// other thread waits behind.
[[noreturn]] void plain_main(int argc, char **argv, char **envp) {
    main_tcb = npshim_os_tp();
    main_rec.magic = Thread::kMagic;
    main_rec.tcb = main_tcb;
    main_rec.is_main = true;
    main_plain.store(true, std::memory_order_release); // its stack is looked up when needed (main_stack)
    // The variables' mistakes are told at start, as when the runtime
    // started here; a dump asked for answers from the start (and says no
    // green threads yet): the signal would kill the process otherwise.
    npshim_config_early();
    MainArgs m{argc, argv, envp, 0, false};
    main_entry(&m);
    __builtin_unreachable();
}

// The OS main thread once main is green: it takes the process's signals,
// on a stack of its own, main's being main's.  (Not instrumented by ASan:
// its check before a call that does not return asks for the stack of the
// thread it finds in this TCB, a fresh one it never saw.)
[[noreturn]] __attribute__((no_sanitize("address"))) void main_os_side(npshim_thread *g, void *) {
    main_rec.g = g;
    threads_add(&main_rec);
    catcher_on.store(true, std::memory_order_release);
    npshim_thread_start(g);
    catcher_loop();
}

// Whether the caller runs inside a handler the kernel ran on this plain
// thread: its frames are below the outermost handler's (a handler left by
// longjmp left a mark above the caller, which counts for nothing).
bool in_plain_handler(const char *here) { return plain_handler_sp && here < plain_handler_sp; }

// main's stack, looked up when main is adopted, not at start: glibc reads it from
// /proc/self/maps, a cost a process that never makes a thread (a command
// a shell runs) would pay for nothing.
bool main_stack() {
    if (main_rec.stack_size) return true;
    pthread_attr_t a;
    void *lo;
    size_t size;
    if (real.pthread_getattr_np(pthread_self(), &a) != 0) return false;
    bool ok = pthread_attr_getstack(&a, &lo, &size) == 0;
    pthread_attr_destroy(&a);
    if (!ok) return false;
    main_rec.stack_lo = lo;
    main_rec.stack_size = size;
    return true;
}

} // namespace

void main_stack_now() {
    if (!cur && main_plain.load(std::memory_order_acquire) && kernel_tid() == getpid() &&
        !in_plain_handler(static_cast<char *>(__builtin_frame_address(0)))) // glibc's lookup mallocs
        main_stack();
}

namespace {

// main, on the OS main thread, makes its first thread: from here on it is
// a green thread on its own stack and TCB (so what it left in its TLS and
// its frames stay), as when it started as one; the OS main thread goes on
// as the catcher.  Not inside a signal handler, whose return would then run
// on a worker, nor on another stack: main then stays a plain thread, as a
// forked child's caller does.

void adopt_main() {
    char *here = static_cast<char *>(__builtin_frame_address(0));
    if (cur || !main_plain.load(std::memory_order_acquire)) return;
    if (kernel_tid() != getpid() || in_plain_handler(here)) return;
    if (!main_stack()) {
        main_plain.store(false, std::memory_order_relaxed);
        return;
    }
    char *lo = static_cast<char *>(main_rec.stack_lo);
    if (here < lo || here >= lo + main_rec.stack_size) return;
    main_plain.store(false, std::memory_order_relaxed); // one try: what fails below would fail again
    // The catcher's stack: a thread's size (a handler may run there when
    // every thread blocks a signal), its pages taken only as touched.
    constexpr size_t kOsStack = 8u << 20, kGuard = 4096;
    void *os = mmap(nullptr, kOsStack, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (os == MAP_FAILED) return;
    mprotect(os, kGuard, PROT_NONE);
    Thread *park = tcb_new(nullptr, 0, 0, true);
    if (!park) {
        munmap(os, kOsStack);
        return;
    }
    // No handler on this OS thread until it is the catcher (its loop opens
    // its mask): main's mask is main's, kept by the routing.
    sigset_t all, before;
    sigfillset(&all);
    real.pthread_sigmask(SIG_SETMASK, &all, &before);
    main_rec.sigmask = before;
    route_blocked(&main_rec.sigmask);
    altstack_take(&main_rec);
    park_tp = park->tcb;
    cur = &main_rec;
    npshim_thread *g;
    if (npshim_thread_adopt(&g, lo, main_rec.stack_size, main_tcb, park->tcb, main_os_side, nullptr,
                            static_cast<char *>(os) + kGuard, kOsStack - kGuard) != 0) {
        cur = nullptr;
        park_tp = nullptr;
        if (!(main_rec.altstack.ss_flags & SS_DISABLE)) sigaltstack(&main_rec.altstack, nullptr); // the OS thread's again
        main_rec.altstack = stack_t{nullptr, SS_DISABLE, 0};
        tcb_free(park->tcb);
        munmap(os, kOsStack);
        real.pthread_sigmask(SIG_SETMASK, &before, nullptr);
        return;
    }
    // Here on a worker, as main's green thread.
}

// main as a green thread on the program's own TCB (so what constructors
// left in its TLS stays), while the OS main thread waits on a TCB of its
// own: a signal handler run there meanwhile is not mistaken for main.
// When no constructor made a thread, main starts as a plain thread instead
// (plain_main).
int green_main(int argc, char **argv, char **envp) {
    if (!on()) return program_main(argc, argv, envp);
    if (runtime_state.load(std::memory_order_acquire) == 0) plain_main(argc, argv, envp);
    MainArgs m{argc, argv, envp, 0, true};
    npshim_thread *g;
    if (!runtime_up() || npshim_thread_create(&g, main_entry, &m, main_stack_size()) != 0) {
        warn("cannot start the runtime");
        active = 0;
        return program_main(argc, argv, envp);
    }
    Thread *park = tcb_new(nullptr, 0, 0, true); // the OS main thread's
    main_tcb = npshim_os_tp();
    main_rec.magic = Thread::kMagic;
    main_rec.tcb = main_tcb;
    main_rec.g = g;
    main_rec.is_main = true;
    pthread_sigmask(SIG_SETMASK, nullptr, &main_rec.sigmask);
    route_blocked(&main_rec.sigmask);
    npshim_thread_stack(g, &main_rec.stack_lo, &main_rec.stack_size);
    npshim_thread_set_tls(g, main_tcb, 1); // glibc lists it with the OS main thread's tid
    if (park) {
        park_tp = park->tcb;
        npshim_tp_set(park->tcb);
    }
    catcher_on.store(true, std::memory_order_release);
    npshim_thread_start(g);
    catcher_loop(); // until main's green thread exits the process
}

// A child of fork has one thread, the caller, and none of the workers:
// it goes on as a plain OS thread, and its first pthread_create starts a
// fresh runtime (a daemon's threads are green again).
} // namespace

void threads_after_fork() {
    // The child of main while plain: its first thread makes it green, as in
    // the parent (adopt_main looks that it is on main's stack still).
    bool plain = main_plain.load() && !cur;
    if (Thread *t = cur) t->magic = 0; // its green thread stayed in the parent
    cur = nullptr;
    list_head = nullptr;
    list_lock.clear();
    live.store(0);
    main_waits.store(0);
    main_rec.g = nullptr;
    park_tp = nullptr;
    // No OS main thread waits as a catcher here: signalfd must not wait
    // for one (PostgreSQL calls it in every backend it forks).
    if (catcher_on.load()) catcher_on.store(false);
    runtime_state.store(0);
    main_plain.store(plain);
    npshim_after_fork_child();
    fd_after_fork();
    private_waits_after_fork();
    signals_after_fork();
    tcb_after_fork();
}

Thread *self() { return cur; }

void catcher_block(const sigset_t *set) {
    uint64_t b = 0;
    for (int sig = 1; sig < 65; sig++)
        if (sigismember(set, sig) == 1) b |= uint64_t(1) << (sig - 1);
    if ((catcher_blocked.fetch_or(b, std::memory_order_acq_rel) & b) == b) return;
    catcher_wake();
    // Not before the catcher blocks them: a signal sent right after
    // signalfd() returns must not reach it.
    for (int i = 0; i < 10000 && catcher_on.load(std::memory_order_acquire) &&
                    (catcher_applied.load(std::memory_order_acquire) & b) != b;
         i++) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, nullptr); // parks a green caller
    }
}

bool catcher_blocks(int sig) { return catcher_blocked.load(std::memory_order_acquire) & (uint64_t(1) << (sig - 1)); }

void *park_tcb_main(void *tp) { return park_tp && tp == park_tp ? main_tcb : nullptr; }

void *main_tcb_of_process() { return main_tcb; }

void threads_wait_rest() {
    while (live.load(std::memory_order_acquire) != 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, nullptr); // a plain thread's: the kernel's
    }
}

// In a signal handler (SIGSETXID): system calls only.  Bounded, so a
// catcher that is gone cannot hang set*id.
void catcher_copy_ids() {
    if (!catcher_on.load(std::memory_order_acquire)) return;
    read_ids(ids.uid, ids.gid, &ids.ngroups, ids.groups);
    ids.state.store(1, std::memory_order_release);
    catcher_wake();
    for (int i = 0; i < 1000 && ids.state.load(std::memory_order_acquire) == 1; i++) {
        struct timespec ms = {0, 1000000};
        sys(SYS_futex, long(&ids.state), FUTEX_WAIT_PRIVATE, 1, long(&ms));
    }
    ids.state.store(0, std::memory_order_relaxed);
}

Thread *thread_of_id(pid_t id) {
    if (id == getpid()) return main_rec.g && main_rec.magic == Thread::kMagic ? &main_rec : nullptr;
    if (!(id & 0x40000000)) return nullptr; // a kernel ID
    list_lock_take();
    Thread *found = nullptr;
    for (Thread *t = list_head; t && !found; t = t->next)
        if (!t->is_main && t->g && green_id(t) == id) found = t;
    list_lock.clear(std::memory_order_release);
    return found;
}

bool threads_each(bool (*fn)(Thread *)) {
    list_lock_take();
    bool any = false;
    for (Thread *t = list_head; t; t = t->next) any |= fn(t);
    list_lock.clear(std::memory_order_release);
    return any;
}

void threads_add(Thread *t) {
    list_lock_take();
    t->prev = nullptr;
    t->next = list_head;
    if (list_head) list_head->prev = t;
    list_head = t;
    list_lock.clear(std::memory_order_release);
}

void threads_remove(Thread *t) {
    list_lock_take();
    if (t->prev) t->prev->next = t->next;
    else if (list_head == t) list_head = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = nullptr;
    list_lock.clear(std::memory_order_release);
}

// One waiting for it in sigwait, else main (programs expect process
// signals there), else any that does not block it.  sig 0: any thread.
Thread *threads_pick(int sig, std::atomic<Thread *> *owner) {
    list_lock_take();
    Thread *pick = nullptr, *was = owner ? owner->load(std::memory_order_seq_cst) : nullptr, *keep = nullptr;
    bool waiter = false;
    for (Thread *t = list_head; t; t = t->next) {
        if (sig == 0 || (t->sigwaiting.load() & (uint64_t(1) << (sig - 1)))) {
            pick = t;
            waiter = true;
            break;
        }
        if (!sigismember(&t->sigmask, sig) && (!pick || t->is_main)) pick = t;
        if (t == was && !sigismember(&t->sigmask, sig)) keep = t;
    }
    // The one named already, woken and poked, keeps it while it still may
    // take it: named again and again (a timer's signal, sent while one is
    // pending) it would move, and a poke already on its way would end the
    // first one's call with EINTR and no handler to run.
    if (owner) {
        if (keep && !waiter) pick = keep;
        owner->store(pick, std::memory_order_seq_cst);
    }
    list_lock.clear(std::memory_order_release);
    return pick;
}

bool thread_gone(pthread_t th) {
    void *tcb = reinterpret_cast<void *>(th);
    return tcb && tcb != main_tcb && !thread_of(th) && tcb_made_here(tcb);
}

Thread *thread_of(pthread_t th) {
    void *tcb = reinterpret_cast<void *>(th);
    if (!tcb) return nullptr;
    if (tcb == main_tcb) return main_rec.g ? &main_rec : nullptr;
    return tcb_record(tcb);
}

// The environment as the kernel gave it, read without the program's
// getenv(): init_once can run before the program's own initialisation
// (its malloc, called while a library loads, takes a lock here), and a
// program may define getenv() and secure_getenv() itself, in code not yet
// ready to run (Firefox's, called that early, jumps to 0).  AT_SECURE is
// looked at by the caller.
static const char *own_getenv(const char *name) {
    size_t n = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return nullptr;
}

void init_once() {
    static std::atomic<int> state{0}; // 0 not yet, 1 deciding, 2 decided
    static std::atomic<pid_t> decider{0};
    int s = 0;
    if (!state.compare_exchange_strong(s, 1)) {
        // Called back from inside the decision (dlsym's malloc is the
        // program's own, a jemalloc that takes its locks): off meanwhile.
        // Another thread waits, without a call that would come back here.
        if (decider.load() == kernel_tid()) return;
        while (state.load() != 2) cpu_relax();
        return;
    }
    decider.store(kernel_tid());
    int decided = 0;
    const char *off = own_getenv("NP_SHIM");
    // The real functions first: stepping aside passes every call to them.
    if (!real_init()) {
        warn("libc lacks a function the shim needs");
    } else if (getauxval(AT_SECURE)) {
        decided = 0; // setuid/setgid: glibc ignores LD_PRELOAD's spirit too
    } else if (off && strcmp(off, "0") == 0) {
        decided = 0; // asked to step aside (to compare, or to rule the shim out)
    } else if (const char *who = foreign_runtime()) {
        warn(who);
    } else if (!tcb_init()) {
        warn("this glibc's thread layout is not one the shim knows");
    } else {
        npshim_tls_config(tcb_tid_offset, release_tcb);
        tcb_rtld_locks();
        // Raised by a thread's own call, these are that thread's: workers
        // take them (the default action, or the handler on that thread).
        uint64_t sync = 0;
        for (int s : {SIGPIPE, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS}) sync |= uint64_t(1) << (s - 1);
        sync |= pokes_install();
        npshim_worker_signals(sync);
        npshim_start_lazily();
        fork_handlers_install();
        decided = 1;
    }
    active = decided;
    if (decided) note_inherited_filter();
    decider.store(0);
    state.store(2);
}

void test_cancel(Thread *t) {
    if (t && t->cancel_pending.load(std::memory_order_acquire) && !t->cancel_disabled) {
        t->cancel_disabled = 1; // once
        t->result = PTHREAD_CANCELED;
#ifdef SHIM_ASAN
        // The unwind jumps over our frames, whose redzones would stay
        // poisoned under the cleanup handlers' (the compiler does this
        // before a noreturn call; through a pointer, this one is not).
        __asan_handle_no_return();
#endif
        real.pthread_exit(PTHREAD_CANCELED);
    }
}

} // namespace shim

using namespace shim;

extern "C" {

// Two threads alive at once never share an ID: libc++abi's guard for a
// function-local static keeps the ID of the thread initialising it, and a
// second thread that finds its own ID there aborts ("recursive
// initialization").  The worker's kernel ID would be every green thread's
// on that worker, so those other than main get their mutex owner id
// (above the kernel's PID_MAX_LIMIT: it names no other task).  main's is
// the process ID, as without the library, before and after it turns green
// (a program that keeps it to tell main apart, or to signal main).
pid_t gettid(void) {
    Thread *t = on() ? cur : nullptr;
    if (t) return t->is_main ? getpid() : pid_t(owner_id());
    return kernel_tid();
}

int __libc_start_main(int (*main)(int, char **, char **), int argc, char **argv, void (*init)(void),
                      void (*fini)(void), void (*rtld_fini)(void), void *stack_end) {
    init_once();
    auto start = real.__libc_start_main;
    if (!start) {
        start = reinterpret_cast<decltype(start)>(dlsym(RTLD_NEXT, "__libc_start_main"));
        if (!start) abort();
    }
    program_main = main;
    return start(on() ? green_main : main, argc, argv, init, fini, rtld_fini, stack_end);
}

int pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
    // The engine's own OS thread, handed here by a sanitizer's interceptor.
    if (!on() || npshim_os_thread_starting()) return real.pthread_create(th, attr, fn, arg);
    size_t size = 0, guard = 4096;
    int detach = PTHREAD_CREATE_JOINABLE;
    char *given = nullptr; // the program's stack (pthread_attr_setstack): its low end
    if (attr) {
        // glibc keeps the stack's top, null when none was given, and
        // reports the low end as that top less the size.
        void *lo = nullptr;
        size_t sz = 0;
        if (pthread_attr_getstack(attr, &lo, &sz) == 0 && uintptr_t(lo) + sz != 0)
            given = static_cast<char *>(lo);
        pthread_attr_getstacksize(attr, &size);
        pthread_attr_getguardsize(attr, &guard);
        pthread_attr_getdetachstate(attr, &detach);
    }
    if (!size) size = default_stack();
    late_foreign_runtime(__builtin_return_address(0));
    if (!runtime_up()) return EAGAIN;
    if (!cur) adopt_main();
    Thread *t = tcb_new(nullptr, 0, 0);
    if (!t) return EAGAIN;
    npshim_thread *g;
    // The program's own stack is the thread's: a runtime that scans it
    // (SBCL's GC, between the stack pointer and the end it allocated) or
    // guards it finds the thread there.
    if (given ? npshim_thread_create_on(&g, green_entry, t, given, size) != 0
              : npshim_thread_create(&g, green_entry, t, stack_bucket(size)) != 0) {
        tcb_free(t->tcb);
        return EAGAIN;
    }
    t->g = g;
    t->fn = fn;
    t->arg = arg;
    t->guard_size = guard;
    // The stack as asked for: the top `size` bytes of the (rounded up) slot.
    void *lo;
    size_t have;
    npshim_thread_stack(g, &lo, &have);
    t->stack_size = size < have ? size : have;
    t->stack_lo = static_cast<char *>(lo) + (have - t->stack_size);
    tcb_set_stack(t->tcb, t->stack_lo, t->stack_size, guard);
    if (Thread *me = cur) {
        t->sigmask = me->sigmask; // inherited, as POSIX says
        t->has_affinity = me->has_affinity; // and its CPUs, as Linux's clone does
        t->affinity = me->affinity;
    } else pthread_sigmask(SIG_SETMASK, nullptr, &t->sigmask);
    npshim_thread_set_tls(g, t->tcb, 0);
    *th = reinterpret_cast<pthread_t>(t->tcb);
    live.fetch_add(1, std::memory_order_relaxed);
    threads_add(t);
    if (detach == PTHREAD_CREATE_DETACHED) {
        t->claim.store(2, std::memory_order_relaxed);
        t->detached = true;
        npshim_thread_detach(g);
    }
    npshim_thread_start(g);
    return 0;
}

// A joiner's claim, given back if the join is cancelled while it waits.
class JoinClaim {
  public:
    explicit JoinClaim(Thread *t) : t_(t) {}
    ~JoinClaim() {
        if (t_) t_->claim.store(0, std::memory_order_release);
    }
    void keep() { t_ = nullptr; }
    JoinClaim(const JoinClaim &) = delete;
    JoinClaim &operator=(const JoinClaim &) = delete;

  private:
    Thread *t_;
};

int pthread_join(pthread_t th, void **result) {
    if (!on()) return real.pthread_join(th, result);
    Thread *t = thread_of(th);
    if (!t) return thread_gone(th) ? EINVAL : real.pthread_join(th, result);
    if (t == cur) return EDEADLK;
    if (t->is_main) return EINVAL;
    test_cancel(cur);
    int was = 0;
    if (!t->claim.compare_exchange_strong(was, 1, std::memory_order_acq_rel)) return EINVAL; // detached, or joined
    JoinClaim claim(t);
    // Wait for its body to end where signals and cancellation reach the
    // joiner (a join is a cancellation point, and handlers run during it);
    // the engine's join then only waits for the last switch away.
    while (!t->ended.load(std::memory_order_acquire)) {
        join_wait(t->g, reinterpret_cast<const uint32_t *>(&t->ended));
        if (Thread *me = cur) {
            if (sig_pending(me)) sig_deliver(me);
            test_cancel(me);
        }
    }
    claim.keep();
    void *r = nullptr;
    if (int e = npshim_thread_join(t->g, &r)) return -e;
    if (result) *result = r;
    return 0;
}

int pthread_tryjoin_np(pthread_t th, void **result) {
    Thread *t = on() ? thread_of(th) : nullptr;
    if (!t) {
        if (on() && thread_gone(th)) return EINVAL;
        static auto fn = reinterpret_cast<int (*)(pthread_t, void **)>(dlsym(RTLD_NEXT, "pthread_tryjoin_np"));
        return fn(th, result);
    }
    if (t->claim.load(std::memory_order_acquire) != 0 || t->is_main) return EINVAL;
    if (!npshim_thread_done(t->g)) return EBUSY;
    return pthread_join(th, result);
}

// A timed join: the thread's end is polled, parking in between (a join
// cannot be undone once it waits).
static int join_until(pthread_t th, void **result, clockid_t clock, const struct timespec *abs) {
    Thread *t = thread_of(th);
    if (t->claim.load(std::memory_order_acquire) != 0 || t->is_main) return EINVAL;
    if (abs && (abs->tv_nsec < 0 || abs->tv_nsec >= 1000000000)) return EINVAL;
    int64_t deadline = abs ? deadline_from_abs(clock, abs) : 0;
    for (int64_t nap = 50'000; !npshim_thread_done(t->g); nap = nap < 10'000'000 ? nap * 2 : nap) {
        if (deadline && np_now() >= deadline) return ETIMEDOUT;
        int64_t until = np_now() + nap;
        if (Thread *me = cur) sleep_until(me, deadline && deadline < until ? deadline : until);
        else np_sleep(nap);
    }
    return pthread_join(th, result);
}

int pthread_timedjoin_np(pthread_t th, void **result, const struct timespec *abs) {
    if (on() && thread_gone(th)) return EINVAL;
    if (!on() || !thread_of(th)) {
        static auto fn = reinterpret_cast<int (*)(pthread_t, void **, const struct timespec *)>(
            dlsym(RTLD_NEXT, "pthread_timedjoin_np"));
        return fn(th, result, abs);
    }
    return join_until(th, result, CLOCK_REALTIME, abs);
}

int pthread_clockjoin_np(pthread_t th, void **result, clockid_t clock, const struct timespec *abs) {
    if (on() && thread_gone(th)) return EINVAL;
    if (!on() || !thread_of(th)) {
        static auto fn = reinterpret_cast<int (*)(pthread_t, void **, clockid_t, const struct timespec *)>(
            dlsym(RTLD_NEXT, "pthread_clockjoin_np"));
        return fn(th, result, clock, abs);
    }
    if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC) return EINVAL;
    return join_until(th, result, clock, abs);
}

int pthread_detach(pthread_t th) {
    if (!on()) return real.pthread_detach(th);
    Thread *t = thread_of(th);
    if (!t) return thread_gone(th) ? EINVAL : real.pthread_detach(th);
    if (t->is_main) return EINVAL;
    int was = 0;
    // A joiner already waits (stunnel's threads detach themselves while
    // its main joins them): it stays joinable, as glibc leaves it.
    if (!t->claim.compare_exchange_strong(was, 2, std::memory_order_acq_rel)) return was == 2 ? EINVAL : 0;
    t->detached = true;
    npshim_thread_detach(t->g);
    return 0;
}

void pthread_exit(void *value) {
    if (Thread *t = on() ? cur : nullptr) t->result = value;
    // glibc's own: sets its result, then unwinds (running cleanup handlers
    // and destructors) to the buffer our thread entry set up.
    real.pthread_exit(value);
    __builtin_unreachable();
}

int pthread_getattr_np(pthread_t th, pthread_attr_t *attr) {
    Thread *t = on() ? thread_of(th) : nullptr;
    if (!t) return on() && thread_gone(th) ? ESRCH : real.pthread_getattr_np(th, attr);
    pthread_attr_init(attr);
    pthread_attr_setstack(attr, t->stack_lo, t->stack_size);
    pthread_attr_setguardsize(attr, t->guard_size);
    pthread_attr_setdetachstate(attr, t->detached ? PTHREAD_CREATE_DETACHED : PTHREAD_CREATE_JOINABLE);
    return 0;
}

int pthread_setname_np(pthread_t th, const char *name) {
    Thread *t = on() ? thread_of(th) : nullptr;
    if (!t) return on() && thread_gone(th) ? ESRCH : real.pthread_setname_np(th, name);
    if (strlen(name) >= sizeof t->name) return ERANGE;
    strcpy(t->name, name); // the worker's own name stays
    if (t->g) npshim_thread_set_name(t->g, name); // for np_dump
    return 0;
}

int pthread_getname_np(pthread_t th, char *buf, size_t len) {
    Thread *t = on() ? thread_of(th) : nullptr;
    if (!t) return on() && thread_gone(th) ? ESRCH : real.pthread_getname_np(th, buf, len);
    if (len <= strlen(t->name)) return ERANGE;
    strcpy(buf, t->name);
    return 0;
}

// A green thread's CPU affinity is its own, as an OS thread's is: kept in
// its record (Thread::affinity), never set on its worker, which runs other
// threads too.  It reads back what it set; one never set reads as the
// worker's, which is the process's.  The children it forks or spawns get
// it (process.cpp).
static int own_affinity_set(Thread *t, size_t size, const cpu_set_t *set) {
    cpu_set_t want, allowed;
    if (size > sizeof want) { // wider than glibc's set: no room to keep it
        for (size_t i = sizeof want; i < size; i++)
            if (reinterpret_cast<const unsigned char *>(set)[i]) return EINVAL;
        size = sizeof want;
    }
    CPU_ZERO(&want);
    memcpy(&want, set, size);
    if (real.sched_getaffinity(0, sizeof allowed, &allowed) != 0) return errno;
    CPU_AND(&allowed, &allowed, &want);
    if (CPU_COUNT(&allowed) == 0) return EINVAL; // as the kernel: none it may run on
    t->affinity = want;
    t->has_affinity = true;
    return 0;
}

static int own_affinity_get(Thread *t, size_t size, cpu_set_t *set) {
    // The worker's first, for its checks of size (EINVAL) and its zeroing.
    if (real.sched_getaffinity(0, size, set) != 0) return errno;
    if (t->has_affinity) {
        memset(set, 0, size);
        memcpy(set, &t->affinity, size < sizeof t->affinity ? size : sizeof t->affinity);
    }
    return 0;
}

int pthread_setaffinity_np(pthread_t th, size_t size, const cpu_set_t *set) {
    Thread *t = on() ? thread_of(th) : nullptr;
    if (!t) return on() && thread_gone(th) ? ESRCH : real.pthread_setaffinity_np(th, size, set);
    return own_affinity_set(t, size, set);
}

int pthread_getaffinity_np(pthread_t th, size_t size, cpu_set_t *set) {
    Thread *t = on() ? thread_of(th) : nullptr;
    if (!t) return on() && thread_gone(th) ? ESRCH : real.pthread_getaffinity_np(th, size, set);
    return own_affinity_get(t, size, set);
}

// The same asked of the calling thread by its ID (0, or what gettid() gave).
int sched_setaffinity(pid_t pid, size_t size, const cpu_set_t *set) {
    Thread *t = on() && (pid == 0 || pid == own_gettid()) ? self() : nullptr;
    if (!t) return real.sched_setaffinity(pid, size, set);
    int e = own_affinity_set(t, size, set);
    if (e) errno = e;
    return e ? -1 : 0;
}

int sched_getaffinity(pid_t pid, size_t size, cpu_set_t *set) {
    Thread *t = on() && (pid == 0 || pid == own_gettid()) ? self() : nullptr;
    if (!t) return real.sched_getaffinity(pid, size, set);
    int e = own_affinity_get(t, size, set);
    if (e) errno = e;
    return e ? -1 : 0;
}

int pthread_cancel(pthread_t th) {
    Thread *t = on() ? thread_of(th) : nullptr;
    if (!t) return on() && thread_gone(th) ? ESRCH : real.pthread_cancel(th);
    t->cancel_pending.store(1, std::memory_order_seq_cst);
    // Woken where it is parked, it sees the request at its cancellation point.
    if (!t->cancel_disabled) {
        interrupt(t);
        cancel_kernel_wait(t);
    }
    return 0;
}

int pthread_setcancelstate(int state, int *old) {
    if (!on()) {
        static auto fn = reinterpret_cast<int (*)(int, int *)>(dlsym(RTLD_NEXT, "pthread_setcancelstate"));
        return fn(state, old);
    }
    Thread *t = cur;
    if (state != PTHREAD_CANCEL_ENABLE && state != PTHREAD_CANCEL_DISABLE) return EINVAL;
    if (!t) {
        static __thread int os_state;
        if (old) *old = os_state;
        os_state = state;
        return 0;
    }
    if (old) *old = t->cancel_disabled ? PTHREAD_CANCEL_DISABLE : PTHREAD_CANCEL_ENABLE;
    t->cancel_disabled = state == PTHREAD_CANCEL_DISABLE;
    return 0;
}

int pthread_setcanceltype(int type, int *old) {
    if (!on()) {
        static auto fn = reinterpret_cast<int (*)(int, int *)>(dlsym(RTLD_NEXT, "pthread_setcanceltype"));
        return fn(type, old);
    }
    Thread *t = cur;
    if (type != PTHREAD_CANCEL_DEFERRED && type != PTHREAD_CANCEL_ASYNCHRONOUS) return EINVAL;
    if (old) *old = t && t->cancel_async ? PTHREAD_CANCEL_ASYNCHRONOUS : PTHREAD_CANCEL_DEFERRED;
    if (t) t->cancel_async = type == PTHREAD_CANCEL_ASYNCHRONOUS; // at any wait, not in a computation
    return 0;
}

void pthread_testcancel(void) {
    if (!on()) {
        static auto fn = reinterpret_cast<void (*)()>(dlsym(RTLD_NEXT, "pthread_testcancel"));
        return fn();
    }
    test_cancel(cur);
}

// The worker's other green threads first, then the OS's turn, as the
// program asked: a thread that spins on a flag another OS thread sets (an
// OpenBLAS worker) must let that one run.  A handler waiting for the
// thread runs here too.
int sched_yield(void) {
    if (green()) {
        np_yield();
        if (Thread *t = cur; t && sig_pending(t)) sig_deliver(t);
    }
    real.syscall(SYS_sched_yield, 0, 0, 0, 0, 0, 0);
    return 0;
}

} // extern "C"

// See shim.hpp: the library's own calls come here, not to the program's.
namespace shim {
pid_t own_gettid() __attribute__((alias("gettid")));
} // namespace shim
