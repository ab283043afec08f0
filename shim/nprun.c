/* nprun: run a program under the netpoll preload shim.
 *
 *   nprun [-p PROCS] [-s STACK] [--poller NAME] [--trace] [--dump-on SIG]
 *         [--] command [args...]
 *
 * Sets LD_PRELOAD (the shim first, then whatever the user had) and the
 * NP_* variables the runtime reads, refuses programs LD_PRELOAD cannot
 * reach (statically linked, or built for another architecture than the
 * shim), then execvp()s the command, so its exit status is nprun's.
 * Usage errors exit 2; a command that cannot be run exits 127 (not found)
 * or 126, as shells do.  No dependency on the library. */

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPRUN_VERSION "1.0.0"
#define SHIM_NAME "libnetpoll-preload.so"
#define MIN_PROCS 1
#define MAX_PROCS 256
#define MIN_STACK (16ull << 10)
#define MAX_STACK (1ull << 30)

static const char usage_text[] =
    "Usage: nprun [OPTION]... [--] COMMAND [ARG]...\n"
    "Run COMMAND with its threads turned into netpoll green threads\n"
    "(LD_PRELOAD=" SHIM_NAME ").\n"
    "\n"
    "  -p, --procs N        worker OS threads, 1..256 (NP_PROCS)\n"
    "  -s, --stack SIZE     green thread stack, 16K..1G; K, M, G suffixes\n"
    "                       (NP_STACK_SIZE)\n"
    "      --poller NAME    epoll, io_uring or poll (NP_POLLER)\n"
    "      --trace          trace the poller on stderr (NPDEBUG=netpoll=1)\n"
    "      --dump-on SIG    dump the green threads on signal SIG, a name\n"
    "                       (QUIT, SIGUSR1) or a number (NP_DUMP_SIGNAL)\n"
    "  -h, --help           print this help and exit\n"
    "      --version        print the version and exit\n"
    "\n"
    "The shim is " SHIM_NAME " in ../lib next to nprun, or $NPRUN_PRELOAD.\n"
    "Exit status: COMMAND's; 2 for a usage error or a program the shim cannot\n"
    "reach (statically linked); 126 if COMMAND cannot be run, 127 if not found.\n";

static void die(int status, const char *fmt, ...) {
    va_list ap;
    fputs("nprun: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(status);
}

/* ---- values ------------------------------------------------------------ */

/* Digits only (no sign, no space), optionally one K/M/G suffix when
 * suffix is true.  False on anything else or on overflow. */
static bool parse_number(const char *s, bool suffix, unsigned long long *out) {
    if (*s < '0' || *s > '9') return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return false;
    unsigned shift = 0;
    if (suffix) {
        switch (*end) {
        case 'k': case 'K': shift = 10; end++; break;
        case 'm': case 'M': shift = 20; end++; break;
        case 'g': case 'G': shift = 30; end++; break;
        default: break;
        }
    }
    if (*end) return false;
    if (shift && v > (~0ull >> shift)) return false;
    *out = v << shift;
    return true;
}

static const struct { const char *name; int num; } signals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},       {"QUIT", SIGQUIT}, {"ILL", SIGILL},
    {"TRAP", SIGTRAP}, {"ABRT", SIGABRT},     {"IOT", SIGIOT},   {"BUS", SIGBUS},
    {"FPE", SIGFPE},   {"KILL", SIGKILL},     {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2}, {"PIPE", SIGPIPE},     {"ALRM", SIGALRM}, {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},
    {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},   {"XCPU", SIGXCPU},
    {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
    {"IO", SIGIO},     {"POLL", SIGPOLL},     {"SYS", SIGSYS},
#ifdef SIGPWR
    {"PWR", SIGPWR},
#endif
#ifdef SIGSTKFLT
    {"STKFLT", SIGSTKFLT},
#endif
};

/* QUIT, SIGQUIT, quit or 3; a signal the dump can be taken on: not one
 * that cannot be caught, not a fault (its handler returns to the faulting
 * instruction), not glibc's own 32 and 33.  0 if not. */
static int parse_signal(const char *s) {
    unsigned long long v;
    if (parse_number(s, false, &v)) {
        if (v < 1 || v > (unsigned long long)SIGRTMAX) return 0;
    } else {
        const char *name = strncasecmp(s, "SIG", 3) == 0 ? s + 3 : s;
        v = 0;
        for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
            if (strcasecmp(name, signals[i].name) == 0) v = (unsigned long long)signals[i].num;
        if (!v) return 0;
    }
    if (v == SIGKILL || v == SIGSTOP || v == SIGSEGV || v == SIGBUS || v == SIGFPE || v == SIGILL ||
        v == SIGTRAP || v == SIGSYS || (v > 31 && v < (unsigned long long)SIGRTMIN))
        return 0;
    return (int)v;
}

