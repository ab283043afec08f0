/* The library as an FFI language uses it: loaded with dlopen, every
 * function of include/netpoll.h found with dlsym and called through
 * libffi (ffi_prep_cif + ffi_call) from its prototype alone, green
 * threads' entry points libffi closures (as ctypes and friends build
 * them).  Good calls, and bad arguments that must come back as a negative
 * errno.  The header is included for its types and constants only: the
 * program is not linked with the library.
 *
 * usage: ffi_dlopen LIB          the suite
 *        ffi_dlopen LIB --list   the functions it covers, "name nargs" a
 *                                line (t/ffi/ffi-check.sh compares them
 *                                with the library's exports and the header)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <ffi.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../../include/netpoll.h"

/* Argument and result kinds, as an FFI language spells the prototypes. */
enum { V, I, U, L, I64, SZ, P, U32 };

struct fn {
    const char *name;
    int ret, nargs, args[6];
    void *sym;
    ffi_cif cif;
    ffi_type *at[6];
    int calls;
};

static struct fn fns[] = {
    {"np_init", I, 1, {P}},
    {"np_main", I, 2, {P, P}},
    {"np_go", I, 2, {P, P}},
    {"np_go_stack", I, 3, {P, P, SZ}},
    {"np_spawn", I, 3, {P, P, P}},
    {"np_join", I, 2, {P, P}},
    {"np_yield", V, 0, {0}},
    {"np_sleep", I, 1, {I64}},
    {"np_now", I64, 0, {0}},
    {"np_in_green", I, 0, {0}},
    {"np_mutex_init", I, 1, {P}},
    {"np_mutex_destroy", I, 1, {P}},
    {"np_mutex_lock", I, 1, {P}},
    {"np_mutex_trylock", I, 1, {P}},
    {"np_mutex_unlock", I, 1, {P}},
    {"np_cond_init", I, 1, {P}},
    {"np_cond_destroy", I, 1, {P}},
    {"np_cond_wait", I, 2, {P, P}},
    {"np_cond_timedwait", I, 3, {P, P, I64}},
    {"np_cond_signal", I, 1, {P}},
    {"np_cond_broadcast", I, 1, {P}},
    {"np_open", I, 2, {I, P}},
    {"np_open_flags", I, 3, {I, U, P}},
    {"np_close", I, 1, {P}},
    {"np_wait_read", I, 1, {P}},
    {"np_wait_write", I, 1, {P}},
    {"np_set_deadline", I, 3, {P, I64, I}},
    {"np_fileno", I, 1, {P}},
    {"np_read", L, 3, {P, P, SZ}},
    {"np_write", L, 3, {P, P, SZ}},
    {"np_readv", L, 3, {P, P, I}},
    {"np_writev", L, 3, {P, P, I}},
    {"np_recvfrom", L, 6, {P, P, SZ, I, P, P}},
    {"np_sendto", L, 6, {P, P, SZ, I, P, U32}},
    {"np_recvmsg", L, 3, {P, P, I}},
    {"np_sendmsg", L, 3, {P, P, I}},
    {"np_accept", I, 4, {P, P, P, P}},
    {"np_connect", I, 3, {P, P, U32}},
    {"np_poll", I, 1, {I64}},
    {"np_poll_fd", I, 0, {0}},
    {"np_poll_timeout", I64, 0, {0}},
    {"np_poll_break", I, 0, {0}},
    {"np_stats_get", I, 1, {P}},
    {"np_dump", I, 1, {P}},
};
#define NFNS (sizeof fns / sizeof fns[0])

static ffi_type *ffi_of(int k) {
    switch (k) {
    case V: return &ffi_type_void;
    case I: return &ffi_type_sint;
    case U: return &ffi_type_uint;
    case L: return &ffi_type_slong; /* ssize_t */
    case I64: return &ffi_type_sint64;
    case SZ: return &ffi_type_ulong; /* size_t */
    case U32: return &ffi_type_uint32; /* socklen_t */
    default: return &ffi_type_pointer;
    }
}

static int fails, bad_calls;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("ffi: line %d: ", __LINE__);                                                    \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            __atomic_add_fetch(&fails, 1, __ATOMIC_RELAXED);                                       \
        }                                                                                          \
    } while (0)

/* call("np_read", pd, buf, (size_t)n): the C arguments in the prototype's
 * kinds (int, unsigned, long, int64_t, size_t, pointer, socklen_t);
 * the result widened to int64_t. */
