/*
 * legacy_http.c - thread-per-connection HTTP/1.1 keep-alive hello-world
 * server, plain C11 and pthreads: no netpoll header, nothing of netpoll
 * linked.
 *
 * Serves: 127.0.0.1:PORT.  The main thread accepts; every connection gets
 * its own pthread with the default attributes, detached, doing blocking
 * read/write.  Request handling as bench/http_np.c and bench/go/httpraw.go:
 * a request is everything up to "\r\n\r\n" (no bodies); each gets
 * "200 OK" with the 13-byte body "Hello, World!" and the headers Go's
 * net/http sends (Content-Length, Content-Type, Date); "Connection: close"
 * closes after the reply; pipelined requests are answered in order.
 * Prints nothing but errors.
 * Usage: legacy_http PORT
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
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BODY "Hello, World!"

/* End of the first request head in buf[0..len): one past "\r\n\r\n", or 0. */
static size_t head_end(const char *buf, size_t len) {
    for (size_t i = 0; i + 4 <= len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n')
            return i + 4;
    return 0;
}

static int wants_close(const char *req, size_t len) {
    static const char key[] = "\r\nconnection:";
    for (size_t i = 0; i + sizeof key - 1 <= len; i++) {
        if (strncasecmp(req + i, key, sizeof key - 1) != 0) continue;
        const char *v = req + i + sizeof key - 1;
        while (*v == ' ') v++;
        return strncasecmp(v, "close", 5) == 0;
    }
    return 0;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void *serve(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[4096], resp[256];
    size_t len = 0, rlen = 0;
    time_t stamp = 0;
    for (;;) {
        size_t used = head_end(buf, len);
        if (!used) {
            if (len == sizeof buf) break; /* request head too large */
            ssize_t n = read(fd, buf + len, sizeof buf - len);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            len += (size_t)n;
            continue;
        }
        time_t now = time(NULL);
        if (now != stamp) { /* the reply only changes with the Date */
            struct tm tm;
            char date[64];
            gmtime_r(&now, &tm);
            strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
            rlen = (size_t)snprintf(resp, sizeof resp,
                                    "HTTP/1.1 200 OK\r\n"
                                    "Content-Length: %zu\r\n"
                                    "Content-Type: text/plain\r\n"
                                    "Date: %s\r\n\r\n" BODY,
                                    sizeof BODY - 1, date);
            stamp = now;
        }
        int close_after = wants_close(buf, used);
        if (write_all(fd, resp, rlen) < 0 || close_after) break;
        memmove(buf, buf + used, len - used);
        len -= used;
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: legacy_http PORT\n");
        return 2;
    }
    struct rlimit rl; /* as many descriptors as allowed */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (lfd < 0) {
        perror("legacy_http: socket");
        return 1;
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, SOMAXCONN) < 0) {
        perror("legacy_http: bind/listen");
        return 1;
    }
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            perror("legacy_http: accept");
            struct timespec ts = {0, 10000000}; /* EMFILE & co: back off */
            nanosleep(&ts, NULL);
            continue;
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        int rc = pthread_create(&t, NULL, serve, (void *)(intptr_t)c);
        if (rc != 0) {
            fprintf(stderr, "legacy_http: pthread_create: %s\n", strerror(rc));
            close(c);
            continue;
        }
        pthread_detach(t);
    }
}
