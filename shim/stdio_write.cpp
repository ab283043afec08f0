// stdio's writes to sockets, pipes and terminals.  libc flushes a FILE's
// buffer with its own write, which the library never sees: a thread
// writing to a socket whose peer did not read held its worker, and a
// thread-per-connection server writing with fprintf to slow clients held
// one OS thread each, until sysmon could add no more.  Waiting for room
// first is not enough: a blocking write waits for all of it, not for
// some room.  So the calls that may flush are interposed, and when they
// would write, glibc's own steps run here (fileops.c: _IO_new_file_xsputn,
// _IO_new_file_overflow, new_do_write, _IO_new_file_write, genops.c's
// _IO_default_xsputn), on the FILE's public fields, with the library's
// write, which parks while the file is full.  The bytes, the writes they
// go in, the buffer left behind and the results are glibc's.  A call that
// only fills the buffer (most of them) goes to libc after a look at two
// pointers.  printf and its kin make their text aside when the buffer is
// nearly full, then put it as fputs does.
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

#include "fd_table.hpp"
#include "real.hpp"
#include "shim.hpp"
#include "stdio.hpp"

extern "C" int __vsnprintf_chk(char *, size_t, int, size_t, const char *, va_list);

namespace shim {
namespace {

// n bytes go into a fully buffered stream's room (the common case, a look
// with no call, before the lock).
inline bool fits(FILE *fp, size_t n) {
    return (fp->_flags & (kPutting | kLineBuf | kUnbuffered)) == kPutting && fp->_IO_write_base &&
           size_t(fp->_IO_write_end - fp->_IO_write_ptr) >= n;
}

// Whether putting s[0, n) on fp may make libc write: false only when it
// surely goes into the buffer (glibc's xsputn); a look before the lock.
inline bool may_write(FILE *fp, const char *s, size_t n) {
    int f = fp->_flags;
    if (!(f & kPutting) || !fp->_IO_write_base || (f & kUnbuffered)) return true;
    if (f & kLineBuf) return size_t(fp->_IO_buf_end - fp->_IO_write_ptr) < n || memchr(s, '\n', n);
    return size_t(fp->_IO_write_end - fp->_IO_write_ptr) < n;
}

inline bool pending(FILE *fp) { return (fp->_flags & kPutting) && fp->_IO_write_ptr > fp->_IO_write_base; }

// _IO_new_file_write: all of it, through write(2) as interposed (io.cpp):
// a green thread parks while the file is full, within SO_SNDTIMEO; an
// O_NONBLOCK file says EAGAIN, as it does to libc.
size_t file_write(FILE *fp, const char *p, size_t n) {
    size_t to_do = n;
    while (to_do > 0) {
        ssize_t c = write(fp->_fileno, p, to_do);
        if (c < 0) {
            fp->_flags |= kErrSeen;
            break;
        }
        to_do -= size_t(c);
        p += c;
    }
    n -= to_do;
    if (fp->_offset >= 0) fp->_offset += off64_t(n);
    return n;
}

// new_do_write: the buffer is empty after it, whatever went.
size_t do_write(FILE *fp, const char *data, size_t to_do) {
    if (fp->_flags & kAppending) {
        fp->_offset = -1;
    } else if (fp->_IO_read_end != fp->_IO_write_base) {
        off64_t pos = lseek64(fp->_fileno, fp->_IO_write_base - fp->_IO_read_end, SEEK_CUR);
        if (pos == -1) return 0;
        fp->_offset = pos;
    }
    size_t count = file_write(fp, data, to_do);
    fp->_IO_read_base = fp->_IO_read_ptr = fp->_IO_read_end = fp->_IO_buf_base;
    fp->_IO_write_base = fp->_IO_write_ptr = fp->_IO_buf_base;
    fp->_IO_write_end =
        fp->_mode <= 0 && (fp->_flags & (kLineBuf | kUnbuffered)) ? fp->_IO_buf_base : fp->_IO_buf_end;
    return count;
}

// _IO_do_write of what the buffer holds (_IO_do_flush): 0 or EOF.
int flush(FILE *fp) {
    size_t to_do = size_t(fp->_IO_write_ptr - fp->_IO_write_base);
    return to_do == 0 || do_write(fp, fp->_IO_write_base, to_do) == to_do ? 0 : EOF;
}

// _IO_new_file_overflow.  A stream not yet putting is set up by libc's
// own (nothing is pending then, so it writes nothing), or refused
// (EBADF, a stream not open for writing).
int overflow(FILE *fp, int ch) {
    if (!(fp->_flags & kPutting) || !fp->_IO_write_base)
        if (real.__overflow(fp, EOF) == EOF) return EOF;
    if (ch == EOF) return flush(fp);
    if (fp->_IO_write_ptr == fp->_IO_buf_end && flush(fp) == EOF) return EOF;
    *fp->_IO_write_ptr++ = char(ch);
    if ((fp->_flags & kUnbuffered) || ((fp->_flags & kLineBuf) && ch == '\n'))
        if (flush(fp) == EOF) return EOF;
    return (unsigned char)ch;
}

// __overflow, what putc calls on a full buffer: orients the stream first.
int overflow_byte(FILE *fp, int ch) {
    if (fp->_mode == 0) fwide(fp, -1);
    return overflow(fp, ch);
}

// _IO_default_xsputn: what fits, the rest a byte at a time.
size_t default_xsputn(FILE *fp, const char *s, size_t n) {
    size_t more = n;
    for (;;) {
        if (fp->_IO_write_ptr < fp->_IO_write_end) {
            size_t count = size_t(fp->_IO_write_end - fp->_IO_write_ptr);
            if (count > more) count = more;
            memcpy(fp->_IO_write_ptr, s, count);
            fp->_IO_write_ptr += count;
            s += count;
            more -= count;
        }
        if (more == 0 || overflow(fp, (unsigned char)*s++) == EOF) break;
        more--;
    }
    return n - more;
}

// _IO_new_file_xsputn: the bytes taken (buffered or written), or
// size_t(EOF) when all were buffered but the flush they called for failed.
size_t xsputn(FILE *fp, const char *s, size_t n) {
    if (n == 0) return 0;
    size_t to_do = n, count = 0;
    bool must_flush = false;
    if ((fp->_flags & kLineBuf) && (fp->_flags & kPutting)) {
        count = size_t(fp->_IO_buf_end - fp->_IO_write_ptr);
        if (count >= n)
            for (const char *p = s + n; p > s;)
                if (*--p == '\n') {
                    count = size_t(p - s) + 1;
                    must_flush = true;
                    break;
                }
    } else if (fp->_IO_write_end > fp->_IO_write_ptr) {
        count = size_t(fp->_IO_write_end - fp->_IO_write_ptr);
    }
    if (count > 0) {
        if (count > to_do) count = to_do;
        memcpy(fp->_IO_write_ptr, s, count);
        fp->_IO_write_ptr += count;
        s += count;
        to_do -= count;
    }
    if (to_do || must_flush) {
        if (overflow(fp, EOF) == EOF) return to_do == 0 ? size_t(EOF) : n - to_do;
        size_t block = size_t(fp->_IO_buf_end - fp->_IO_buf_base);
        size_t direct = to_do - (block >= 128 ? to_do % block : 0);
        if (direct) {
            count = do_write(fp, s, direct);
            to_do -= count;
            if (count < direct) return n - to_do;
        }
        if (to_do) to_do -= default_xsputn(fp, s + direct, to_do);
    }
    return n - to_do;
}

// fwrite, fputs and puts on a stream that parks, under its lock.
size_t sputn(FILE *fp, const char *s, size_t n) {
    if (fp->_mode == 0) fwide(fp, -1);
    return xsputn(fp, s, n);
}

size_t fwrite_parked(const void *p, size_t size, size_t count, size_t n, FILE *fp) {
    size_t w = sputn(fp, static_cast<const char *>(p), n);
    return w == n || w == size_t(EOF) ? count : w / size;
}

int fputs_parked(const char *s, size_t n, FILE *fp) { return sputn(fp, s, n) == n ? 1 : EOF; }

[[gnu::noinline]] size_t fwrite_slow(const void *p, size_t size, size_t count, size_t n, FILE *fp, bool lock) {
    if (!may_write(fp, static_cast<const char *>(p), n) || !parks(fp))
        return lock ? real.fwrite(p, size, count, fp) : real.fwrite_unlocked(p, size, count, fp);
    if (!lock) return fwrite_parked(p, size, count, n, fp);
    Locked l(fp);
    return fwrite_parked(p, size, count, n, fp);
}

[[gnu::noinline]] int fputs_slow(const char *s, size_t n, FILE *fp, bool lock) {
    if (!may_write(fp, s, n) || !parks(fp)) return lock ? real.fputs(s, fp) : real.fputs_unlocked(s, fp);
    if (!lock) return fputs_parked(s, n, fp);
    Locked l(fp);
    return fputs_parked(s, n, fp);
}

// putc's macro: into the buffer, or through __overflow.
int putc_parked(int c, FILE *fp) {
    if (fp->_IO_write_ptr < fp->_IO_write_end) return (unsigned char)(*fp->_IO_write_ptr++ = char(c));
    return overflow_byte(fp, (unsigned char)c);
}

// What a flush of fp (fflush, fclose) sends goes here first: 0, or EOF
// as libc's flush would have failed (the buffer then emptied, as libc's).
int flush_parked(FILE *fp) { return pending(fp) ? flush(fp) : 0; }

// The text of a printf, into out[0, room): its length as vsnprintf's.
int format(char *out, size_t room, int flag, const char *fmt, va_list ap) {
    va_list c;
    va_copy(c, ap);
    int n = flag < 0 ? vsnprintf(out, room, fmt, c) : __vsnprintf_chk(out, room, flag, room, fmt, c);
    va_end(c);
    return n;
}

// A printf's text is not known before it is made, and libc's flushes in
// the middle of it.  A fully buffered stream with room for kAside bytes
// or more is libc's: the text most likely fits, and that costs nothing
// (a longer one may flush inside libc and block the worker, as before).
// With less room the text is made in the buffer, where it stays if it
// fits (as libc's would); else, and on a line-buffered or unbuffered
// stream, it is made aside (on the stack, or in memory of its own when
// longer) and put as one piece, flushed as glibc would (a line-buffered
// stream's lines at once).  A format that fails (EOVERFLOW, EILSEQ) is
// left to libc, which fails the same way.
constexpr size_t kAside = 1024;

inline bool fully_buffered(FILE *fp) {
    return (fp->_flags & (kPutting | kLineBuf | kUnbuffered)) == kPutting && fp->_IO_write_base;
}
inline bool roomy(FILE *fp) { return fits(fp, kAside); }

int vfprintf_parked(FILE *fp, int flag, const char *fmt, va_list ap) {
    Locked l(fp);
    if (fp->_mode == 0) fwide(fp, -1);
    if (fully_buffered(fp) && fp->_IO_write_ptr < fp->_IO_write_end) {
        size_t room = size_t(fp->_IO_write_end - fp->_IO_write_ptr);
        int n = format(fp->_IO_write_ptr, room, flag, fmt, ap);
        if (n >= 0 && size_t(n) < room) {
            fp->_IO_write_ptr += n;
            return n;
        }
    }
    char local[kAside], *text = local;
    int n = format(local, sizeof local, flag, fmt, ap);
    if (n >= 0 && size_t(n) >= sizeof local) {
        text = static_cast<char *>(malloc(size_t(n) + 1));
        if (!text) return -1; // ENOMEM, as libc's own allocation would say
        n = format(text, size_t(n) + 1, flag, fmt, ap);
    }
    int r;
    if (n < 0) r = flag < 0 ? real.vfprintf(fp, fmt, ap) : real.__vfprintf_chk(fp, flag, fmt, ap);
    else r = sputn(fp, text, size_t(n)) == size_t(n) ? n : -1;
    if (text != local) free(text);
    return r;
}

int vfprintf_common(FILE *fp, int flag, const char *fmt, va_list ap) {
    if (roomy(fp) || !parks(fp)) return flag < 0 ? real.vfprintf(fp, fmt, ap) : real.__vfprintf_chk(fp, flag, fmt, ap);
    return vfprintf_parked(fp, flag, fmt, ap);
}

// The one-byte writers: room in the buffer, or a stream that does not
// park, is libc's; a full buffer's flush is ours.
[[gnu::noinline]] int put_byte_slow(int c, FILE *fp, bool lock, int (*libc)(int, FILE *)) {
    if (!parks(fp)) return libc(c, fp);
    if (!lock) return putc_parked(c, fp);
    Locked l(fp);
    return putc_parked(c, fp);
}

// (the first path out of line as fwrite's)
inline int put_byte(int c, FILE *fp, bool lock, int (*libc)(int, FILE *)) {
    if (fp->_IO_write_ptr < fp->_IO_write_end) return libc(c, fp);
    return put_byte_slow(c, fp, lock, libc);
}

int libc_putchar(int c, FILE *) { return real.putchar(c); }
int libc_putchar_unlocked(int c, FILE *) { return real.putchar_unlocked(c); }

} // namespace
} // namespace shim