static int64_t call(const char *name, ...) {
    struct fn *f = NULL;
    for (size_t i = 0; i < NFNS; i++)
        if (!strcmp(fns[i].name, name)) f = &fns[i];
    if (!f || !f->sym) {
        printf("ffi: %s: not resolved\n", name);
        abort();
    }
    __atomic_add_fetch(&f->calls, 1, __ATOMIC_RELAXED);
    union {
        int i;
        unsigned u;
        long l;
        int64_t i64;
        size_t sz;
        void *p;
        uint32_t u32;
    } v[6];
    void *av[6];
    va_list ap;
    va_start(ap, name);
    for (int i = 0; i < f->nargs; i++) {
        switch (f->args[i]) {
        case I: v[i].i = va_arg(ap, int); break;
        case U: v[i].u = va_arg(ap, unsigned); break;
        case L: v[i].l = va_arg(ap, long); break;
        case I64: v[i].i64 = va_arg(ap, int64_t); break;
        case SZ: v[i].sz = va_arg(ap, size_t); break;
        case U32: v[i].u32 = va_arg(ap, unsigned); break;
        default: v[i].p = va_arg(ap, void *); break;
        }
        av[i] = &v[i];
    }
    va_end(ap);
    union {
        ffi_sarg s;
        int64_t i64;
        long l;
    } r;
    memset(&r, 0, sizeof r);
    ffi_call(&f->cif, FFI_FN(f->sym), &r, av);
    switch (f->ret) {
    case V: return 0;
    case I: return (int)r.s; /* small results come widened to ffi_arg */
    case L: return r.l;
    default: return r.i64;
    }
}

/* A bad argument: a negative errno, exactly want when want != 0. */
#define BAD(want, ...)                                                                             \
    do {                                                                                           \
        int64_t r_ = call(__VA_ARGS__);                                                            \
        bad_calls++;                                                                               \
        CHECK(want ? r_ == -(want) : r_ < 0, "%s returned %lld, want %s%d", #__VA_ARGS__,          \
              (long long)r_, want ? "-" : "<0 ", want);                                            \
    } while (0)

/* ---- the closures: green threads' entry points ------------------------ */

enum { GO_COUNT, GO_SIGNAL };
struct go_arg {
    int kind;
    int count;
    np_mutex *m;
    np_cond *c;
    int flag;
};

/* void fn(void *arg) */
static void go_body(ffi_cif *cif, void *ret, void **args, void *user) {
    (void)cif, (void)ret, (void)user;
    struct go_arg *a = *(struct go_arg **)args[0];
    CHECK(call("np_in_green") == 1, "a closure's green thread is not green");
    if (a->kind == GO_COUNT) {
        __atomic_add_fetch(&a->count, 1, __ATOMIC_RELAXED);
        return;
    }
    call("np_sleep", (int64_t)1000000);
    CHECK(call("np_mutex_lock", a->m) == 0, "lock");
    a->flag = 1;
    CHECK(call("np_cond_signal", a->c) == 0, "signal");
    CHECK(call("np_mutex_unlock", a->m) == 0, "unlock");
}

/* void *fn(void *arg) */
static void spawn_body(ffi_cif *cif, void *ret, void **args, void *user) {
    (void)cif, (void)user;
    intptr_t v = (intptr_t) * (void **)args[0];
    *(void **)ret = (void *)(v * 2);
}

static void *go_code, *spawn_code;

static void threads(void) {
    CHECK(call("np_in_green") == 1, "np_in_green in np_main's thread");
    int64_t t0 = call("np_now");
    call("np_yield");
    CHECK(call("np_sleep", (int64_t)2000000) == 0, "np_sleep");
    CHECK(call("np_now") - t0 >= 2000000, "np_sleep came back early");

    struct go_arg cnt = {.kind = GO_COUNT};
    CHECK(call("np_go", go_code, &cnt) == 0, "np_go");
    CHECK(call("np_go_stack", go_code, &cnt, (size_t)16384) == 0, "np_go_stack");
    for (int i = 0; i < 5000 && __atomic_load_n(&cnt.count, __ATOMIC_RELAXED) < 2; i++)
        call("np_sleep", (int64_t)1000000);
    CHECK(cnt.count == 2, "closures run: %d of 2", cnt.count);
    BAD(EINVAL, "np_go", (void *)NULL, &cnt);
    BAD(EINVAL, "np_go_stack", go_code, &cnt, (size_t)1);
    BAD(EINVAL, "np_go_stack", (void *)NULL, &cnt, (size_t)16384);
    BAD(EINVAL, "np_main", (void *)NULL, (void *)NULL);

    np_thread *t = NULL;
    void *res = NULL;
    CHECK(call("np_spawn", &t, spawn_code, (void *)21) == 0, "np_spawn");
    CHECK(call("np_join", t, &res) == 0 && res == (void *)42, "np_join: %p", res);
    BAD(EINVAL, "np_spawn", (void *)NULL, spawn_code, (void *)1);
    BAD(EINVAL, "np_spawn", &t, (void *)NULL, (void *)1);
    BAD(EINVAL, "np_join", (void *)NULL, &res);
}

