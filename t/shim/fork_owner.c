/* A mutex's owner in a forked child.  glibc names an error-checking mutex's
 * owner (__data.__owner) by the tid in the thread's TCB; a child made by
 * fork() has its own tid there, a child made by clone() on a small stack
 * (then longjmp back to the parent's frame, as Firefox's sandbox launcher
 * and Chromium do) keeps its parent thread's, and Firefox compares the two
 * (then fixes the TCB) and aborts when they differ.  Each kind of child,
 * made from the main thread and from another thread, locks a fresh
 * error-checking mutex: after fork() the owner must be the child's own tid;
 * after clone() it must name a task that exists (the child or its parent
 * thread), never an id made up for the parent's thread. */
#include "shim_test.h"
#include <sched.h>
#include <setjmp.h>
#include <sys/syscall.h>

static int mutex_owner(void)
{
    pthread_mutex_t m;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&m, &a);
    pthread_mutex_lock(&m);
    int owner = m.__data.__owner;
    pthread_mutex_unlock(&m);
    pthread_mutex_destroy(&m);
    return owner;
}

/* The child's verdict, as its exit status: 0 good, 1 bad owner. */
static int child_fork_check(void)
{
    int owner = mutex_owner(), tid = (int)syscall(SYS_gettid);
    if (owner != tid) {
        fprintf(stderr, "FAILED fork child: mutex owner %d, its tid %d\n", owner, tid);
        return 1;
    }
    return 0;
}

static int child_clone_check(void)
{
    int owner = mutex_owner(), tid = (int)syscall(SYS_gettid);
    if (owner != tid && kill(owner, 0) != 0) {
        fprintf(stderr, "FAILED clone child: mutex owner %d names no task (its tid %d)\n", owner, tid);
        return 1;
    }
    return 0;
}

static int clone_callee(void *p)
{
    longjmp(*(jmp_buf *)p, 1);
    return 1;
}

__attribute__((noinline)) static pid_t clone_small_stack(jmp_buf *ctx)
{
    _Alignas(16) unsigned char stack[16384];
    return clone(clone_callee, stack + sizeof stack, SIGCHLD, ctx);
}

/* clone() that returns in the child as fork() does. */
static pid_t fork_by_clone(void)
{
    static __thread jmp_buf ctx; /* per thread; the child finds its copy */
    if (setjmp(ctx) == 0) return clone_small_stack(&ctx);
    return 0;
}

static void one(const char *who, int by_clone)
{
    mutex_owner(); /* the parent thread has locked one before */
    pid_t pid = by_clone ? fork_by_clone() : fork();
    if (pid == 0) _exit(by_clone ? child_clone_check() : child_fork_check());
    CHECK(pid > 0, "%s: %s: %s", who, by_clone ? "clone" : "fork", strerror(errno));
    if (pid <= 0) return;
    int st = st_wait_status(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s child: %s", who, by_clone ? "clone" : "fork",
          st_status_str(st));
}

static void *from_thread(void *arg)
{
    (void)arg;
    one("thread", 0);
    one("thread", 1);
    return NULL;
}

static void test_main(void)
{
    one("main", 0);
    one("main", 1);
}

static void test_thread(void)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, from_thread, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
    static const struct st_test tests[] = {{"main", test_main}, {"thread", test_thread}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("fork_owner");
}
