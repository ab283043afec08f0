/* fork from a legacy thread that is not main, while others run: the
 * parent goes on serving, and the child (one thread, as POSIX says) starts
 * threads of its own, with their own __thread state, then exec's a program
 * with the signal mask main had (not the worker's, which blocks all). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static __thread int tls_value;
static int failures;
static char sigblk[64]; /* main's signal mask at start: an exec'd child must have it */

#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAILED %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

static void *echo(void *arg)
{
    int fd = *(int *)arg;
    char b[64];
    tls_value = fd + 1000;
    for (;;) {
        ssize_t n = read(fd, b, sizeof b);
        if (n <= 0) break;
        if (write(fd, b, (size_t)n) != n) break;
    }
    return (void *)(long)(tls_value == fd + 1000);
}

static int round_trip(int fd)
{
    char b[8];
    return write(fd, "ping", 4) == 4 && read(fd, b, sizeof b) == 4 && memcmp(b, "ping", 4) == 0;
}

/* The child: its own threads, then an exec'd shell reporting its mask. */
static int child(void)
{
    enum { N = 40 };
    int sv[N][2];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) || pthread_create(&t[i], NULL, echo, &sv[i][0]))
            return 10;
    }
    for (int i = 0; i < N; i++)
        if (!round_trip(sv[i][1])) return 11;
    for (int i = 0; i < N; i++) close(sv[i][1]);
    for (int i = 0; i < N; i++) {
        void *r;
        pthread_join(t[i], &r);
        if (!r) return 12;
    }
    char cmd[160];
    snprintf(cmd, sizeof cmd, "grep -q '^SigBlk:[[:space:]]*%s$' /proc/self/status", sigblk);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    return 13;
}

static void *forker(void *arg)
{
    (void)arg;
    pid_t p = fork();
    if (p == 0) _exit(child());
    int st = -1;
    waitpid(p, &st, 0);
    return (void *)(long)(WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st));
}

int main(void)
{
    alarm(60);
    FILE *st = fopen("/proc/self/status", "r");
    char line[256];
    while (st && fgets(line, sizeof line, st))
        if (sscanf(line, "SigBlk: %63s", sigblk) == 1) break;
    if (st) fclose(st);
    enum { M = 20 };
    int sv[M][2];
    pthread_t t[M];
    for (int i = 0; i < M; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) == 0, "socketpair");
        pthread_create(&t[i], NULL, echo, &sv[i][0]);
    }
    for (int round = 0; round < 5; round++) {
        pthread_t f;
        pthread_create(&f, NULL, forker, NULL);
        for (int i = 0; i < M; i++) CHECK(round_trip(sv[i][1]), "parent echo %d in round %d", i, round);
        void *r;
        pthread_join(f, &r);
        CHECK(r == 0, "child of round %d: status %ld (10-13: see child())", round, (long)r);
    }
    for (int i = 0; i < M; i++) close(sv[i][1]);
    for (int i = 0; i < M; i++) {
        void *r;
        pthread_join(t[i], &r);
        CHECK(r != 0, "parent thread %d lost its __thread value", i);
    }
    printf("fork_threads: 5 forks from a thread while %d others echo; each child ran 40 threads of its own and exec'd with main's signal mask\n", M);
    printf("fork_threads: %d failed\n", failures);
    return failures ? 1 : 0;
}
