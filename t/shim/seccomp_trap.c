/* A seccomp filter that traps system calls (SECCOMP_RET_TRAP), as
 * Firefox's sandbox does: the kernel raises SIGSYS at the call, and the
 * handler emulates it by writing the result into the context's registers.
 * The handler reports each trap with a send on a socket it never used
 * before (Firefox's reporter does), so a send that looks at its socket with
 * a trapped call (fstat) must not trap again from inside the handler.  A
 * thread's fstat must return what the handler wrote; writes on sockets made
 * after the filter must work.  x86-64 only (elsewhere: reported skipped). */
#include "shim_test.h"
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#if defined(__x86_64__)
static int report[2];
static atomic_int traps, nested, depth;

static void on_sigsys(int sig, siginfo_t *info, void *ucv)
{
    (void)sig;
    ucontext_t *uc = ucv;
    if (atomic_fetch_add(&depth, 1) > 0) atomic_fetch_add(&nested, 1);
    atomic_fetch_add(&traps, 1);
    uc->uc_mcontext.gregs[REG_RAX] = -EPERM; /* the emulated call's result */
    if (atomic_load(&depth) == 1) {
        int nr = info->si_syscall;
        /* Firefox's reporter: a message on its socket, from the handler */
        struct iovec iov = {&nr, sizeof nr};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
        sendmsg(report[0], &m, MSG_NOSIGNAL);
    }
    atomic_fetch_sub(&depth, 1);
}

static int install_filter(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fstat, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_newfstatat, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    /* every thread of the process, as Firefox does (TSYNC) */
    return (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
}

static void *traps_in_thread(void *arg)
{
    (void)arg;
    struct stat st;
    errno = 0;
    int r = fstat(0, &st);
    CHECK(r == -1 && errno == EPERM, "fstat under the filter: %d (%s), want -1 EPERM from the handler", r,
          strerror(errno));
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
    char c = 'x';
    CHECK(write(sv[0], &c, 1) == 1, "write on a socket made after the filter: %s", strerror(errno));
    CHECK(read(sv[1], &c, 1) == 1 && c == 'x', "read it back: %s", strerror(errno));
    close(sv[0]);
    close(sv[1]);
    return NULL;
}

static void test_trap(void)
{
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, report) == 0, "socketpair: %s", strerror(errno));
    struct sigaction sa = {0};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, NULL);
    if (install_filter() != 0) {
        printf("seccomp filter not installed (%s): skipped\n", strerror(errno));
        return;
    }
    pthread_t t;
    CHECK(pthread_create(&t, NULL, traps_in_thread, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);
    CHECK(atomic_load(&nested) == 0, "%d SIGSYS raised inside the SIGSYS handler", atomic_load(&nested));
    int nr = 0;
    ssize_t n = recv(report[1], &nr, sizeof nr, MSG_DONTWAIT);
    CHECK(n == sizeof nr && (nr == __NR_fstat || nr == __NR_newfstatat), "the handler's report: %zd bytes, nr %d",
          n, nr);
}
#endif

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    st_watchdog(60);
#if defined(__x86_64__)
    static const struct st_test tests[] = {{"trap", test_trap}};
    st_run_tests(tests, sizeof tests / sizeof tests[0]);
#else
    printf("seccomp_trap: skipped, x86-64 only\n");
#endif
    return st_finish("seccomp_trap");
}
