/*
 * legacy_echo.c - thread-per-connection TCP echo server, plain C11 and
 * pthreads: no netpoll header, nothing of netpoll linked.
 *
 * Serves: TCP echo on 127.0.0.1:PORT.  The main thread accepts; every
 * connection gets its own pthread with the default attributes (the
 * default stack size, RLIMIT_STACK, usually 8 MiB reserved), detached,
 * doing blocking read/write with a 4 KiB buffer.  The program a legacy
 * server is: run as it is, it holds one OS thread per connection; under
 * nprun (the netpoll preload shim) the same binary holds one green thread
 * per connection on a few worker OS threads.
 * Prints nothing but errors.
 * Usage: legacy_echo PORT
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void *serve(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        ssize_t off = 0;
        while (off < n) {
            ssize_t k = write(fd, buf + off, (size_t)(n - off));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) goto out;
            off += k;
        }
    }
out:
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: legacy_echo PORT\n");
        return 2;
    }
    struct rlimit rl; /* as many descriptors as allowed */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (lfd < 0) {
        perror("legacy_echo: socket");
        return 1;
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, SOMAXCONN) < 0) {
        perror("legacy_echo: bind/listen");
        return 1;
    }
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            perror("legacy_echo: accept");
            struct timespec ts = {0, 10000000}; /* EMFILE & co: back off */
            nanosleep(&ts, NULL);
            continue;
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        int rc = pthread_create(&t, NULL, serve, (void *)(intptr_t)c);
        if (rc != 0) {
            fprintf(stderr, "legacy_echo: pthread_create: %s\n", strerror(rc));
            close(c);
            continue;
        }
        pthread_detach(t);
    }
}
