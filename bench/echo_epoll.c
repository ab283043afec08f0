/*
 * echo_epoll.c - hand-written epoll echo server (the floor to beat).
 *
 * Serves: TCP echo on 127.0.0.1:PORT with one thread per CPU it may run on
 * (its affinity: under taskset, as many as that allows), each
 * with its own SO_REUSEPORT listener and its own edge-triggered epoll
 * set; no per-connection buffer (one 16 KiB scratch buffer per thread,
 * heap storage only for a write the kernel did not take at once).
 * Usage: echo_epoll PORT [THREADS]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct pending { size_t off, len; char data[]; };

static int port;
static struct pending **pend; /* by fd; only for blocked writes */
static int maxfd;

static int make_listener(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 65535) < 0) {
        perror("echo_epoll: bind/listen");
        exit(1);
    }
    return fd;
}

static void drop(int fd) {
    free(pend[fd]);
    pend[fd] = NULL;
    close(fd); /* also leaves the epoll set */
}

/* Flush a blocked write; 1 done, 0 still blocked, -1 error. */
static int flush(int fd) {
    struct pending *p = pend[fd];
    while (p->off < p->len) {
        ssize_t k = write(fd, p->data + p->off, p->len - p->off);
        if (k > 0) { p->off += (size_t)k; continue; }
        if (k < 0 && errno == EINTR) continue;
        return (k < 0 && errno == EAGAIN) ? 0 : -1;
    }
    free(p);
    pend[fd] = NULL;
    return 1;
}

static void serve(int fd, char *buf, size_t cap) {
    if (pend[fd]) {
        int r = flush(fd);
        if (r < 0) { drop(fd); return; }
        if (r == 0) return; /* backpressure: read no more until drained */
    }
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) { drop(fd); return; }
        size_t off = 0;
        while (off < (size_t)n) {
            ssize_t k = write(fd, buf + off, (size_t)n - off);
            if (k > 0) { off += (size_t)k; continue; }
            if (k < 0 && errno == EINTR) continue;
            if (k < 0 && errno == EAGAIN) break;
            drop(fd);
            return;
        }
        if (off < (size_t)n) {
            struct pending *p = malloc(sizeof *p + (size_t)n - off);
            if (!p) { drop(fd); return; }
            p->off = 0;
            p->len = (size_t)n - off;
            memcpy(p->data, buf + off, p->len);
            pend[fd] = p;
            return; /* EPOLLOUT (edge) resumes us */
        }
    }
}

static void *loop(void *arg) {
    (void)arg;
    static __thread char buf[16384];
    int lfd = make_listener();
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd != lfd) { serve(fd, buf, sizeof buf); continue; }
            for (;;) {
                int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (c < 0) {
                    if (errno == EINTR || errno == ECONNABORTED) continue;
                    if (errno != EAGAIN) perror("echo_epoll: accept");
                    break; /* EAGAIN; or EMFILE: the edge comes back */
                }
                if (c >= maxfd) { close(c); continue; }
                int one = 1;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                struct epoll_event ce = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                         .data.fd = c};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce) < 0) { close(c); continue; }
                serve(c, buf, sizeof buf); /* data may already be there */
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: echo_epoll PORT [THREADS]\n");
        return 2;
    }
    port = atoi(argv[1]);
    long nt = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0) nt = CPU_COUNT(&cpus);
    if (argc > 2) nt = atol(argv[2]);
    if (nt < 1) nt = 1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    maxfd = rl.rlim_cur > 1 << 20 ? 1 << 20 : (int)rl.rlim_cur;
    pend = calloc((size_t)maxfd, sizeof *pend);
    pthread_t t;
    for (long i = 1; i < nt; i++) pthread_create(&t, NULL, loop, NULL);
    loop(NULL);
    return 0;
}
