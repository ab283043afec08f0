/* dl_lock: the dynamic linker's own lock (dl_load_lock), which glibc takes
 * in dlopen(3), dlsym(3) and dlclose(3) and holds while a library's
 * constructors run, is a recursive mutex that names its holder by the
 * thread's tid.  A constructor that parks (here a pipe read) holds it:
 *
 *   exclude  a constructor parks under dlopen; 6 other threads, some on
 *            the holder's worker, then dlopen the same library with
 *            RTLD_NOLOAD: each waits until the constructor is done and
 *            finds it done, as with OS threads (a thread of the holder's
 *            worker took the lock as its own and found the library half
 *            made)
 *   moved    a constructor parks under dlopen; a thread of its worker
 *            wakes it, then blocks that worker in a call the library does
 *            not see, so the holder goes on on another worker; its unlock
 *            must work: main() then dlsym()s and dlopen()s (the lock was
 *            left held by the old worker's tid, and main() waited for
 *            ever)
 *
 * Each case loads its own copy of libdl_lock.so (the one the program links
 * with ran its constructor at start, doing nothing). */
#include "shim_test.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

int *dl_lock_flag(void); /* dl_lock_lib.c */

enum { kOthers = 6 };

static char copy[128];
static int gate[2], started[2];

/* A fresh copy of the library, for a load of its own. */
static int make_copy(const char *tag)
{
    Dl_info info;
    if (!dladdr((void *)dl_lock_flag, &info) || !info.dli_fname) return -1;
    snprintf(copy, sizeof copy, "/tmp/dl_lock.%d.%s.so", (int)getpid(), tag);
    int in = open(info.dli_fname, O_RDONLY), out = open(copy, O_WRONLY | O_CREAT | O_TRUNC, 0700);
    if (in < 0 || out < 0) return -1;
    char buf[4096];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n) return -1;
    close(in);
    close(out);
    return 0;
}

static void arm(int others)
{
    if (pipe(gate) != 0 || pipe(started) != 0) abort();
    char v[64];
    snprintf(v, sizeof v, "%d %d", gate[0], started[1]);
    setenv("DL_LOCK_FDS", v, 1);
    snprintf(v, sizeof v, "%d", others);
    setenv("DL_LOCK_STARTED", v, 1);
}

static void disarm(void)
{
    unsetenv("DL_LOCK_FDS");
    close(gate[0]);
    close(gate[1]);
    close(started[0]);
    close(started[1]);
    unlink(copy);
}

static void *loader(void *arg)
{
    (void)arg;
    return dlopen(copy, RTLD_NOW | RTLD_LOCAL);
}

static atomic_int half_made, not_found;

static void *other(void *arg)
{
    (void)arg;
    char c;
    if (read(started[0], &c, 1) != 1) abort(); /* the constructor runs */
    void *h = dlopen(copy, RTLD_NOW | RTLD_NOLOAD);
    if (!h) {
        atomic_fetch_add(&not_found, 1);
        return NULL;
    }
    int *(*flag)(void) = (int *(*)(void))dlsym(h, "dl_lock_flag");
    if (!flag || !*flag()) atomic_fetch_add(&half_made, 1);
    dlclose(h);
    return NULL;
}

static void *others_then_load(void *arg)
{
    pthread_t *t = arg;
    /* Made here, they start on this thread's worker unless another takes
     * them first: some share the holder's worker. */
    for (int i = 0; i < kOthers; i++) pthread_create(&t[i], NULL, other, NULL);
    return loader(NULL);
}

static void test_exclude(void)
{
    CHECK(make_copy("exclude") == 0, "copy the library: %s", strerror(errno));
    arm(kOthers);
    pthread_t t[kOthers], l;
    pthread_create(&l, NULL, others_then_load, t);
    st_sleep_ms(100); /* the others wait for the lock, or took it */
    CHECK(write(gate[1], "g", 1) == 1, "write");
    void *h;
    pthread_join(l, &h);
    CHECK(h != NULL, "dlopen: %s", dlerror());
    for (int i = 0; i < kOthers; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&half_made) == 0, "%d of %d threads found the library before its constructor ended",
          atomic_load(&half_made), kOthers);
    CHECK(atomic_load(&not_found) == 0, "%d threads did not find it", atomic_load(&not_found));
    if (h) dlclose(h);
    disarm();
}

static void *waker_then_block(void *arg)
{
    (void)arg;
    char c;
    if (read(started[0], &c, 1) != 1) abort();
    if (write(gate[1], "g", 1) != 1) abort();
    struct timespec ts = {0, 300 * 1000000};
    syscall(SYS_nanosleep, &ts, NULL); /* unseen: holds this worker */
    return NULL;
}

static void *blocker_then_load(void *arg)
{
    pthread_t *b = arg;
    pthread_create(b, NULL, waker_then_block, NULL);
    return loader(NULL);
}

static void test_moved(void)
{
    CHECK(make_copy("moved") == 0, "copy the library: %s", strerror(errno));
    arm(1);
    pthread_t b, l;
    pthread_create(&l, NULL, blocker_then_load, &b);
    void *h;
    pthread_join(l, &h);
    pthread_join(b, NULL);
    CHECK(h != NULL, "dlopen: %s", dlerror());
    st_phase = "moved: dlsym after the load";
    int *(*flag)(void) = h ? (int *(*)(void))dlsym(h, "dl_lock_flag") : NULL;
    CHECK(flag && *flag(), "the constructor did not finish");
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    CHECK(libc != NULL, "dlopen libc.so.6: %s", dlerror());
    if (libc) dlclose(libc);
    if (h) dlclose(h);
    disarm();
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(30);
    st_threads_up();
    static const struct st_test tests[] = {{"exclude", test_exclude}, {"moved", test_moved}};
    for (int round = 0; round < 3; round++) st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("dl_lock");
}
