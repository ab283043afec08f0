// np_dump: Go's goroutine dump (what SIGQUIT prints) for green threads.
// Each live thread with its id, name, state, how long it has been in it and
// its stack; each worker with what it runs and what waits for it.
//
// The registry (scheduler.cpp) is walked a batch at a time: under a list's
// lock the batch is copied out -- state, and the raw return addresses of a
// stack walked along its saved frame-pointer chain -- then the lock is
// dropped, and the copy is symbolised (dladdr, then the module's own
// symbol table) and written.  A cursor link
// keeps the place in the list meanwhile, so threads may come and go.  The
// lock keeps a listed thread's stack from being released, so every read of
// it is of mapped memory; a thread running on another worker is not walked
// (its stack changes under us), and every frame pointer is checked to lie
// in its stack, above the last one, before it is read.  A parked thread
// that starts to run during the walk can at worst give a wrong frame.
//
// NP_DUMP_SIGNAL: the handler only counts the request and wakes a thread
// of ours with a futex (a system call, async-signal-safe); that thread
// takes the dump, so nothing in a signal handler allocates, locks or
// touches stdio.  It writes to fd 2 directly, not through stderr's FILE,
// whose lock a deadlocked program may hold -- the very program one dumps.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.hpp"
#include "clock.hpp"
#include "errno_guard.hpp"
#include "futex.hpp"
#include "libc_real.hpp"
#include "mutex.hpp"
#include "netpoll.h"
#include "poll_desc.hpp"
#include "runtime.hpp"
#include "sys.hpp"

namespace np {

namespace {

constexpr int kMaxFrames = 32;
constexpr int kBatch = 32;

// One thread, as copied under its list's lock.
struct Snap {
    uint64_t id;
    char name[16];
    WaitKind why;
    int mode;
    int fd;              // I/O waits: the descriptor (-1 unknown)
    int64_t deadline;    // absolute; 0 none, <0 passed
    int64_t since;
    uintptr_t obj;
    int worker;          // running on it; -1 not running
    bool started, self, finished, legacy;
    void *entry;
    int nframes;
    uintptr_t pc[kMaxFrames];
};

// ---- output: formatted into a buffer, written to a FILE or an fd --------

struct Out {
    FILE *f = nullptr;
    int fd = -1;
    bool failed = false;
    size_t n = 0;
    char buf[4096];

