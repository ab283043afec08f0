// The real libc functions behind the interposed ones, found once with
// RTLD_NEXT (libfaketime's way): the shim calls these, never its own names.
#pragma once
#include <cstdarg>
#include <cstdio>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

namespace shim {

struct Real {
#define SHIM_REAL(ret, name, args) ret(*name) args;
#include "real.def"
#undef SHIM_REAL
};

extern Real real;
bool real_init(); // false if any is missing

} // namespace shim
