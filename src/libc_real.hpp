// What the engine needs from libc beyond a raw system call, taken from libc
// itself: a preload shim interposes pthread_create, pthread_mutex_* and the
// like, and must not see the engine's own threads or locks.
#pragma once
#include <csignal>
#include <pthread.h>

namespace np {

// A detached OS thread of the engine's (worker, sysmon, helper), created
// with every signal blocked: signals are for the program's threads, and the
// thread keeps that mask.  0 or an error number, as pthread_create.
int start_os_thread(void *(*fn)(void *), void *arg, pthread_t *out = nullptr);
// The calling thread is inside start_os_thread's pthread_create (or
// jemalloc's): npshim_os_thread_starting.
bool os_thread_starting();

// libc's sigaction: a preload shim's would keep the handler for itself and
// run it on a program thread.
int real_sigaction(int sig, const struct sigaction *act, struct sigaction *old);

} // namespace np