    void flush() {
        if (f) {
            if (n && real_fwrite(buf, 1, n, f) != n) failed = true;
        } else {
            for (size_t off = 0; off < n;) {
                ssize_t r = sys_write(fd, buf + off, n - off);
                if (r < 0 && errno == EINTR) continue;
                if (r <= 0) {
                    failed = true;
                    break;
                }
                off += size_t(r);
            }
        }
        n = 0;
    }
    void put(const char *fmt, ...) __attribute__((format(printf, 2, 3))) {
        char line[512];
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        size_t len = size_t(k) < sizeof line ? size_t(k) : sizeof line - 1;
        if (n + len > sizeof buf) flush();
        memcpy(buf + n, line, len);
        n += len;
    }
};

// ---- the stack walk ---------------------------------------------------------

// The saved frame of np_ctx_switch (src/arch/): where the caller's frame
// pointer and the resume address sit above the saved sp.
#if defined(__x86_64__)
constexpr size_t kSavedFp = 0x30, kSavedPc = 0x38, kSavedFrame = 0x40;
#elif defined(__aarch64__)
constexpr size_t kSavedFp = 0x90, kSavedPc = 0x98, kSavedFrame = 0xb0;
#endif

// Follows the frame-pointer chain from fp (x86-64 and AArch64 frame
// records alike: [fp] the caller's fp, [fp+8] the return address) within
// [lo, hi).  Not instrumented: it reads another thread's stack, by design.
__attribute__((no_sanitize("address", "thread"))) int walk_frames(uintptr_t fp, uintptr_t lo, uintptr_t hi,
                                                                   uintptr_t *pc, int n, int max) {
    while (n < max) {
        if (fp < lo || fp + 16 > hi || (fp & 7)) break;
        const uintptr_t *rec = reinterpret_cast<const uintptr_t *>(fp);
        uintptr_t next = rec[0], ret = rec[1];
        if (!ret) break;
        pc[n++] = ret;
        if (next <= fp) break; // the chain goes up the stack, or it ends
        fp = next;
    }
    return n;
}

// The top of g's frames: below its record, which lies at the top of its
// stack, or the stack's top for one whose record is elsewhere (the
// program's main thread, adopted on its own stack).
uintptr_t frames_top(const GThread *g) {
    uintptr_t at = uintptr_t(g);
    return at > uintptr_t(g->stack.lo) && at < uintptr_t(g->stack.hi) ? at : uintptr_t(g->stack.hi);
}

__attribute__((no_sanitize("address", "thread"))) int walk_parked(const GThread *g, uintptr_t *pc) {
    uintptr_t lo = uintptr_t(g->stack.lo), hi = frames_top(g);
    uintptr_t sp = uintptr_t(__atomic_load_n(&g->sp, __ATOMIC_RELAXED));
    if (sp < lo || sp + kSavedFrame > hi || (sp & 7)) return 0;
    const char *frame = reinterpret_cast<const char *>(sp);
    uintptr_t fp = *reinterpret_cast<const uintptr_t *>(frame + kSavedFp);
    uintptr_t ret = *reinterpret_cast<const uintptr_t *>(frame + kSavedPc);
    pc[0] = ret;
    return walk_frames(fp, sp, hi, pc, 1, kMaxFrames);
}

// ---- taking the snapshot -------------------------------------------------

struct Ctx {
    Out *out;
    GThread *self;          // np_dump's caller, if a green thread
    uintptr_t self_fp;      // its frame, taken on its own stack
    int64_t now;
    Snap *batch;
    struct Symbols *syms;
    uint64_t threads = 0;
};

int running_on(const GThread *g) {
    for (int i = 0; i < rt->nworkers.load(std::memory_order_acquire); i++)
        if (rt->workers[i]->running() == g) return rt->workers[i]->id;
    if (rt->host && rt->host->running() == g) return 0;
    return -1;
}

// Every FdMutex is a PollDesc's (fd_lock and close waits name one).
const PollDesc *pd_of_fdmu(const void *m) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
    return reinterpret_cast<const PollDesc *>(static_cast<const char *>(m) - offsetof(PollDesc, fdmu));
#pragma GCC diagnostic pop
}

// Racy reads of a live thread: not instrumented (see the top).
__attribute__((no_sanitize("address", "thread"))) void snap(const Ctx &c, GThread *g, Snap *s) {
    s->id = g->id;
    memcpy(s->name, g->name, sizeof s->name);
    s->name[sizeof s->name - 1] = 0;
    s->why = g->why.load(std::memory_order_relaxed);
    s->mode = g->wait_mode;
    s->obj = uintptr_t(g->wait_obj);
    s->since = g->wait_since;
    s->deadline = g->wait_deadline;
    s->fd = -1;
    s->started = g->started;
    s->finished = g->joinable && g->join_state.load(std::memory_order_relaxed) == 2;
    s->legacy = g->tls != nullptr;
    s->self = g == c.self;
    s->entry = g->fn ? reinterpret_cast<void *>(g->fn) : reinterpret_cast<void *>(g->fn_ret);
    s->worker = s->self ? -1 : running_on(g);
    s->nframes = 0;
    // Descriptors are never freed (poll_desc.hpp): reading one is safe.
    if (s->why == WaitKind::io && s->obj) {
        const PollDesc *pd = reinterpret_cast<const PollDesc *>(s->obj);
        s->fd = pd->fd;
        s->deadline = s->mode == NP_READ ? pd->rd : pd->wd;
    } else if ((s->why == WaitKind::fd_lock || s->why == WaitKind::close) && s->obj) {
        s->fd = pd_of_fdmu(reinterpret_cast<const void *>(s->obj))->fd;
    }
    if (s->self) {
        s->nframes = walk_frames(c.self_fp, uintptr_t(g->stack.lo), frames_top(g), s->pc, 0, kMaxFrames);
    } else if (s->worker < 0 && g->started && !s->finished) {
        s->nframes = walk_parked(g, s->pc);
    }
}

// ---- writing it ----------------------------------------------------------

void put_secs(Out &o, const char *what, int64_t ns) {
    o.put("%s%lld.%03lld s", what, (long long)(ns / 1000000000), (long long)(ns % 1000000000 / 1000000));
}

void put_deadline(Out &o, int64_t deadline, int64_t now) {
    if (deadline == 0 || deadline == INT64_MAX) return;
    if (deadline < 0 || deadline <= now) {
        o.put(", deadline passed");
        return;
    }
    put_secs(o, ", deadline in ", deadline - now);
}

// ---- symbols ---------------------------------------------------------------

// dladdr knows only a module's exported symbols.  Its .symtab, which is not
// loaded but is in the file unless stripped, names the rest: the runtime's
// own functions, static functions, a program's linked without -rdynamic.
// Read from the file once per module per dump, every offset checked
// against the file's size.
struct Sym {
    uintptr_t lo, hi;  // link-time addresses
    uint32_t name;     // in strtab
};

struct SymTab {
    const link_map *lm = nullptr;
    void *map = nullptr;
    size_t map_len = 0;
    const char *strtab = nullptr;
    size_t strtab_len = 0;
    Sym *syms = nullptr;
    size_t n = 0;
};

struct Symbols {
    static constexpr int kMax = 32;
    SymTab mods[kMax];
    int n = 0;
    ~Symbols() {
        for (int i = 0; i < n; i++) {
            if (mods[i].map) munmap(mods[i].map, mods[i].map_len);
            mem_free(mods[i].syms);
        }
    }
};

bool in_file(size_t off, size_t len, size_t size) { return off <= size && len <= size - off; }

void load_symtab(SymTab &t) {
    // The main program's l_name is empty: its file is /proc/self/exe.
    const char *path = t.lm->l_name && *t.lm->l_name ? t.lm->l_name : "/proc/self/exe";
    int fd = sys_open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    bool ok = fstat(fd, &st) == 0 && st.st_size >= off_t(sizeof(Elf64_Ehdr));
    void *m = ok ? mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    sys_close(fd);
    if (m == MAP_FAILED) return;
    t.map = m;
    t.map_len = size_t(st.st_size);
    const char *f = static_cast<const char *>(m);
    const auto *eh = reinterpret_cast<const Elf64_Ehdr *>(f);
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_shentsize != sizeof(Elf64_Shdr) ||
        !in_file(eh->e_shoff, size_t(eh->e_shnum) * sizeof(Elf64_Shdr), t.map_len))
        return;
    const auto *sh = reinterpret_cast<const Elf64_Shdr *>(f + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
        const Elf64_Shdr &ss = sh[i], &str = sh[ss.sh_link];
        if (!in_file(ss.sh_offset, ss.sh_size, t.map_len) || !in_file(str.sh_offset, str.sh_size, t.map_len))
            return;
        const auto *sym = reinterpret_cast<const Elf64_Sym *>(f + ss.sh_offset);
        size_t count = ss.sh_size / sizeof(Elf64_Sym), n = 0;
        t.syms = static_cast<Sym *>(mem_alloc(sizeof(Sym) * (count ? count : 1)));
        if (!t.syms) return;
        for (size_t k = 0; k < count; k++) {
            if (ELF64_ST_TYPE(sym[k].st_info) != STT_FUNC || sym[k].st_shndx == SHN_UNDEF || !sym[k].st_size ||
                sym[k].st_name >= str.sh_size)
                continue;
            t.syms[n++] = Sym{sym[k].st_value, sym[k].st_value + sym[k].st_size, sym[k].st_name};
        }
        std::sort(t.syms, t.syms + n, [](const Sym &a, const Sym &b) { return a.lo < b.lo; });
        t.strtab = f + str.sh_offset;
        t.strtab_len = str.sh_size;
        t.n = n;
        return;
    }
}

