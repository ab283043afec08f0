/*
 * echo_np.c - echo server on netpoll, one green thread per connection.
 *
 * Serves: TCP echo on 127.0.0.1:PORT.  np_main runs the accept loop on
 * the registered listener; every accepted connection gets its own green
 * thread (np_go) that does np_read/np_write with a 4 KiB buffer on its
 * green stack.  Default runtime configuration (NP_PROCS etc. apply).
 * The peers: echo_epoll.c, echo_threads.c, go/echo.go.
 * Usage: echo_np PORT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <netpoll.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void serve(void *arg) {
    np_fd *c = arg;
    char buf[4096];
    for (;;) {
        ssize_t n = np_read(c, buf, sizeof buf);
        if (n <= 0) break; /* EOF or -errno */
        if (np_write(c, buf, (size_t)n) != n) break;
    }
    np_close(c);
}

static int accept_loop(void *arg) {
    int port = *(int *)arg, one = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        perror("echo_np: socket");
        return 1;
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 65535) < 0) {
        perror("echo_np: bind/listen");
        return 1;
    }
    np_fd *ls;
    int rc = np_open(lfd, &ls);
    if (rc < 0) {
        fprintf(stderr, "echo_np: np_open: %s\n", strerror(-rc));
        return 1;
    }
    for (;;) {
        np_fd *c;
        rc = np_accept(ls, &c, NULL, NULL);
        if (rc < 0) {
            if (rc == -EINTR || rc == -ECONNABORTED) continue;
            fprintf(stderr, "echo_np: np_accept: %s\n", strerror(-rc));
            np_sleep(10 * 1000000LL); /* EMFILE & co: back off */
            continue;
        }
        setsockopt(np_fileno(c), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* A small handler: a 6 KiB packed stack holds its 4 KiB buffer. */
        rc = np_go_stack(serve, c, 6 * 1024);
        if (rc < 0) {
            fprintf(stderr, "echo_np: np_go: %s\n", strerror(-rc));
            np_close(c);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: echo_np PORT\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int port = atoi(argv[1]);
    int rc = np_main(accept_loop, &port);
    if (rc < 0) fprintf(stderr, "echo_np: np_main: %s\n", strerror(-rc));
    return 1;
}
