/* A read of a pipe's write end, or a write to its read end, fails at once
 * with EBADF, as the kernel says: it does not wait for a readiness that
 * never comes (found by t/fuzz/fuzz_preload.cpp: under the preload shim
 * both parked forever).  The same for readv/writev and a write-only
 * character device. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static int failures;

#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAILED %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

static void *run(void *arg)
{
    int nonblock = arg != NULL;
    int p[2];
    CHECK(pipe2(p, nonblock ? O_NONBLOCK : 0) == 0, "pipe: %s", strerror(errno));
    char c = 'x';
    struct iovec iov = {&c, 1};
    ssize_t r = read(p[1], &c, 1);
    CHECK(r == -1 && errno == EBADF, "read of the write end: %zd (%s)", r, strerror(errno));
    r = readv(p[1], &iov, 1);
    CHECK(r == -1 && errno == EBADF, "readv of the write end: %zd (%s)", r, strerror(errno));
    /* Full, so that the read end is not writable either way. */
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    static char big[1 << 16];
    while (write(p[1], big, sizeof big) > 0) {
    }
    r = write(p[0], &c, 1);
    CHECK(r == -1 && errno == EBADF, "write to the read end: %zd (%s)", r, strerror(errno));
    r = writev(p[0], &iov, 1);
    CHECK(r == -1 && errno == EBADF, "writev to the read end: %zd (%s)", r, strerror(errno));
    close(p[0]);
    close(p[1]);
    int null = open("/dev/null", O_WRONLY);
    r = read(null, &c, 1);
    CHECK(r == -1 && errno == EBADF, "read of /dev/null opened O_WRONLY: %zd (%s)", r, strerror(errno));
    close(null);
    return NULL;
}

int main(void)
{
    alarm(20); /* a call that waits forever fails the run */
    run(NULL);
    run(&failures);
    pthread_t t;
    pthread_create(&t, NULL, run, NULL);
    pthread_join(t, NULL);
    printf("pipe_wrong_end: %s\n", failures ? "FAILED" : "ok");
    return failures != 0;
}