// The function of the .symtab around link-time address at, and its start.
const char *symtab_name(Symbols &ss, const link_map *lm, uintptr_t at, uintptr_t *start) {
    SymTab *t = nullptr;
    for (int i = 0; i < ss.n && !t; i++)
        if (ss.mods[i].lm == lm) t = &ss.mods[i];
    if (!t) {
        if (ss.n == Symbols::kMax) return nullptr;
        t = &ss.mods[ss.n++];
        t->lm = lm;
        load_symtab(*t);
    }
    size_t lo = 0, hi = t->n; // the last symbol starting at or below at
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->syms[mid].lo <= at) lo = mid + 1;
        else hi = mid;
    }
    if (!lo || at >= t->syms[lo - 1].hi) return nullptr;
    const char *name = t->strtab + t->syms[lo - 1].name;
    if (!memchr(name, 0, t->strtab_len - t->syms[lo - 1].name)) return nullptr;
    *start = t->syms[lo - 1].lo;
    return name;
}

// Where pc lies: its module, and a function and pc's offset in it if one
// is known (name: demangled, to be freed with free(); or null).
struct Where {
    const char *mod = nullptr;
    uintptr_t mod_off = 0;
    char *name = nullptr;
    uintptr_t fn_off = 0;
};

Where locate(Symbols &ss, uintptr_t pc, uintptr_t lookup) {
    Where w;
    Dl_info info;
    link_map *lm = nullptr;
    if (!dladdr1(reinterpret_cast<void *>(lookup), &info, reinterpret_cast<void **>(&lm), RTLD_DL_LINKMAP) ||
        !info.dli_fname)
        return w;
    const char *mod = strrchr(info.dli_fname, '/');
    w.mod = mod ? mod + 1 : info.dli_fname;
    if (!*w.mod) w.mod = "main program";
    w.mod_off = pc - uintptr_t(info.dli_fbase);
    const char *name = nullptr;
    uintptr_t start = 0;
    if (info.dli_sname && info.dli_saddr) {
        name = info.dli_sname;
        start = uintptr_t(info.dli_saddr);
    } else if (lm && (name = symtab_name(ss, lm, lookup - lm->l_addr, &start))) {
        start += lm->l_addr;
    }
    if (!name) return w;
    int st = -1;
    w.name = name[0] == '_' && name[1] == 'Z' ? abi::__cxa_demangle(name, nullptr, nullptr, &st) : nullptr;
    if (!w.name) w.name = strdup(name);
    w.fn_off = pc - start;
    return w;
}

