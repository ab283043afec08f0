/* default_stack: NP_STACK_SIZE (nprun -s) is the stack of a thread whose
 * attributes ask for no size, in bytes or with a k, m or g suffix, as the
 * runtime reads it.  The shim took only bytes: NP_STACK_SIZE=256k, which
 * the runtime accepted without a word, left the threads glibc's 8 MiB.
 *
 * The program runs itself again with each value and a thread reports its
 * size with pthread_getattr_np; without the shim, glibc's default. */
#include "shim_test.h"

static void *report(void *arg)
{
    pthread_attr_t a;
    size_t sz = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstacksize(&a, &sz);
        pthread_attr_destroy(&a);
    }
    *(size_t *)arg = sz;
    return NULL;
}

static size_t thread_stack(void)
{
    size_t sz = 0;
    pthread_t t = st_spawn(report, &sz);
    pthread_join(t, NULL);
    return sz;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        printf("%zu\n", thread_stack());
        return 0;
    }
    st_watchdog(30);
    size_t plain = thread_stack(); /* NP_STACK_SIZE unset here: glibc's default */
    static const struct { const char *v; size_t want; } cases[] = {
        {"262144", 262144}, {"256k", 262144}, {"256K", 262144}, {"1m", 1048576}, {"64k", 65536},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int p[2];
        CHECK(pipe(p) == 0, "pipe");
        pid_t c = fork();
        if (c == 0) {
            dup2(p[1], 1);
            setenv("NP_STACK_SIZE", cases[i].v, 1);
            execl("/proc/self/exe", argv[0], "child", (char *)NULL);
            _exit(127);
        }
        close(p[1]);
        char buf[32] = "";
        ssize_t n = st_read_full(p[0], buf, sizeof buf - 1);
        close(p[0]);
        int st = st_wait_status(c);
        CHECK(n > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "NP_STACK_SIZE=%s: the child's status %#x", cases[i].v,
              st);
        size_t got = strtoull(buf, NULL, 10), want = st_under_shim() ? cases[i].want : plain;
        CHECK(got == want, "NP_STACK_SIZE=%s: a thread of default attributes has a %zu-byte stack, want %zu",
              cases[i].v, got, want);
    }
    return st_finish("default_stack");
}
