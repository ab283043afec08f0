/* A thread forks, and in the child that thread (the child's only one)
 * ends: it returns from its start routine, or calls pthread_exit.  glibc
 * ends the process with status 0 then, as its last thread ended (CPython's
 * test_threading test_main_thread_after_fork_from_nonmain_thread).  The
 * shim's green thread went on as a plain thread in the child, and its end
 * returned to a worker that is not there: SIGSEGV.  The thread's key
 * destructors run first, and the atexit handlers after, as glibc runs
 * them: the child's exit status says which ran (2 + 4 both, in order). */
#include "shim_test.h"

static pthread_key_t key;
static int ran;
static void dtor(void *v)
{
    (void)v;
    if (ran == 0) ran |= 2;
}
static void at_exit(void)
{
    if (ran & 2) ran |= 4;
    _exit(ran == 6 ? 0 : 10 + ran);
}

static void *body(void *arg)
{
    int how = (int)(intptr_t)arg;
    pid_t p = fork();
    if (p == 0) {
        atexit(at_exit);
        pthread_setspecific(key, &key);
        if (how) pthread_exit(NULL);
        return NULL;
    }
    CHECK(p > 0, "fork: %s", strerror(errno));
    int st = -1;
    if (p > 0) waitpid(p, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s in the child: status %#x, want exit 0",
          how ? "pthread_exit" : "return", st);
    return NULL;
}

int main(void)
{
    st_watchdog(60);
    pthread_key_create(&key, dtor);
    for (int how = 0; how < 2; how++) {
        pthread_t t;
        pthread_create(&t, NULL, body, (void *)(intptr_t)how);
        pthread_join(t, NULL);
    }
    return st_finish("fork_thread_end");
}