// A frame's return address as "name+0x1f (module)", or "module+0x1234"
// when nothing names it (addr2line -e module 0x1234 may).
void put_pc(Out &o, Symbols &ss, uintptr_t pc) {
    // A return address may be one past the call's function (a noreturn
    // call at its end): look up the call itself.
    Where w = locate(ss, pc, pc - 1);
    if (!w.mod) o.put("    %#lx ?\n", (unsigned long)pc);
    else if (w.name) o.put("    %#lx %s+%#lx (%s)\n", (unsigned long)pc, w.name, (unsigned long)w.fn_off, w.mod);
    else o.put("    %#lx %s+%#lx\n", (unsigned long)pc, w.mod, (unsigned long)w.mod_off);
    free(w.name);
}

// The function the thread was started with.
void put_entry(Out &o, Symbols &ss, const void *fn) {
    Where w = locate(ss, uintptr_t(fn), uintptr_t(fn));
    if (!w.mod) o.put("  entry %p\n", fn);
    else if (w.name && !w.fn_off) o.put("  entry %s (%s)\n", w.name, w.mod);
    else o.put("  entry %s+%#lx\n", w.mod, (unsigned long)w.mod_off);
    free(w.name);
}

void put_state(Out &o, const Snap &s, int64_t now) {
    const char *dir = s.mode == NP_WRITE ? "write" : "read";
    if (s.self) {
        o.put("running (it called np_dump)");
        return;
    }
    if (s.worker >= 0) {
        o.put("running on worker %d", s.worker);
        return;
    }
    if (s.finished) {
        o.put("finished, not joined yet");
        return;
    }
    bool timed = true;
    switch (s.why) {
    case WaitKind::runnable:
        o.put(s.started ? "runnable" : "runnable, not started");
        timed = false;
        break;
    case WaitKind::io:
        o.put("IO wait fd %d %s", s.fd, dir);
        put_deadline(o, s.deadline, now);
        break;
    case WaitKind::sleep:
        o.put("sleep");
        put_deadline(o, s.deadline, now);
        break;
    case WaitKind::mutex: o.put("mutex %#lx", (unsigned long)s.obj); break;
    case WaitKind::cond:
        o.put("cond %#lx", (unsigned long)s.obj);
        put_deadline(o, s.deadline, now);
        break;
    case WaitKind::join: o.put("join thread %llu", (unsigned long long)s.obj); break;
    case WaitKind::futex:
        o.put("futex %#lx", (unsigned long)s.obj);
        put_deadline(o, s.deadline, now);
        break;
    case WaitKind::fd_lock: o.put("fd lock fd %d %s", s.fd, dir); break;
    case WaitKind::close: o.put("close fd %d, waiting for its operations", s.fd); break;
    case WaitKind::syscall: o.put("blocking call on a helper thread"); break;
    case WaitKind::park: o.put("parked"); break;
    }
    if (timed && s.since > 0 && now > s.since) put_secs(o, ", for ", now - s.since);
}

