/* sleep_left: sleep(3) interrupted by a handler returns the whole seconds
 * left, as glibc's counts them: 1.7 s left is 1, 0.7 s is 0.  The shim
 * rounded up (2 and 1), so a loop of `left = sleep(left)` that ends plain
 * slept a second more under it.
 *
 * A thread sleeps 2 s, then 1 s; main sends it SIGUSR1 300 ms into each. */
#include "shim_test.h"

static atomic_int ran;
static void on_usr1(int sig) { (void)sig; atomic_fetch_add(&ran, 1); }

static atomic_int asleep;
static void *sleeper(void *arg)
{
    unsigned s = (unsigned)(uintptr_t)arg;
    atomic_store(&asleep, 1);
    return (void *)(uintptr_t)sleep(s);
}

static void one(unsigned secs, unsigned want)
{
    atomic_store(&asleep, 0);
    int before = atomic_load(&ran);
    pthread_t t = st_spawn(sleeper, (void *)(uintptr_t)secs);
    st_wait_for(&asleep, 1, 5000);
    st_sleep_ms(300);
    pthread_kill(t, SIGUSR1);
    void *r;
    pthread_join(t, &r);
    CHECK(atomic_load(&ran) == before + 1, "sleep(%u): the handler ran %d times", secs, atomic_load(&ran) - before);
    CHECK((uintptr_t)r == want, "sleep(%u) interrupted after 0.3 s returned %u; want %u, as glibc's", secs,
          (unsigned)(uintptr_t)r, want);
}

int main(void)
{
    st_watchdog(30);
    struct sigaction sa = {.sa_handler = on_usr1};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    one(2, 1);
    one(1, 0);
    return st_finish("sleep_left");
}
