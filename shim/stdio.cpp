// stdio's reads of sockets, pipes and terminals.  libc fills a FILE's
// buffer with its own read, which the library never sees: a thread in
// fgets on a socket held its worker, and a thread-per-connection server
// that reads its requests so stopped taking connections once its idle
// clients held every worker sysmon may add.  So the calls that fill the
// buffer are interposed: when the buffer is empty, the thread parks until
// the file has something to read, and then libc's read returns at once.
// The line and block readers go round that for each fill, as glibc's own
// loops do (iogetline.c, iogetdelim.c, fileops.c), on the FILE's public
// fields, the ones the getc macro uses.  A fill that the wait cannot
// cover (a stream switching back from ungetc's area, a wide stream) is
// left to libc, and blocks its worker as before.
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>

#include "fd_table.hpp"
#include "real.hpp"
#include "shim.hpp"
#include "stdio.hpp"

// libio's own steps, exported since glibc 2.2.5 (no header declares them
// since 2.28): what __underflow does first, and fread's direct read.
extern "C" int _IO_switch_to_get_mode(FILE *);
extern "C" int _IO_doallocbuf(FILE *);
extern "C" ssize_t _IO_file_read(FILE *, void *, ssize_t);

namespace shim {
namespace {

size_t buffered(FILE *fp) {
    return fp->_IO_read_ptr < fp->_IO_read_end ? size_t(fp->_IO_read_end - fp->_IO_read_ptr) : 0;
}

// Before libc fills fp's empty buffer: park until there is something to
// read.  A line-buffered or unbuffered stream flushes stdout first, as
// glibc's fill does before its read (the prompt before the answer).
// false: the wait failed as libc's read would have (SO_RCVTIMEO, a
// handler without SA_RESTART, a close); fp has its error flag, errno why.
bool wait_in(FILE *fp) {
    int r = wait_readable(fp->_fileno);
    if (r == 0) return true;
    fp->_flags |= kErrSeen;
    errno = -r;
    return false;
}

bool fill_wait(FILE *fp) {
    if (buffered(fp) || (fp->_flags & (kNoReads | kEofSeen | kInBackup))) return true;
    // A read-write stream (fdopen(fd, "r+"), /dev/tty) that was written
    // to: glibc's fill sends what it holds first, the request (or the
    // prompt) before its answer is awaited.  Under the lock: the one-byte
    // readers wait before they take it.
    if (fp->_flags & kPutting) {
        flockfile(fp);
        int r = fp->_flags & kPutting ? _IO_switch_to_get_mode(fp) : 0;
        funlockfile(fp);
        if (r == EOF) return false;
    }
    // The last fill filled the whole buffer: more is most likely there
    // (a stream being copied), and the check would cost a system call a
    // fill.  A short fill emptied the file: the next one waits first.
    if (fp->_IO_buf_end - fp->_IO_buf_base > 1 && fp->_IO_read_base == fp->_IO_buf_base &&
        fp->_IO_read_end == fp->_IO_buf_end)
        return true;
    if ((fp->_flags & (kLineBuf | kUnbuffered)) && fp != stdout &&
        (stdout->_flags & (kLinked | kNoWrites | kLineBuf)) == (kLinked | kLineBuf))
        fflush(stdout);
    return wait_in(fp);
}

// Fills an empty buffer: false at the end, or on an error.
bool fill(FILE *fp) { return fill_wait(fp) && real.__underflow(fp) != EOF; }

// glibc's fgets: at most n - 1 bytes, up to and with the newline.  With
// the buffer's size (__fgets_chk), at most that many, and a line that
// fills it is an overflow, as glibc's check finds it.
char *fgets_parked(char *s, int n, FILE *fp, size_t size = SIZE_MAX) {
    int old_error = fp->_flags & kErrSeen;
    fp->_flags &= ~kErrSeen;
    size_t count = 0, left = size_t(n) - 1 < size ? size_t(n) - 1 : size;
    while (left) {
        size_t have = buffered(fp);
        if (!have) {
            if (!fill(fp)) break;
            continue;
        }
        size_t take = have < left ? have : left;
        auto *nl = static_cast<char *>(memchr(fp->_IO_read_ptr, '\n', take));
        if (nl) take = size_t(nl - fp->_IO_read_ptr) + 1;
        memcpy(s + count, fp->_IO_read_ptr, take);
        fp->_IO_read_ptr += take;
        count += take;
        left -= take;
        if (nl) break;
    }
    char *r = nullptr;
    if (count && !((fp->_flags & kErrSeen) && errno != EAGAIN)) {
        if (count >= size) __chk_fail();
        s[count] = '\0';
        r = s;
    }
    fp->_flags |= old_error;
    return r;
}

// glibc's getdelim: the line grows in the program's own allocator.
ssize_t getdelim_parked(char **line, size_t *n, int delim, FILE *fp) {
    if (fp->_flags & kErrSeen) return -1;
    if (!*line || !*n) {
        *n = 120;
        if (!(*line = static_cast<char *>(malloc(*n)))) return -1;
    }
    size_t cur = 0;
    if (!buffered(fp) && !fill(fp)) return -1;
    for (;;) {
        size_t len = buffered(fp);
        auto *t = static_cast<char *>(memchr(fp->_IO_read_ptr, delim, len));
        if (t) len = size_t(t - fp->_IO_read_ptr) + 1;
        size_t needed = cur + len + 1;
        if (needed > *n) {
            if (needed < 2 * *n) needed = 2 * *n;
            auto *bigger = static_cast<char *>(realloc(*line, needed));
            if (!bigger) return -1;
            *line = bigger;
            *n = needed;
        }
        memcpy(*line + cur, fp->_IO_read_ptr, len);
        fp->_IO_read_ptr += len;
        cur += len;
        if (t || !fill(fp)) break;
    }
    (*line)[cur] = '\0';
    return ssize_t(cur);
}

// glibc's fread (_IO_file_xsgetn): what is buffered, then a fill while
// less than a buffer is wanted, else a read straight into the caller's
// memory of a whole number of blocks, which glibc makes whatever the end
// flag says (a terminal's next line after its ^D).  Each waits first, then
// libc's read returns what there is: all of it, as a datagram must be read
// (a SOCK_SEQPACKET record larger than the buffer), not what fits.
size_t fread_parked(void *p, size_t size, size_t count, FILE *fp) {
    size_t want = size * count, got = 0;
    auto *d = static_cast<char *>(p);
    if (!fp->_IO_buf_base) {
        if (fp->_IO_save_base) return real.fread_unlocked(p, size, count, fp); // ungetc's area, no buffer yet
        _IO_doallocbuf(fp);
    }
    while (got < want) {
        if (size_t have = buffered(fp)) {
            size_t take = have < want - got ? have : want - got;
            memcpy(d + got, fp->_IO_read_ptr, take);
            fp->_IO_read_ptr += take;
            got += take;
            continue;
        }
        size_t block = size_t(fp->_IO_buf_end - fp->_IO_buf_base);
        if ((fp->_flags & kInBackup) || want - got < block) {
            if (!fill(fp)) break;
            continue;
        }
        if (!wait_in(fp)) break;
        fp->_IO_read_base = fp->_IO_read_ptr = fp->_IO_read_end = fp->_IO_buf_base;
        fp->_IO_write_base = fp->_IO_write_ptr = fp->_IO_write_end = fp->_IO_buf_base;
        size_t n = want - got;
        if (block >= 128) n -= n % block;
        ssize_t r = _IO_file_read(fp, d + got, ssize_t(n));
        if (r <= 0) {
            fp->_flags |= r == 0 ? kEofSeen : kErrSeen;
            break;
        }
        got += size_t(r);
        if (fp->_offset != -1) fp->_offset += r;
    }
    return got == want ? count : got / size;
}

bool mul_ok(size_t size, size_t count) {
    size_t all;
    return size && count && !__builtin_mul_overflow(size, count, &all);
}

// A one-byte read: the fill's wait first, then libc's.
int byte_wait(FILE *fp) { return !parks(fp) || buffered(fp) || fill_wait(fp) ? 0 : EOF; }

// The scanf family: the first fill waits (a request's number on a socket);
// one a conversion needs midway is libc's, and may block its worker.
// glibc's headers send every scanf a program calls to these names.
using VScan = int (*)(FILE *, const char *, va_list);
int vscan(FILE *fp, const char *fmt, va_list ap) {
    static VScan fn = reinterpret_cast<VScan>(dlsym(RTLD_NEXT, "__isoc99_vfscanf"));
    if (byte_wait(fp)) return EOF;
    return fn(fp, fmt, ap);
}
} // namespace
} // namespace shim