/* ---- the shim ---------------------------------------------------------- */

/* The shim's absolute path: $NPRUN_PRELOAD, else ../lib next to nprun. */
static char *find_shim(const char *argv0) {
    const char *env = getenv("NPRUN_PRELOAD");
    char guess[PATH_MAX + sizeof "/../lib/" SHIM_NAME];
    const char *want;
    if (env && *env) {
        want = env;
    } else {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
            self[n] = '\0';
        } else if (strchr(argv0, '/') && realpath(argv0, self)) {
            /* no /proc: argv[0] is as good a guess as there is */
        } else {
            die(2, "cannot tell where nprun is (no /proc/self/exe); set NPRUN_PRELOAD");
        }
        char *slash = strrchr(self, '/');
        if (slash) *slash = '\0';
        snprintf(guess, sizeof guess, "%s/../lib/%s", self, SHIM_NAME);
        want = guess;
    }
    char *path = realpath(want, NULL);
    struct stat st;
    if (!path || stat(path, &st) != 0)
        die(2, "preload library %s: %s%s", want, strerror(errno),
            env && *env ? " (from NPRUN_PRELOAD)" : "; set NPRUN_PRELOAD");
    if (!S_ISREG(st.st_mode)) die(2, "preload library %s: not a regular file", path);
    /* LD_PRELOAD splits on ':' and ' ': such a path cannot be passed. */
    if (strpbrk(path, ": ")) die(2, "preload library %s: LD_PRELOAD cannot carry a path with ':' or spaces", path);
    return path;
}

/* ---- the command ------------------------------------------------------- */

static bool executable_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* The file execvp would run, or NULL (then exec reports the problem). */
static char *resolve(const char *cmd) {
    if (!*cmd) return NULL;
    if (strchr(cmd, '/')) return strdup(cmd);
    const char *path = getenv("PATH");
    if (!path) path = "/bin:/usr/bin"; /* glibc's execvp default */
    size_t clen = strlen(cmd);
    for (const char *p = path;; p++) {
        const char *e = strchr(p, ':');
        size_t dlen = e ? (size_t)(e - p) : strlen(p);
        char *cand = malloc(dlen + clen + 3);
        if (!cand) return NULL;
        if (dlen == 0)
            snprintf(cand, clen + 3, "./%s", cmd); /* empty entry: the current directory */
        else
            snprintf(cand, dlen + clen + 2, "%.*s/%s", (int)dlen, p, cmd);
        if (executable_file(cand)) return cand;
        free(cand);
        if (!e) return NULL;
        p = e;
    }
}

enum elf_kind { ELF_OTHER, ELF_DYNAMIC, ELF_STATIC };

struct elf_info {
    enum elf_kind kind;
    unsigned char cls;   /* ELFCLASS32 / ELFCLASS64 */
    unsigned machine;    /* e_machine */
};

static bool read_at(int fd, void *buf, size_t n, off_t off) {
    return pread(fd, buf, n, off) == (ssize_t)n;
}

/* Reads the ELF header and program headers of path.  ELF_OTHER for a
 * script, a file of the other byte order, anything unreadable: exec will
 * run it or say why not.  A program without PT_INTERP is static (static-pie
 * included: ET_DYN with no interpreter). */