static void sync_calls(void) {
    np_mutex m;
    np_cond c;
    memset(&m, 0xa5, sizeof m);
    memset(&c, 0xa5, sizeof c);
    CHECK(call("np_mutex_init", &m) == 0, "np_mutex_init");
    CHECK(call("np_cond_init", &c) == 0, "np_cond_init");
    CHECK(call("np_mutex_lock", &m) == 0, "np_mutex_lock");
    BAD(EBUSY, "np_mutex_trylock", &m);
    BAD(EBUSY, "np_mutex_destroy", &m);
    CHECK(call("np_mutex_unlock", &m) == 0, "np_mutex_unlock");
    BAD(EPERM, "np_mutex_unlock", &m);
    CHECK(call("np_mutex_trylock", &m) == 0, "np_mutex_trylock");
    CHECK(call("np_cond_signal", &c) == 0 && call("np_cond_broadcast", &c) == 0, "no waiters");
    BAD(ETIMEDOUT, "np_cond_timedwait", &c, &m, call("np_now") + 1000000);
    struct go_arg sig = {.kind = GO_SIGNAL, .m = &m, .c = &c};
    CHECK(call("np_go", go_code, &sig) == 0, "np_go");
    while (!sig.flag)
        CHECK(call("np_cond_wait", &c, &m) == 0, "np_cond_wait");
    CHECK(call("np_mutex_unlock", &m) == 0, "np_mutex_unlock");
    BAD(EPERM, "np_cond_wait", &c, &m);
    BAD(EPERM, "np_cond_timedwait", &c, &m, call("np_now") + 1000000);
    CHECK(call("np_cond_destroy", &c) == 0, "np_cond_destroy");
    CHECK(call("np_mutex_destroy", &m) == 0, "np_mutex_destroy");
    const char *one[] = {"np_mutex_init", "np_mutex_destroy", "np_mutex_lock", "np_mutex_trylock",
                         "np_mutex_unlock", "np_cond_init", "np_cond_destroy", "np_cond_signal",
                         "np_cond_broadcast"};
    for (size_t i = 0; i < sizeof one / sizeof one[0]; i++) BAD(EINVAL, one[i], (void *)NULL);
    BAD(EINVAL, "np_cond_wait", (void *)NULL, &m);
    BAD(EINVAL, "np_cond_wait", &c, (void *)NULL);
    BAD(EINVAL, "np_cond_timedwait", (void *)NULL, &m, (int64_t)0);
}

