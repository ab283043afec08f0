/* go_library: a C program linked with a library that holds Go's runtime
 * (go_library_lib.c carries the note of one built with -buildmode=c-shared).
 * Go preempts a goroutine with tgkill(SIGURG), a raw system call, to the
 * OS thread it learned with a raw gettid, and its scheduler, futexes and
 * timers are raw system calls too: under green threads the signal was taken
 * for the shim's own poke and a spinning goroutine never yielded (a C host
 * calling a Go function with GOMAXPROCS=1 hung).  The shim steps aside for
 * such a program, as for a Go executable; here each thread checks that its
 * own SIGURG, sent the way Go sends it, runs its handler at once. */
#include "shim_test.h"
#include <sys/syscall.h>

/* go_no_note.c is this test with another library. */
#ifndef GO_TEST
#define GO_TEST "go_library"
#define GO_LINKED go_library_linked
#endif
int GO_LINKED(void); /* NAME_lib.c */

static _Thread_local volatile sig_atomic_t urgs;

static void on_urg(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    urgs++;
}

static void *preempt_self(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        urgs = 0;
        long tid = syscall(SYS_gettid);
        /* unblocked and sent to this thread: delivered before the call returns */
        CHECK(syscall(SYS_tgkill, (long)getpid(), tid, SIGURG) == 0, "tgkill: %s", strerror(errno));
        CHECK(urgs == 1, "SIGURG sent to this thread ran its handler %d times, not once", (int)urgs);
    }
    return NULL;
}

int main(void)
{
    st_watchdog(30);
    CHECK(GO_LINKED() == 4, "%s_lib.c not linked", GO_TEST);
    struct sigaction sa = {.sa_sigaction = on_urg, .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGURG, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
    preempt_self(NULL); /* the main thread */
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, preempt_self, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    return st_finish(GO_TEST);
}
