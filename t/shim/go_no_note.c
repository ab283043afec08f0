/* go_no_note: as go_library, with Go's runtime in a library that carries
 * no Go note (go_no_note_lib.c: built with -ldflags=-buildid=, it exports
 * cgo's crosscall2 all the same).  A cgo program built so ran on green
 * threads: Go's SIGURG preemption, a raw tgkill to the OS thread, was taken
 * for the shim's poke, and a spinning goroutine with GOMAXPROCS=1 hung it.
 * The shim must step aside for it too; here each thread checks that its
 * own SIGURG, sent the way Go sends it, runs its handler at once. */
#include "shim_test.h"
#include <sys/syscall.h>

int go_no_note_linked(void); /* go_no_note_lib.c */

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
    CHECK(go_no_note_linked() == 4, "go_no_note_lib.c not linked");
    struct sigaction sa = {.sa_sigaction = on_urg, .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGURG, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
    preempt_self(NULL); /* the main thread */
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, preempt_self, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    return st_finish("go_no_note");
}