static void io_calls(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    np_fd *a = NULL, *b = NULL, *nb = NULL, *x = NULL;
    CHECK(call("np_open", sv[0], &a) == 0 && call("np_open", sv[1], &b) == 0, "np_open");
    CHECK(call("np_fileno", a) == sv[0], "np_fileno");
    BAD(0, "np_open", -1, &x);
    BAD(EINVAL, "np_open", sv[0], (void *)NULL);
    BAD(EINVAL, "np_open_flags", sv[0], 0u, (void *)NULL);
    BAD(EINVAL, "np_fileno", (void *)NULL);

    char buf[64];
    CHECK(call("np_wait_write", a) == 0, "np_wait_write");
    CHECK(call("np_write", a, "hello", (size_t)5) == 5, "np_write");
    CHECK(call("np_wait_read", b) == 0, "np_wait_read");
    CHECK(call("np_read", b, buf, sizeof buf) == 5 && !memcmp(buf, "hello", 5), "np_read");

    struct iovec out[2] = {{"ab", 2}, {"cde", 3}}, in[2] = {{buf, 1}, {buf + 1, 10}};
    CHECK(call("np_writev", a, out, 2) == 5, "np_writev");
    CHECK(call("np_readv", b, in, 2) == 5 && !memcmp(buf, "abcde", 5), "np_readv");
    CHECK(call("np_sendto", a, "fgh", (size_t)3, 0, (void *)NULL, 0u) == 3, "np_sendto");
    CHECK(call("np_recvfrom", b, buf, sizeof buf, 0, (void *)NULL, (void *)NULL) == 3, "np_recvfrom");
    struct iovec mi = {"ijkl", 4}, mo = {buf, sizeof buf};
    struct msghdr msg = {.msg_iov = &mi, .msg_iovlen = 1}, rmsg = {.msg_iov = &mo, .msg_iovlen = 1};
    CHECK(call("np_sendmsg", a, &msg, 0) == 4, "np_sendmsg");
    CHECK(call("np_recvmsg", b, &rmsg, 0) == 4 && !memcmp(buf, "ijkl", 4), "np_recvmsg");

    /* A deadline passes; the descriptor stays usable. */
    CHECK(call("np_set_deadline", b, call("np_now") + 2000000, NP_READ) == 0, "np_set_deadline");
    BAD(ETIMEDOUT, "np_read", b, buf, sizeof buf);
    CHECK(call("np_set_deadline", b, (int64_t)0, NP_READ | NP_WRITE) == 0, "np_set_deadline 0");
    BAD(EINVAL, "np_set_deadline", b, (int64_t)0, 7);
    BAD(EINVAL, "np_set_deadline", (void *)NULL, (int64_t)0, NP_READ);

    /* NP_OPEN_NONBLOCK: -EAGAIN rather than a wait. */
    int d = dup(sv[1]);
    CHECK(call("np_open_flags", d, NP_OPEN_NONBLOCK, &nb) == 0, "np_open_flags");
    BAD(EAGAIN, "np_read", nb, buf, sizeof buf);
    CHECK(call("np_close", nb) == 0, "np_close");

    BAD(EINVAL, "np_read", (void *)NULL, buf, (size_t)1);
    BAD(EINVAL, "np_write", (void *)NULL, buf, (size_t)1);
    BAD(EINVAL, "np_read", b, (void *)NULL, (size_t)1);
    BAD(EINVAL, "np_readv", b, in, -1);
    BAD(EINVAL, "np_writev", a, (void *)NULL, 1);
    BAD(EINVAL, "np_readv", (void *)NULL, in, 1);
    BAD(EINVAL, "np_writev", (void *)NULL, out, 1);
    BAD(EINVAL, "np_recvfrom", (void *)NULL, buf, (size_t)1, 0, (void *)NULL, (void *)NULL);
    BAD(EINVAL, "np_sendto", (void *)NULL, buf, (size_t)1, 0, (void *)NULL, 0u);
    BAD(EINVAL, "np_recvmsg", b, (void *)NULL, 0);
    BAD(EINVAL, "np_sendmsg", (void *)NULL, &msg, 0);
    BAD(EINVAL, "np_wait_read", (void *)NULL);
    BAD(EINVAL, "np_wait_write", (void *)NULL);
    BAD(EINVAL, "np_close", (void *)NULL);
    CHECK(call("np_close", a) == 0 && call("np_close", b) == 0, "np_close");

    /* TCP: np_connect to a registered listener, np_accept, an echo. */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&sa, sl) == 0 && listen(lfd, 8) == 0 &&
              getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0,
          "listen");
    np_fd *ls = NULL, *c = NULL, *s = NULL;
    CHECK(call("np_open", lfd, &ls) == 0, "np_open listener");
    CHECK(call("np_open", socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), &c) == 0, "np_open client");
    BAD(EINVAL, "np_connect", c, (void *)NULL, 0u);
    BAD(EINVAL, "np_connect", (void *)NULL, &sa, (unsigned)sl);
    CHECK(call("np_connect", c, &sa, (unsigned)sl) == 0, "np_connect");
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    CHECK(call("np_accept", ls, &s, &peer, &pl) == 0 && peer.sin_family == AF_INET, "np_accept");
    BAD(EINVAL, "np_accept", (void *)NULL, &x, (void *)NULL, (void *)NULL);
    BAD(EINVAL, "np_accept", ls, (void *)NULL, (void *)NULL, (void *)NULL);
    CHECK(call("np_write", c, "ping", (size_t)4) == 4 && call("np_read", s, buf, sizeof buf) == 4 &&
              call("np_write", s, buf, (size_t)4) == 4 && call("np_read", c, buf, sizeof buf) == 4 &&
              !memcmp(buf, "ping", 4),
          "echo");
    CHECK(call("np_close", s) == 0 && call("np_close", c) == 0 && call("np_close", ls) == 0, "np_close");
}