static struct elf_info elf_inspect(const char *path) {
    struct elf_info info = {ELF_OTHER, 0, 0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return info;
    union { Elf32_Ehdr e32; Elf64_Ehdr e64; unsigned char id[EI_NIDENT]; } h;
    memset(&h, 0, sizeof h);
    ssize_t got = pread(fd, &h, sizeof h, 0);
    union { uint16_t u; unsigned char b[2]; } order = {1};
    unsigned char native = order.b[0] ? ELFDATA2LSB : ELFDATA2MSB;
    if (got < EI_NIDENT || memcmp(h.id, ELFMAG, SELFMAG) != 0 || h.id[EI_DATA] != native)
        goto out;
    unsigned type, phentsize, phnum;
    uint64_t phoff;
    if (h.id[EI_CLASS] == ELFCLASS64 && got >= (ssize_t)sizeof(Elf64_Ehdr)) {
        type = h.e64.e_type, info.machine = h.e64.e_machine;
        phoff = h.e64.e_phoff, phentsize = h.e64.e_phentsize, phnum = h.e64.e_phnum;
        if (phentsize < sizeof(Elf64_Phdr)) goto out;
    } else if (h.id[EI_CLASS] == ELFCLASS32 && got >= (ssize_t)sizeof(Elf32_Ehdr)) {
        type = h.e32.e_type, info.machine = h.e32.e_machine;
        phoff = h.e32.e_phoff, phentsize = h.e32.e_phentsize, phnum = h.e32.e_phnum;
        if (phentsize < sizeof(Elf32_Phdr)) goto out;
    } else {
        goto out;
    }
    info.cls = h.id[EI_CLASS];
    if ((type != ET_EXEC && type != ET_DYN) || phnum == PN_XNUM) goto out;
    bool interp = false;
    for (unsigned i = 0; i < phnum && !interp; i++) {
        off_t off = (off_t)(phoff + (uint64_t)i * phentsize);
        uint32_t ptype;
        if (info.cls == ELFCLASS64) {
            Elf64_Phdr ph;
            if (!read_at(fd, &ph, sizeof ph, off)) goto out;
            ptype = ph.p_type;
        } else {
            Elf32_Phdr ph;
            if (!read_at(fd, &ph, sizeof ph, off)) goto out;
            ptype = ph.p_type;
        }
        interp = ptype == PT_INTERP;
    }
    info.kind = interp ? ELF_DYNAMIC : ELF_STATIC;
out:
    close(fd);
    return info;
}

/* Refuses, before exec, what LD_PRELOAD cannot reach; warns about what the
 * dynamic linker will run without it. */
static void check_target(const char *cmd, const char *shim) {
    char *path = resolve(cmd);
    if (!path) return;
    struct elf_info t = elf_inspect(path);
    if (t.kind == ELF_STATIC)
        die(2, "%s is statically linked; LD_PRELOAD cannot reach it", path);
    if (t.kind == ELF_DYNAMIC) {
        struct elf_info s = elf_inspect(shim);
        if (s.cls && (s.cls != t.cls || s.machine != t.machine))
            die(2, "%s is built for another architecture (ELF%d, machine %u) than %s "
                   "(ELF%d, machine %u); LD_PRELOAD cannot reach it",
                path, t.cls == ELFCLASS64 ? 64 : 32, t.machine, shim,
                s.cls == ELFCLASS64 ? 64 : 32, s.machine);
    }
    /* glibc's secure mode drops LD_PRELOAD (but for system libraries marked
     * set-user-ID) when exec changes the effective IDs. */
    struct stat st;
    if (stat(path, &st) == 0 &&
        (((st.st_mode & S_ISUID) && st.st_uid != getuid()) ||
         ((st.st_mode & S_ISGID) && (st.st_mode & S_IXGRP) && st.st_gid != getgid())))
        fprintf(stderr, "nprun: warning: %s is set-user-ID or set-group-ID; "
                        "the dynamic linker ignores LD_PRELOAD for it\n", path);
    free(path);
}

/* ---- options ----------------------------------------------------------- */

struct opts {
    const char *procs, *stack, *poller, *dump;
    bool trace;
};

/* Checks and stores the value of option opt (as the user spelled it). */
static void set_value(struct opts *o, char which, const char *opt, const char *val) {
    unsigned long long v;
    static char procs[24], stack[24], dump[24];
    switch (which) {
    case 'p':
        if (!parse_number(val, false, &v) || v < MIN_PROCS || v > MAX_PROCS)
            die(2, "bad value for %s: '%s' (expected %d..%d)", opt, val, MIN_PROCS, MAX_PROCS);
        snprintf(procs, sizeof procs, "%llu", v);
        o->procs = procs;
        break;
    case 's':
        if (!parse_number(val, true, &v) || v < MIN_STACK || v > MAX_STACK)
            die(2, "bad value for %s: '%s' (expected a size from 16K to 1G, e.g. 64K, 8M)", opt,
                val);
        snprintf(stack, sizeof stack, "%llu", v);
        o->stack = stack;
        break;
    case 'P':
        if (strcmp(val, "epoll") && strcmp(val, "io_uring") && strcmp(val, "poll"))
            die(2, "bad value for %s: '%s' (expected epoll, io_uring or poll)", opt, val);
        o->poller = val;
        break;
    case 'd': {
        int sig = parse_signal(val);
        if (!sig)
            die(2, "bad value for %s: '%s' (expected a catchable signal that is not a fault, "
                   "e.g. QUIT, SIGUSR1, 10)",
                opt, val);
        snprintf(dump, sizeof dump, "%d", sig);
        o->dump = dump;
        break;
    }
    }
}

static const struct { const char *name; char which; bool arg; } longopts[] = {
    {"procs", 'p', true}, {"stack", 's', true}, {"poller", 'P', true}, {"dump-on", 'd', true},
    {"trace", 't', false}, {"help", 'h', false}, {"version", 'V', false},
};

/* Returns the index of the command in argv. */
static int parse_args(int argc, char **argv, struct opts *o) {
    int i = 1;
    while (i < argc) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) return i + 1;
        if (a[0] != '-' || a[1] == '\0') return i;
        char which = 0;
        bool needs = false;
        const char *val = NULL;
        char opt[64];
        if (a[1] == '-') {
            const char *eq = strchr(a, '=');
            size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            for (size_t k = 0; k < sizeof longopts / sizeof longopts[0]; k++)
                if (strlen(longopts[k].name) == len && strncmp(a + 2, longopts[k].name, len) == 0)
                    which = longopts[k].which, needs = longopts[k].arg;
            if (!which) die(2, "unknown option '%.*s' (see nprun --help)", (int)(len + 2), a);
            snprintf(opt, sizeof opt, "--%.*s", (int)len, a + 2);
            if (eq && !needs) die(2, "option '%s' takes no value", opt);
            if (eq) val = eq + 1;
            i++;
        } else {
            /* -h, -p 2, -p2 (the value glued on). */
            char c = a[1];
            if (c == 'h') {
                which = 'h';
            } else if (c == 'p' || c == 's') {
                which = c, needs = true;
                if (a[2]) val = a + 2;
            } else {
                die(2, "unknown option '-%c' (see nprun --help)", c);
            }
            if (which == 'h' && a[2]) die(2, "unknown option '%s' (see nprun --help)", a);
            snprintf(opt, sizeof opt, "-%c", which);
            i++;
        }
        if (needs && !val) {
            if (i >= argc) die(2, "option '%s' needs a value (see nprun --help)", opt);
            val = argv[i++];
        }
        switch (which) {
        case 'h':
            fputs(usage_text, stdout);
            exit(fflush(stdout) == 0 ? 0 : 1);
        case 'V':
            puts("nprun (netpoll) " NPRUN_VERSION);
            exit(fflush(stdout) == 0 ? 0 : 1);
        case 't':
            o->trace = true;
            break;
        default:
            set_value(o, which, opt, val);
        }
    }
    return i;
}

