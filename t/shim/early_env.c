/* early_env: a program that defines getenv() and secure_getenv() itself,
 * in code that works only once its own constructor ran (Firefox's call
 * through a pointer that constructor sets, and jump to 0 before).  The
 * library decides whether to step in (NP_SHIM) before the program's
 * constructors run: it must not call these for that. */
#include "shim_test.h"

static char *(*lookup)(const char *); /* set by the constructor */
static int early_calls;
static char *env_scan(const char *name)
{
    size_t n = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}
__attribute__((constructor)) static void ready(void) { lookup = env_scan; }

char *getenv(const char *name)
{
    if (!lookup) {
        /* the library's NP_* variables (its engine's allocator asks for
         * NPJE_MALLOC_CONF this way too, and copes) */
        if (strncmp(name, "NP_", 3) == 0) early_calls++;
        return NULL;
    }
    return lookup(name);
}
char *secure_getenv(const char *name) { return getenv(name); }

static void *child(void *arg) { return arg; }

int main(void)
{
    st_watchdog(30);
    CHECK(early_calls == 0, "getenv() or secure_getenv() asked for NP_* %d times before the program's constructor ran", early_calls);
    CHECK(getenv("PATH") != NULL, "no PATH");
    pthread_t t;
    void *r = NULL;
    CHECK(pthread_create(&t, NULL, child, (void *)&early_calls) == 0, "pthread_create");
    pthread_join(t, &r);
    CHECK(r == (void *)&early_calls, "the thread's result");
    printf("early_env: %ld checks, %ld failures\n", atomic_load(&st_checks), atomic_load(&st_failures));
    return atomic_load(&st_failures) ? 1 : 0;
}