static void runtime_calls(int green) {
    np_stats st = {.size = sizeof st};
    CHECK(call("np_stats_get", &st) == 0 && st.workers >= 1 && st.threads >= (uint64_t)green,
          "np_stats_get");
    np_stats small = {.size = 1};
    BAD(EINVAL, "np_stats_get", &small);
    BAD(EINVAL, "np_stats_get", (void *)NULL);
    CHECK(call("np_poll", (int64_t)0) >= 0, "np_poll");
    CHECK(call("np_poll_fd") >= 0, "np_poll_fd");
    CHECK(call("np_poll_timeout") >= -1, "np_poll_timeout");
    CHECK(call("np_poll_break") == 0, "np_poll_break");
    FILE *null = fopen("/dev/null", "w");
    CHECK(null && call("np_dump", null) == 0, "np_dump");
    if (null) fclose(null);
    BAD(EINVAL, "np_dump", (void *)NULL);
}

/* int fn(void *arg): np_main's entry. */
static void main_body(ffi_cif *cif, void *ret, void **args, void *user) {
    (void)cif, (void)user;
    int *value = *(int **)args[0];
    threads();
    sync_calls();
    io_calls();
    runtime_calls(1);
    *(ffi_arg *)ret = (ffi_arg)*value;
}

static void *closure(ffi_cif *cif, int ret, void (*body)(ffi_cif *, void *, void **, void *)) {
    static ffi_type *arg1[] = {&ffi_type_pointer};
    void *code = NULL;
    ffi_closure *cl = ffi_closure_alloc(sizeof(ffi_closure), &code);
    if (!cl || ffi_prep_cif(cif, FFI_DEFAULT_ABI, 1, ffi_of(ret), arg1) != FFI_OK ||
        ffi_prep_closure_loc(cl, cif, body, NULL, code) != FFI_OK) {
        printf("ffi: closure failed\n");
        exit(1);
    }
    return code;
}

int main(int argc, char **argv) {
    const char *lib = argc > 1 ? argv[1] : "libnetpoll.so.1";
    if (argc > 2 && !strcmp(argv[2], "--list")) {
        for (size_t i = 0; i < NFNS; i++) printf("%s %d\n", fns[i].name, fns[i].nargs);
        return 0;
    }
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("ffi: dlopen failed: %s\n", dlerror());
        return 1;
    }
    for (size_t i = 0; i < NFNS; i++) {
        struct fn *f = &fns[i];
        f->sym = dlsym(h, f->name);
        CHECK(f->sym, "%s: not exported", f->name);
        for (int k = 0; k < f->nargs; k++) f->at[k] = ffi_of(f->args[k]);
        CHECK(ffi_prep_cif(&f->cif, FFI_DEFAULT_ABI, (unsigned)f->nargs, ffi_of(f->ret), f->at) == FFI_OK,
              "%s: ffi_prep_cif", f->name);
    }
    if (fails) return 1;
    /* The engine's jemalloc stays private. */
    const char *priv[] = {"mallocx", "npje_mallocx", "je_mallocx", "npje_mallctl", "mallctl"};
    for (size_t i = 0; i < sizeof priv / sizeof priv[0]; i++)
        CHECK(!dlsym(h, priv[i]), "the private allocator leaks %s", priv[i]);

    static ffi_cif go_cif, spawn_cif, main_cif;
    go_code = closure(&go_cif, V, go_body);
    spawn_code = closure(&spawn_cif, P, spawn_body);
    void *main_code = closure(&main_cif, I, main_body);

    np_config bad = {.size = 1};
    BAD(EINVAL, "np_init", &bad);
    np_config cfg = {.size = sizeof cfg, .procs = 2};
    CHECK(call("np_init", &cfg) == 0, "np_init");
    CHECK(call("np_in_green") == 0, "np_in_green on an OS thread");
    int value = 41;
    CHECK(call("np_main", main_code, &value) == 41, "np_main did not return its entry's result");
    runtime_calls(0);

    int called = 0;
    for (size_t i = 0; i < NFNS; i++) {
        CHECK(fns[i].calls > 0, "%s never called", fns[i].name);
        called += fns[i].calls > 0;
    }
    if (fails) {
        printf("ffi: %d failures\n", fails);
        return 1;
    }
    printf("ffi: dlopen, %d functions through ffi_call (%d bad-argument calls), closures as green "
           "entries: ok\n",
           called, bad_calls);
    return 0;
}
