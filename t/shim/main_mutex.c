/* main_mutex: main takes a recursive and an error-checking mutex before
 * its first pthread_create and again after, as a GLib class_init that
 * calls g_bus_get_sync does (GType's class lock is a recursive mutex taken
 * while the process is single-threaded; gdbus-bz627724 hung under the
 * shim): the re-lock must recurse, the error-checking one report EDEADLK,
 * and the unlocks succeed, on whichever worker main then runs. */
#include "shim_test.h"

static void test_main_mutex(void)
{
    pthread_mutexattr_t at;
    pthread_mutex_t rec, chk;
    pthread_mutexattr_init(&at);
    pthread_mutexattr_settype(&at, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&rec, &at);
    pthread_mutexattr_settype(&at, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&chk, &at);
    CHECK(pthread_mutex_lock(&rec) == 0, "first lock of the recursive mutex");
    CHECK(pthread_mutex_lock(&chk) == 0, "first lock of the error-checking mutex");
    for (int i = 0; i < 4; i++) st_threads_up(); /* main may move between workers */
    CHECK(pthread_mutex_trylock(&rec) == 0, "recursive trylock by its owner after the first thread");
    CHECK(pthread_mutex_lock(&chk) == EDEADLK, "error-checking re-lock by its owner is not EDEADLK");
    CHECK(pthread_mutex_unlock(&rec) == 0 && pthread_mutex_unlock(&rec) == 0, "recursive unlocks");
    CHECK(pthread_mutex_unlock(&chk) == 0, "error-checking unlock by its owner");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(30);
    static const struct st_test tests[] = {{"main-mutex", test_main_mutex}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
    return st_finish("main_mutex");
}