using namespace shim;

extern "C" {

// The calls that only fill the buffer go on to libc at once; the rest
// (out of line, so that the first path saves no registers) are ours.
size_t fwrite(const void *p, size_t size, size_t count, FILE *fp) {
    size_t n;
    if (__builtin_mul_overflow(size, count, &n) || !n || fits(fp, n)) return real.fwrite(p, size, count, fp);
    return fwrite_slow(p, size, count, n, fp, true);
}
size_t fwrite_unlocked(const void *p, size_t size, size_t count, FILE *fp) {
    size_t n;
    if (__builtin_mul_overflow(size, count, &n) || !n || fits(fp, n))
        return real.fwrite_unlocked(p, size, count, fp);
    return fwrite_slow(p, size, count, n, fp, false);
}

int fputs(const char *s, FILE *fp) {
    size_t n = strlen(s);
    if (fits(fp, n)) return real.fputs(s, fp);
    return fputs_slow(s, n, fp, true);
}
int fputs_unlocked(const char *s, FILE *fp) {
    size_t n = strlen(s);
    if (fits(fp, n)) return real.fputs_unlocked(s, fp);
    return fputs_slow(s, n, fp, false);
}

int puts(const char *s) {
    size_t n = strlen(s);
    FILE *fp = stdout;
    // A line-buffered stdout always writes: the line's end.
    if ((!(fp->_flags & kLineBuf) && !may_write(fp, s, n + 1)) || !parks(fp)) return real.puts(s);
    Locked l(fp);
    if (sputn(fp, s, n) != n || putc_parked('\n', fp) == EOF) return EOF;
    return n + 1 > INT_MAX ? INT_MAX : int(n + 1);
}

int fputc(int c, FILE *fp) { return put_byte(c, fp, true, real.fputc); }
int putc(int c, FILE *fp) { return put_byte(c, fp, true, real.putc); }
int _IO_putc(int c, FILE *fp) { return put_byte(c, fp, true, real._IO_putc); }
int putchar(int c) { return put_byte(c, stdout, true, libc_putchar); }
int fputc_unlocked(int c, FILE *fp) { return put_byte(c, fp, false, real.fputc_unlocked); }
int putc_unlocked(int c, FILE *fp) { return put_byte(c, fp, false, real.putc_unlocked); }
int putchar_unlocked(int c) { return put_byte(c, stdout, false, libc_putchar_unlocked); }

// What the putc_unlocked macro calls on a full buffer (sed, sort, grep).
int __overflow(FILE *fp, int ch) {
    if (!parks(fp)) return real.__overflow(fp, ch);
    return overflow_byte(fp, ch);
}

int vfprintf(FILE *fp, const char *fmt, va_list ap) { return vfprintf_common(fp, -1, fmt, ap); }
int vprintf(const char *fmt, va_list ap) { return vfprintf_common(stdout, -1, fmt, ap); }
int fprintf(FILE *fp, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf_common(fp, -1, fmt, ap);
    va_end(ap);
    return r;
}
int printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf_common(stdout, -1, fmt, ap);
    va_end(ap);
    return r;
}
// _FORTIFY_SOURCE's (Debian builds with it): the flag goes to the format.
int __vfprintf_chk(FILE *fp, int flag, const char *fmt, va_list ap) { return vfprintf_common(fp, flag, fmt, ap); }
int __vprintf_chk(int flag, const char *fmt, va_list ap) { return vfprintf_common(stdout, flag, fmt, ap); }
int __fprintf_chk(FILE *fp, int flag, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf_common(fp, flag, fmt, ap);
    va_end(ap);
    return r;
}
int __printf_chk(int flag, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf_common(stdout, flag, fmt, ap);
    va_end(ap);
    return r;
}

// fflush(NULL) (and exit) flush every stream inside libc: left to it.
int fflush(FILE *fp) {
    if (!fp || !pending(fp) || !parks(fp)) return real.fflush(fp);
    Locked l(fp);
    return flush_parked(fp) == EOF ? EOF : real.fflush_unlocked(fp);
}
int fflush_unlocked(FILE *fp) {
    if (!fp || !pending(fp) || !parks(fp)) return real.fflush_unlocked(fp);
    return flush_parked(fp) == EOF ? EOF : real.fflush_unlocked(fp);
}

// fclose sends what the stream holds (ours, parked), then its number
// leaves the table before libc closes the file (a parked call on it wakes
// with EBADF).  A failed flush is fclose's failure, as in libc.
int fclose(FILE *f) {
    int err = -1;
    if (on() && f) {
        if (pending(f) && parks(f)) {
            Locked l(f);
            if (flush_parked(f) == EOF) err = errno;
        }
        int fd = fileno(f);
        if (fd >= 0 && (f->_flags & kFileBuf)) fd_forget(fd);
    }
    int r = real.fclose(f);
    if (err < 0) return r;
    errno = err;
    return EOF;
}

} // extern "C"
