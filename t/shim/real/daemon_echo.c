/* A classic daemon: double fork, setsid, chdir /, closes every descriptor up
 * to sysconf(_SC_OPEN_MAX), then serves an echo on 127.0.0.1:PORT with a
 * thread per connection, and writes its pid to PIDFILE once it listens.
 *
 *   daemon_echo PORT PIDFILE [LIFETIME_S]
 *
 * The first process exits 0 once the daemon has written its pid file (1 if
 * the daemon failed to start).  The daemon ends on SIGTERM, or by itself
 * after LIFETIME_S seconds (default 120), so a lost one cannot linger.
 * Plain C11 and pthreads; nothing of netpoll. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void *serve(void *arg)
{
    int fd = (int)(long)arg;
    char buf[16384];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT PIDFILE [LIFETIME_S]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    const char *pidfile = argv[2];
    unsigned lifetime = argc > 3 ? (unsigned)atoi(argv[3]) : 120;
    char pidpath[4096];
    if (pidfile[0] != '/') {   /* chdir("/") comes: make it absolute first */
        char cwd[2048];
        if (!getcwd(cwd, sizeof cwd))
            return 1;
        snprintf(pidpath, sizeof pidpath, "%s/%s", cwd, pidfile);
    } else {
        snprintf(pidpath, sizeof pidpath, "%s", pidfile);
    }

    /* The first process waits for word from the daemon on a pipe. */
    int ready[2];
    if (pipe(ready) != 0)
        return 1;
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid > 0) {
        close(ready[1]);
        char c = 0;
        ssize_t n;
        while ((n = read(ready[0], &c, 1)) < 0 && errno == EINTR)
            ;
        int st;
        waitpid(pid, &st, 0);   /* the middle process */
        if (n == 1 && c == 'R')
            return 0;
        fprintf(stderr, "daemon_echo: the daemon did not start\n");
        return 1;
    }
    close(ready[0]);
    if (setsid() < 0)
        _exit(1);
    signal(SIGHUP, SIG_IGN);
    pid = fork();
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0);   /* the middle process: the daemon is no session leader */

    /* The daemon. */
    umask(022);
    if (chdir("/") != 0)
        _exit(1);
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 1048576)
        maxfd = 1048576;
    for (long fd = 0; fd < maxfd; fd++)
        if (fd != ready[1])
            close((int)fd);
    int nul = open("/dev/null", O_RDWR);   /* becomes 0 */
    if (nul != 0)
        _exit(1);
    if (dup2(0, 1) != 1 || dup2(0, 2) != 2)
        _exit(1);
    signal(SIGPIPE, SIG_IGN);
    alarm(lifetime);

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 4096) != 0)
        _exit(1);

    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", pidpath);
    FILE *f = fopen(tmp, "w");
    if (!f)
        _exit(1);
    fprintf(f, "%ld\n", (long)getpid());
    if (fclose(f) != 0 || rename(tmp, pidpath) != 0)
        _exit(1);
    if (write(ready[1], "R", 1) != 1)
        _exit(1);
    close(ready[1]);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
                continue;
            _exit(1);
        }
        pthread_t t;
        if (pthread_create(&t, &attr, serve, (void *)(long)c) != 0)
            close(c);
    }
}
