/* A forking server: an accept loop on 127.0.0.1:PORT that forks a child per
 * connection; the child echoes until the peer closes, then exits; the parent
 * reaps its children from a SIGCHLD handler (waitpid WNOHANG).
 *
 *   fork_echo PORT [LIFETIME_S]
 *
 * Prints "listening port=PORT pid=PID" once it listens.  Ends on SIGTERM
 * (after it has reaped its children and printed "reaped=N"), or by itself
 * after LIFETIME_S seconds (default 120).  Plain C11; nothing of netpoll. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t reaped, stop;

static void on_chld(int sig)
{
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        reaped++;
    errno = saved;
}

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static void echo(int fd)
{
    char buf[16384];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return;
            off += w;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [LIFETIME_S]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    alarm(argc > 2 ? (unsigned)atoi(argv[2]) : 120);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_chld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    struct sigaction st = {0};
    st.sa_handler = on_term;   /* no SA_RESTART: accept returns EINTR */
    sigemptyset(&st.sa_mask);
    sigaction(SIGTERM, &st, NULL);

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 4096) != 0) {
        perror("fork_echo: listen");
        return 1;
    }
    printf("listening port=%d pid=%ld\n", port, (long)getpid());
    fflush(stdout);

    long forked = 0;
    while (!stop) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("fork_echo: accept");
            return 1;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(ls);
            signal(SIGTERM, SIG_DFL);
            echo(c);
            _exit(0);
        }
        if (pid < 0)
            perror("fork_echo: fork");
        else
            forked++;
        close(c);
    }
    /* Reap what is left (the children end when their peers close). */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old);
    pid_t p;
    while ((p = waitpid(-1, NULL, 0)) > 0 || (p < 0 && errno == EINTR))
        if (p > 0)
            reaped++;
    printf("forked=%ld reaped=%ld\n", forked, (long)reaped);
    return forked == reaped ? 0 : 1;
}