/* ---- main -------------------------------------------------------------- */

static void set_env(const char *name, const char *value) {
    if (setenv(name, value, 1) != 0) die(2, "setenv %s: %s", name, strerror(errno));
}

int main(int argc, char **argv) {
    struct opts o = {0};
    int cmd = parse_args(argc, argv, &o);
    if (cmd >= argc) die(2, "missing command (see nprun --help)");

    char *shim = find_shim(argv[0]);
    check_target(argv[cmd], shim);

    /* Ours first: the shim must interpose before any other preload. */
    const char *old = getenv("LD_PRELOAD");
    if (old && *old) {
        size_t n = strlen(shim) + strlen(old) + 2;
        char *both = malloc(n);
        if (!both) die(2, "out of memory");
        snprintf(both, n, "%s:%s", shim, old);
        set_env("LD_PRELOAD", both);
    } else {
        set_env("LD_PRELOAD", shim);
    }
    if (o.procs) set_env("NP_PROCS", o.procs);
    if (o.stack) set_env("NP_STACK_SIZE", o.stack);
    if (o.poller) set_env("NP_POLLER", o.poller);
    if (o.dump) set_env("NP_DUMP_SIGNAL", o.dump);
    if (o.trace) {
        /* NPDEBUG is a comma-separated list; the last netpoll= wins. */
        const char *dbg = getenv("NPDEBUG");
        if (dbg && *dbg) {
            size_t n = strlen(dbg) + sizeof ",netpoll=1";
            char *both = malloc(n);
            if (!both) die(2, "out of memory");
            snprintf(both, n, "%s,netpoll=1", dbg);
            set_env("NPDEBUG", both);
        } else {
            set_env("NPDEBUG", "netpoll=1");
        }
    }

    fflush(stdout);
    execvp(argv[cmd], argv + cmd);
    int err = errno;
    fprintf(stderr, "nprun: %s: %s\n", argv[cmd], strerror(err));
    return err == ENOENT ? 127 : 126;
}
