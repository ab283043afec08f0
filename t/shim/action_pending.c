/* action_pending: a signal for main that came while main was busy inside
 * libc (its handler not yet run there) is delivered under the action it
 * came under, before sigaction() changes that action.  The kernel delivers
 * it at once; CPython, its itimer stopped, reset SIGALRM to SIG_DFL at its
 * exit and died of the SIGALRM still pending ("Alarm clock", exit 142).
 *   Another thread, blocking SIGUSR1, sends it to the process while main
 *   runs memset() over 64 MiB again and again; main then sets SIG_DFL back,
 *   sleeps (a call that takes what is pending) and must still be alive,
 *   with the handler run once. */
#include "shim_test.h"

static atomic_int busy, sent, runs;
static void on_usr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&runs, 1);
}

static void *sender(void *arg)
{
    (void)arg;
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &m, NULL); /* main alone takes it */
    st_wait_for(&busy, 1, 10000);
    st_sleep_ms(20);
    kill(getpid(), SIGUSR1);
    atomic_store(&sent, 1);
    return NULL;
}

int main(void)
{
    st_watchdog(60);
    size_t size = (size_t)64 << 20;
    char *volatile big = malloc(size);
    CHECK(big != NULL, "malloc");
    if (!big) return st_finish("action_pending");
    for (int round = 0; round < 5; round++) {
        st_phase = "busy in libc";
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
        atomic_store(&busy, 0);
        atomic_store(&sent, 0);
        atomic_store(&runs, 0);
        pthread_t t = st_spawn(sender, NULL);
        atomic_store(&busy, 1);
        /* Inside libc nearly all the time, with no call that could park:
         * no poke runs the handler there. */
        while (!atomic_load(&sent)) memset(big, round, size);
        for (int i = 0; i < 3; i++) memset(big, round, size);
        st_phase = "action changed";
        signal(SIGUSR1, SIG_DFL); /* still pending here: the process dies */
        st_sleep_ms(20);
        pthread_join(t, NULL);
        CHECK(atomic_load(&runs) == 1, "round %d: the handler ran %d times, want 1", round, atomic_load(&runs));
    }
    free(big);
    return st_finish("action_pending");
}
