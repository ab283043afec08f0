// Start-up: the runtime built once (np_init, or the first call that needs
// it), its workers and sysmon started; the workers sysmon adds later; and
// a forked child's fresh start.
#include "runtime.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "futex.hpp"
#include "libc_real.hpp"
#include "mutex.hpp"
#include "port.hpp"
#include "thread_pointer.hpp"

namespace np {

static Mutex start_mu;
static Config started_cfg;
static bool lazy; // npshim_start_lazily: kept across a fork

// A worker started: back once it has set up (Worker::set_up).
static void wait_set_up(Worker *w) {
    while (!w->set_up.load(std::memory_order_acquire)) futex_wait(&w->set_up, 0);
}

bool add_worker() {
    int n = rt->nworkers.load(std::memory_order_acquire);
    if (n >= rt->max_workers) return false;
    Worker *w = make<Worker>();
    if (!w) return false;
    w->id = n;
    w->timers.h.reserve(256);
    if (port_create(&w->port, rt->cfg.poller) != 0) {
        destroy(w);
        return false;
    }
    rt->workers[n] = w;
    rt->nworkers.store(n + 1, std::memory_order_release); // seen whole by readers
    if (start_os_thread(worker_main, w, &w->thread) != 0) {
        rt->nworkers.store(n, std::memory_order_release);
        delete w->port;
        destroy(w);
        return false;
    }
    return true;
}

// A forked child has one thread and none of the workers: the runtime it
// copied is left behind (its memory, its descriptors), and the next use
// starts a fresh one.  Locks another thread held at the fork are reset.
void runtime_after_fork() {
    dump_after_fork();
    tls_worker = nullptr;
    rt = nullptr;
    new (&start_mu) Mutex();
    sized_pools_after_fork();
    pd_cache_after_fork();
    blocking_after_fork();
    outer_after_fork();
    fd_claims_forget();
}

void runtime_start_lazily() { lazy = true; }

// A process under the shim that never makes a second thread (most commands
// a shell runs) pays for one worker: the others and sysmon start with the
// second thread, before it can be run (create()).  Until then one thread
// is all there is to run, so nothing waits for a worker or for sysmon.
void start_rest() {
    if (!rt->rest_pending.exchange(false, std::memory_order_acq_rel)) return;
    std::lock_guard<Mutex> lk(start_mu);
    while (rt->nworkers.load(std::memory_order_relaxed) < rt->cfg.procs) {
        int n = rt->nworkers.load(std::memory_order_relaxed);
        if (!add_worker()) {
            say("netpoll: cannot start worker %d\n", n);
            break;
        }
    }
    // Before the program's second thread runs.  Not in add_worker: one
    // sysmon adds later starts beside the running program anyway, and
    // sysmon would only stand still meanwhile.
    for (int i = 0, n = rt->nworkers.load(std::memory_order_relaxed); i < n; i++) wait_set_up(rt->workers[i]);
    sysmon_start();
}

int runtime_start(const np_config *cfg) {
    Config c;
    if (int e = config_resolve(cfg, &c)) return e;
    std::lock_guard<Mutex> lk(start_mu);
    if (rt) {
        if (!cfg) return 0;
        bool same = c.procs == started_cfg.procs && c.stack_size == started_cfg.stack_size &&
                    c.poller == rt->cfg.poller && c.embedded == started_cfg.embedded;
        return same ? 0 : -EBUSY;
    }
    debug_init();
    Runtime *r = make<Runtime>();
    if (!r) return -ENOMEM;
    r->cfg = c;
    r->stacks.init(c.stack_size);
    if (c.embedded) {
        r->host = make<Worker>();
        r->host->embedded = true;
    } else {
        r->nworkers = lazy ? 1 : c.procs;
        r->max_workers = c.procs + Runtime::kMaxExtra;
        r->workers = static_cast<Worker **>(mem_zalloc(sizeof(Worker *) * size_t(r->max_workers)));
        for (int i = 0; i < r->nworkers; i++) {
            r->workers[i] = make<Worker>();
            r->workers[i]->id = i;
            r->workers[i]->timers.h.reserve(256); // no growth for common loads
        }
    }
    if (int e = ports_create(r, c)) {
        for (int i = 0; i < r->nworkers; i++) destroy(r->workers[i]);
        mem_free(r->workers);
        if (r->host) destroy(r->host);
        destroy(r);
        return e;
    }
    c.poller = r->cfg.poller; // as it fell back
    started_cfg = c;
    if (c.embedded) {
        __atomic_store_n(&rt, r, __ATOMIC_RELEASE);
        if (c.dump_signal) dump_signal_install(c.dump_signal);
        return 0;
    }
    stack_guard_install();
    sysmon_register_fence();
    __atomic_store_n(&starter_off, long(reinterpret_cast<char *>(&tls_worker) - static_cast<char *>(tp_get())),
                     __ATOMIC_RELAXED);
    __atomic_store_n(&rt, r, __ATOMIC_RELEASE);
    for (int i = 0, n = r->nworkers; i < n; i++) {
        if (int pe = start_os_thread(worker_main, r->workers[i], &r->workers[i]->thread)) {
            say("netpoll: cannot start worker %d: %s\n", i, strerror(pe));
            if (i == 0) abort();
            r->nworkers = i;
            break;
        }
    }
    for (int i = 0; i < r->nworkers; i++) wait_set_up(r->workers[i]);
    if (lazy) r->rest_pending.store(true, std::memory_order_release);
    else sysmon_start();
    if (c.dump_signal) dump_signal_install(c.dump_signal);
    return 0;
}

} // namespace np
