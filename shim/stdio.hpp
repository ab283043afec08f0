// What the stdio reads (stdio.cpp) and writes (stdio_write.cpp) share:
// glibc's FILE flags, which streams park, and the FILE's lock.
#pragma once
#include <cstdio>

#include "shim.hpp"

namespace shim {

// glibc's FILE flags (libio.h); the layout is its ABI since 2.1.
constexpr int kUnbuffered = 0x0002, kNoReads = 0x0004, kNoWrites = 0x0008, kEofSeen = 0x0010, kErrSeen = 0x0020,
              kLinked = 0x0080, kInBackup = 0x0100, kLineBuf = 0x0200, kPutting = 0x0800, kAppending = 0x1000,
              kFileBuf = 0x2000;

// A stream whose reads and writes may park: a green thread's,
// byte-oriented, on a file that parks here.  A file's stream (fopen,
// fdopen, popen): open_memstream's has 0 for its number, and its writes
// go to memory.
inline bool parks(FILE *fp) {
    return fp && green() && (fp->_flags & kFileBuf) && fp->_fileno >= 0 && fp->_mode <= 0 &&
           parks_here(fp->_fileno);
}

class Locked {
  public:
    explicit Locked(FILE *fp) : fp_(fp) { flockfile(fp); }
    ~Locked() { funlockfile(fp_); }
    Locked(const Locked &) = delete;
    Locked &operator=(const Locked &) = delete;

  private:
    FILE *fp_;
};

} // namespace shim
