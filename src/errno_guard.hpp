// The ABI never changes errno, whatever the system calls inside did.
#pragma once
#include <cerrno>

namespace np {

struct ErrnoGuard {
    int saved = errno;
    ~ErrnoGuard() { errno = saved; }
};

} // namespace np
