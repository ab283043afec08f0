/* netpoll.h as a program sees it: included first (self-contained), twice
 * (guarded), compiled as C11 and as C++11/C++20 with warnings as errors by
 * t/header-check.sh.  Written in the subset of C and C++ both accept. */
#include <netpoll.h>
#include <netpoll.h>

#include <string.h>

static char token; /* an argument: no NULL, which C++ warns about here */

static void spawned(void *arg) { (void)arg; }
static void *joinable(void *arg) { return arg; }

static int body(void *arg) {
    np_thread *t;
    void *res = &token;
    np_mutex m = NP_MUTEX_INITIALIZER;
    np_cond c = NP_COND_INITIALIZER;
    (void)arg;
    if (np_go(spawned, &token) < 0 || np_spawn(&t, joinable, &m) < 0) return 1;
    if (np_join(t, &res) < 0 || res != &m) return 2;
    np_mutex_lock(&m);
    np_cond_signal(&c);
    np_mutex_unlock(&m);
    return np_sleep(1000) < 0 ? 3 : 0;
}

int main(int argc, char **argv) {
    np_config cfg;
    np_stats st;
    np_fd *pd;
    int (*open_fn)(int, np_fd **) = np_open;
    ssize_t (*read_fn)(np_fd *, void *, size_t) = np_read;
    int rc;
    (void)argv;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.procs = 1;
    cfg.flags = 0;
    if (argc > 1) /* linked, not run */
        return open_fn(-1, &pd) < 0 || read_fn(pd, &token, 1) < 0;
    if (np_init(&cfg) < 0) return 10;
    rc = np_main(body, &token);
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    if (np_stats_get(&st) < 0 || st.spawned < 2) return 11;
    return rc + (NP_READ | NP_WRITE) - 3 + (np_now() > 0 ? 0 : 20) + NETPOLL_VERSION_MAJOR - 1;
}