void put_thread(Out &o, Symbols &ss, const Snap &s, int64_t now) {
    o.put("\nthread %llu", (unsigned long long)s.id);
    if (s.name[0]) o.put(" \"%s\"", s.name);
    if (s.legacy) o.put(" (pthread)");
    o.put(" [");
    put_state(o, s, now);
    o.put("]:\n");
    for (int i = 0; i < s.nframes; i++) put_pc(o, ss, s.pc[i]);
    if (s.worker >= 0) o.put("    (no stack: it runs on another OS thread)\n");
    if (s.entry) put_entry(o, ss, s.entry);
}

// The list a batch at a time, a cursor link keeping the place.
void dump_list(Ctx &c, ThreadList *l) {
    ThreadLink cursor;
    l->lock.lock();
    cursor.prev = &l->head;
    cursor.next = l->head.next;
    l->head.next->prev = &cursor;
    l->head.next = &cursor;
    for (;;) {
        int n = 0;
        ThreadLink *p = cursor.next;
        for (; p != &l->head && n < kBatch; p = p->next)
            if (p->g) snap(c, p->g, &c.batch[n++]);
        // Move the cursor before p (the next to take), or out at the end.
        cursor.prev->next = cursor.next;
        cursor.next->prev = cursor.prev;
        bool done = p == &l->head;
        if (!done) {
            cursor.next = p;
            cursor.prev = p->prev;
            p->prev->next = &cursor;
            p->prev = &cursor;
        }
        l->lock.unlock();
        for (int i = 0; i < n; i++) put_thread(*c.out, *c.syms, c.batch[i], c.now);
        c.threads += uint64_t(n);
        if (done) return;
        l->lock.lock();
    }
}

// The id of the thread a worker runs: it may end and be released as we
// look, but its stack stays mapped in the pool (never unmapped), so the
// read is safe; the value may be stale.
__attribute__((no_sanitize("address", "thread"))) uint64_t racy_id(const GThread *g) {
    return __atomic_load_n(&g->id, __ATOMIC_RELAXED);
}

