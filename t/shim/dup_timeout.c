/* SO_RCVTIMEO and SO_SNDTIMEO belong to the socket, not to the descriptor
 * number: set through one descriptor, they hold for its dup(2)s too.  A
 * thread reading a dup of a socket whose receive timeout was set through
 * the other descriptor must get EAGAIN when it runs out, not wait forever
 * (found by t/fuzz/fuzz_fd_table.cpp: the preload shim kept the timeouts
 * it had read per descriptor number). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAILED %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
    (void)arg;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    int a = sv[0], b = dup(a);
    CHECK(b >= 0, "dup: %s", strerror(errno));
    char c;
    /* Both descriptors used once without a timeout. */
    CHECK(recv(a, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN, "recv a: %s", strerror(errno));
    CHECK(recv(b, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN, "recv b: %s", strerror(errno));
    struct timeval tv = {0, 100 * 1000};
    CHECK(setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "setsockopt: %s", strerror(errno));
    double t0 = now();
    ssize_t n = read(b, &c, 1); /* nobody writes: the timeout ends it */
    int e = errno;
    double took = now() - t0;
    CHECK(n < 0 && (e == EAGAIN || e == EWOULDBLOCK), "read of the dup: %zd (%s)", n, strerror(e));
    CHECK(took >= 0.09 && took < 5, "read of the dup took %.3f s, want 0.1", took);

    /* The send side, the other way round: set through the dup. */
    int one = 4096;
    setsockopt(a, SOL_SOCKET, SO_SNDBUF, &one, sizeof one);
    static char big[1 << 16];
    while (send(a, big, sizeof big, MSG_DONTWAIT) > 0) {
    }
    CHECK(setsockopt(b, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0, "setsockopt: %s", strerror(errno));
    t0 = now();
    n = send(a, big, sizeof big, 0); /* the buffer is full: the timeout ends it */
    e = errno;
    took = now() - t0;
    CHECK(n < 0 && (e == EAGAIN || e == EWOULDBLOCK), "send: %zd (%s)", n, strerror(e));
    CHECK(took >= 0.09 && took < 5, "send took %.3f s, want 0.1", took);
    close(a);
    close(b);
    close(sv[1]);
    return NULL;
}

int main(void)
{
    alarm(20); /* a read that never times out fails the run */
    pthread_t t;
    run(NULL); /* the main thread */
    pthread_create(&t, NULL, run, NULL);
    pthread_join(t, NULL);
    printf("dup_timeout: %s\n", failures ? "FAILED" : "ok");
    return failures != 0;
}
