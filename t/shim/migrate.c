/* Known pitfall (libgo #256): a thread that moves to another OS thread
 * while the compiler keeps &errno and a __thread address in registers
 * must still read and write its own.  Pairs of threads: one blocks its OS
 * thread in a call the shim cannot see (a raw nanosleep), the other waits
 * on a pipe meanwhile and may be moved to another worker; each checks that
 * errno, its __thread value and their addresses survived, and counts the
 * OS thread changes it saw (/proc/thread-self). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "os_tid.h"

static __thread long tls_value;
static atomic_int moves, failures;

#define CHECK(c, ...) do { if (!(c)) { atomic_fetch_add(&failures, 1); printf("FAILED %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

struct pair {
    int pipe[2];
    long id;
};

static void *blocker(void *arg)
{
    struct pair *p = arg;
    struct timespec ts = {0, 30 * 1000 * 1000};
    for (int i = 0; i < 5; i++) {
        syscall(SYS_nanosleep, &ts, NULL); /* blocks the OS thread, unseen */
        char c = 'x';
        if (write(p->pipe[1], &c, 1) != 1) atomic_fetch_add(&failures, 1);
    }
    return NULL;
}

static void *waiter(void *arg)
{
    struct pair *p = arg;
    int *volatile ep = &errno;           /* the addresses, kept across calls */
    long *volatile tp = &tls_value;
    tls_value = p->id;
    for (int i = 0; i < 5; i++) {
        pid_t before = st_os_tid();
        errno = 1000 + (int)p->id;
        char c;
        ssize_t n = read(p->pipe[0], &c, 1);
        pid_t after = st_os_tid();
        if (before != after) atomic_fetch_add(&moves, 1);
        CHECK(n == 1, "read: %zd", n);
        CHECK(ep == &errno && tp == &tls_value, "pair %ld: &errno or &tls_value changed", p->id);
        CHECK(*ep == 1000 + (int)p->id && errno == 1000 + (int)p->id, "pair %ld: errno %d", p->id, errno);
        CHECK(*tp == p->id && tls_value == p->id, "pair %ld: tls_value %ld", p->id, tls_value);
    }
    return NULL;
}

int main(void)
{
    alarm(60);
    enum { N = 16 };
    struct pair p[N];
    pthread_t b[N], w[N];
    for (int i = 0; i < N; i++) {
        p[i].id = i + 1;
        if (pipe(p[i].pipe)) return 2;
        pthread_create(&w[i], NULL, waiter, &p[i]);
        pthread_create(&b[i], NULL, blocker, &p[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(b[i], NULL);
        pthread_join(w[i], NULL);
    }
    printf("migrate: %d pairs x 5 waits beside a blocked OS thread: errno, __thread and their addresses kept; %d moves between OS threads seen\n",
           N, atomic_load(&moves));
    printf("migrate: %d failed\n", atomic_load(&failures));
    return atomic_load(&failures) ? 1 : 0;
}