// Threads not started yet wait in a run queue (they join the registry when
// they first run): the first batch of them, under the queue's lock, and
// how many more.
void dump_fresh(Ctx &c, RunQueue &q) {
    if (!q.nfresh.load(std::memory_order_relaxed)) return;
    int n = 0;
    size_t more = 0;
    q.lock.lock();
    for (GThread *g = q.head; g; g = g->next) {
        if (g->started) continue;
        if (n < kBatch) snap(c, g, &c.batch[n++]);
        else more++;
    }
    q.lock.unlock();
    for (int i = 0; i < n; i++) put_thread(*c.out, *c.syms, c.batch[i], c.now);
    if (more) c.out->put("\n... and %zu more threads not started\n", more);
    c.threads += uint64_t(n) + more;
}

void put_worker(Out &o, Worker *w, int64_t now) {
    o.put("worker %d", w->id);
    if (w->embedded) o.put(" (the host thread, embedded)");
    else o.put(" (tid %d)", int(__atomic_load_n(&w->tid, __ATOMIC_RELAXED)));
    GThread *cur = w->running();
    if (cur) o.put(": running thread %llu", (unsigned long long)racy_id(cur));
    else if (w->state.load(std::memory_order_relaxed) == kPolling) {
        o.put(": idle in its poller");
        int64_t until = w->sleep_until.load(std::memory_order_relaxed);
        if (until != INT64_MAX && until > now) put_secs(o, ", next timer in ", until - now);
    } else o.put(": scheduling");
    size_t inbox = w->q.len.load(std::memory_order_relaxed), local = w->local_n.load(std::memory_order_relaxed);
    o.put("; homed %d, runnable %zu (%zu local, %zu in its inbox, %zu not started)",
          w->homed.load(std::memory_order_relaxed), inbox + local, local, inbox,
          w->q.nfresh.load(std::memory_order_relaxed));
    if (w->dormant.load(std::memory_order_relaxed)) o.put("; dormant (beyond procs, no blocked call to cover)");
    if (w->blocked.load(std::memory_order_relaxed)) o.put("; blocked in a call (sysmon)");
    else if (w->stuck.load(std::memory_order_relaxed)) o.put("; stuck (sysmon)");
    o.put("\n");
}

struct DumpJob {
    Out *out;
    GThread *self;
    uintptr_t self_fp;
    int result;
};

Mutex dump_mu;

void dump_job(void *arg) {
    auto *j = static_cast<DumpJob *>(arg);
    Out &o = *j->out;
    std::lock_guard<Mutex> lk(dump_mu);
    Runtime *r = __atomic_load_n(&rt, __ATOMIC_ACQUIRE);
    if (!r) {
        o.put("netpoll: no green threads (the runtime has not started)\n");
        o.flush();
        j->result = o.failed ? -EIO : 0;
        return;
    }
    Ctx c;
    c.out = &o;
    c.self = j->self;
    c.self_fp = j->self_fp;
    c.now = now_ns();
    c.batch = static_cast<Snap *>(mem_alloc(sizeof(Snap) * kBatch));
    c.syms = make<Symbols>();
    if (!c.batch || !c.syms) {
        mem_free(c.batch);
        destroy(c.syms);
        j->result = -ENOMEM;
        return;
    }
    int nw = r->nworkers.load(std::memory_order_acquire);
    o.put("netpoll: %llu green threads, %d workers, pid %d\n",
          (unsigned long long)r->live.load(std::memory_order_relaxed), r->host ? 1 : nw, int(getpid()));
    for (int i = 0; i < nw; i++) put_worker(o, r->workers[i], c.now);
    if (r->host) put_worker(o, r->host, c.now);
    o.put("global queue: %zu runnable\n", r->global.len.load(std::memory_order_relaxed));
    for (int i = 0; i < nw; i++) dump_list(c, &r->workers[i]->threads);
    if (r->host) dump_list(c, &r->host->threads);
    for (int i = 0; i < nw; i++) dump_fresh(c, r->workers[i]->q);
    if (r->host) dump_fresh(c, r->host->q);
    dump_fresh(c, r->global);
    o.put("\nnetpoll: end of dump (%llu threads)\n", (unsigned long long)c.threads);
    o.flush();
    mem_free(c.batch);
    destroy(c.syms);
    j->result = o.failed ? -EIO : 0;
}