using namespace shim;

extern "C" {

char *fgets(char *s, int n, FILE *fp) {
    if (n <= 1 || !parks(fp)) return real.fgets(s, n, fp);
    Locked l(fp);
    return fgets_parked(s, n, fp);
}
char *fgets_unlocked(char *s, int n, FILE *fp) {
    if (n <= 1 || !parks(fp)) return real.fgets_unlocked(s, n, fp);
    return fgets_parked(s, n, fp);
}

// The fortified entry points (_FORTIFY_SOURCE, a buffer of known size
// and a length that is not): glibc's checks, then the same reads.
char *__fgets_chk(char *s, size_t size, int n, FILE *fp) {
    if (n <= 0) return nullptr;
    if (n <= 1 || !parks(fp)) return real.__fgets_chk(s, size, n, fp);
    Locked l(fp);
    return fgets_parked(s, n, fp, size);
}
char *__fgets_unlocked_chk(char *s, size_t size, int n, FILE *fp) {
    if (n <= 0) return nullptr;
    if (n <= 1 || !parks(fp)) return real.__fgets_unlocked_chk(s, size, n, fp);
    return fgets_parked(s, n, fp, size);
}

ssize_t getdelim(char **line, size_t *n, int delim, FILE *fp) {
    if (!line || !n || !parks(fp)) return real.getdelim(line, n, delim, fp);
    Locked l(fp);
    return getdelim_parked(line, n, delim, fp);
}
ssize_t __getdelim(char **line, size_t *n, int delim, FILE *fp) { return getdelim(line, n, delim, fp); }
ssize_t getline(char **line, size_t *n, FILE *fp) { return getdelim(line, n, '\n', fp); }

size_t fread(void *p, size_t size, size_t count, FILE *fp) {
    if (!mul_ok(size, count) || !parks(fp)) return real.fread(p, size, count, fp);
    Locked l(fp);
    return fread_parked(p, size, count, fp);
}
size_t fread_unlocked(void *p, size_t size, size_t count, FILE *fp) {
    if (!mul_ok(size, count) || !parks(fp)) return real.fread_unlocked(p, size, count, fp);
    return fread_parked(p, size, count, fp);
}

size_t __fread_chk(void *p, size_t len, size_t size, size_t count, FILE *fp) {
    size_t all;
    if (__builtin_mul_overflow(size, count, &all) || all > len) __chk_fail();
    return fread(p, size, count, fp);
}
size_t __fread_unlocked_chk(void *p, size_t len, size_t size, size_t count, FILE *fp) {
    size_t all;
    if (__builtin_mul_overflow(size, count, &all) || all > len) __chk_fail();
    return fread_unlocked(p, size, count, fp);
}

// The one-byte readers wait before they lock: what another thread takes
// meanwhile makes libc's read wait in the kernel, as without the library.
int fgetc(FILE *fp) { return byte_wait(fp) ? EOF : real.fgetc(fp); }
int getc(FILE *fp) { return byte_wait(fp) ? EOF : real.getc(fp); }
int _IO_getc(FILE *fp) { return byte_wait(fp) ? EOF : real._IO_getc(fp); }
int fgetc_unlocked(FILE *fp) { return byte_wait(fp) ? EOF : real.fgetc_unlocked(fp); }
int getc_unlocked(FILE *fp) { return byte_wait(fp) ? EOF : real.getc_unlocked(fp); }
int getchar(void) { return byte_wait(stdin) ? EOF : real.getchar(); }
int getchar_unlocked(void) { return byte_wait(stdin) ? EOF : real.getchar_unlocked(); }
// What the getc_unlocked and getchar_unlocked macros call on an empty buffer.
int __uflow(FILE *fp) { return byte_wait(fp) ? EOF : real.__uflow(fp); }
int __underflow(FILE *fp) { return byte_wait(fp) ? EOF : real.__underflow(fp); }

int __isoc99_vfscanf(FILE *fp, const char *fmt, va_list ap) { return shim::vscan(fp, fmt, ap); }
int __isoc99_vscanf(const char *fmt, va_list ap) { return shim::vscan(stdin, fmt, ap); }
int __isoc99_fscanf(FILE *fp, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = shim::vscan(fp, fmt, ap);
    va_end(ap);
    return r;
}
int __isoc99_scanf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = shim::vscan(stdin, fmt, ap);
    va_end(ap);
    return r;
}

// freopen closes the stream's file inside libc and opens the new one,
// mostly at the same number: that number goes from the table first.
FILE *freopen(const char *path, const char *mode, FILE *fp) {
    static auto fn = reinterpret_cast<FILE *(*)(const char *, const char *, FILE *)>(dlsym(RTLD_NEXT, "freopen"));
    if (on() && fp && fileno(fp) >= 0) fd_forget(fileno(fp));
    return fn(path, mode, fp);
}
FILE *freopen64(const char *path, const char *mode, FILE *fp) {
    static auto fn = reinterpret_cast<FILE *(*)(const char *, const char *, FILE *)>(dlsym(RTLD_NEXT, "freopen64"));
    if (on() && fp && fileno(fp) >= 0) fd_forget(fileno(fp));
    return fn(path, mode, fp);
}

} // extern "C"
