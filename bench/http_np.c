/*
 * http_np.c - minimal HTTP/1.1 keep-alive hello-world server on netpoll.
 *
 * Serves: 127.0.0.1:PORT, one green thread per connection.  A request is
 * everything up to "\r\n\r\n" (no body support, bodies are not expected);
 * each one gets "200 OK" with "Hello, World!" and the same header set Go's
 * net/http sends for the peer handler (Content-Length, Content-Type,
 * Date), so the bytes on the wire match.  "Connection: close" closes after
 * the reply; pipelined requests are answered in order.
 * The peers: go/http.go (net/http), go/httpraw.go (same parsing in Go).
 * Usage: http_np PORT
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
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BODY "Hello, World!"

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

static void serve(void *arg) {
    np_fd *c = arg;
    char buf[4096], resp[256];
    size_t len = 0, rlen = 0;
    time_t stamp = 0;
    for (;;) {
        char *end = len >= 4 ? memmem(buf, len, "\r\n\r\n", 4) : NULL;
        if (!end) {
            if (len == sizeof buf) break; /* request head too large */
            ssize_t n = np_read(c, buf + len, sizeof buf - len);
            if (n <= 0) break;
            len += (size_t)n;
            continue;
        }
        size_t used = (size_t)(end + 4 - buf);
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
        if (np_write(c, resp, rlen) != (ssize_t)rlen || close_after) break;
        memmove(buf, buf + used, len - used);
        len -= used;
    }
    np_close(c);
}

static int accept_loop(void *arg) {
    int port = *(int *)arg, one = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        perror("http_np: socket");
        return 1;
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 65535) < 0) {
        perror("http_np: bind/listen");
        return 1;
    }
    np_fd *ls;
    int rc = np_open(lfd, &ls);
    if (rc < 0) {
        fprintf(stderr, "http_np: np_open: %s\n", strerror(-rc));
        return 1;
    }
    for (;;) {
        np_fd *c;
        rc = np_accept(ls, &c, NULL, NULL);
        if (rc < 0) {
            if (rc == -EINTR || rc == -ECONNABORTED) continue;
            fprintf(stderr, "http_np: np_accept: %s\n", strerror(-rc));
            np_sleep(10 * 1000000LL); /* EMFILE & co: back off */
            continue;
        }
        setsockopt(np_fileno(c), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        rc = np_go(serve, c);
        if (rc < 0) {
            fprintf(stderr, "http_np: np_go: %s\n", strerror(-rc));
            np_close(c);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: http_np PORT\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int port = atoi(argv[1]);
    int rc = np_main(accept_loop, &port);
    if (rc < 0) fprintf(stderr, "http_np: np_main: %s\n", strerror(-rc));
    return 1;
}