// ---- the signal -----------------------------------------------------------

std::atomic<uint32_t> requests{0};
// The requests the dump thread has taken: a thread (re)started counts from
// here, not from what requests holds when it first runs, so a signal that
// came between the handler's install and that moment (a program that
// raises it at once) is dumped, and so are those a forked child got before
// its own thread started.
std::atomic<uint32_t> taken{0};
int installed_sig = 0;
bool thread_started = false; // in this process (not in a forked child)
Mutex install_mu;

void on_dump_signal(int) {
    // Only atomics and a raw system call: async-signal-safe, errno kept.
    requests.fetch_add(1, std::memory_order_release);
    raw_syscall6(SYS_futex, long(&requests), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, 0, 0, 0);
}

void *dump_thread(void *) {
    uint32_t seen = taken.load(std::memory_order_relaxed);
    for (;;) {
        uint32_t now = requests.load(std::memory_order_acquire);
        if (now == seen) {
            futex_wait(&requests, seen);
            continue;
        }
        seen = now;
        taken.store(now, std::memory_order_relaxed);
        Out *o = static_cast<Out *>(mem_alloc(sizeof(Out)));
        if (!o) continue;
        new (o) Out();
        o->fd = 2;
        DumpJob j{o, nullptr, 0, 0};
        dump_job(&j);
        mem_free(o);
    }
    return nullptr;
}

} // namespace

int dump_to(int fd, FILE *f) {
    Out *o = static_cast<Out *>(mem_alloc(sizeof(Out)));
    if (!o) return -ENOMEM;
    new (o) Out();
    o->f = f;
    o->fd = fd;
    DumpJob j{o, current_g(), uintptr_t(__builtin_frame_address(0)), 0};
    // On the worker's own stack: a green thread's may be 2 KiB, and the
    // formatting and dladdr need more.  Nothing in it parks.
    on_os_stack(dump_job, &j);
    mem_free(o);
    return j.result;
}

void dump_signal_install(int sig) {
    std::lock_guard<Mutex> lk(install_mu);
    if (!thread_started) {
        if (int e = start_os_thread(dump_thread, nullptr)) {
            say("netpoll: NP_DUMP_SIGNAL: cannot start the dump thread: %s\n", strerror(e));
            return;
        }
        thread_started = true;
    }
    if (installed_sig == sig) return;
    // libc's own sigaction: a preload shim's would route the signal to a
    // program thread.  The program's own handler wins over the dump: it is
    // kept if there is one now, and replaces the dump if set later.
    struct sigaction cur;
    if (real_sigaction(sig, nullptr, &cur) != 0) return;
    bool has_handler = (cur.sa_flags & SA_SIGINFO) ? cur.sa_sigaction != nullptr
                                                   : cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN;
    if (has_handler) {
        say("netpoll: NP_DUMP_SIGNAL: the program handles signal %d (SIG%s) itself; no dump on it\n",
                sig, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
        return;
    }
    struct sigaction sa = {};
    sa.sa_handler = on_dump_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (real_sigaction(sig, &sa, nullptr) == 0) installed_sig = sig;
}

int dump_signal_current() {
    if (!installed_sig) return 0;
    struct sigaction cur;
    if (real_sigaction(installed_sig, nullptr, &cur) != 0) return 0;
    return !(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == on_dump_signal ? installed_sig : 0;
}

void dump_after_fork() {
    // The dump thread is the parent's; a dump under way there left its
    // locks taken.  The handler stays: requests wait for the next start.
    if (thread_started) thread_started = false; // (a page written here is copied)
    dump_mu.reset();
    install_mu.reset();
}

} // namespace np

extern "C" {

int np_dump(FILE *out) {
    np::ErrnoGuard eg;
    if (!out) return -EINVAL;
    return np::dump_to(-1, out);
}

} // extern "C"
