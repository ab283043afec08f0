// What the engine needs from libc beyond a raw system call, taken from libc
// itself: a preload shim interposes pthread_create, pthread_mutex_* and the
// like, and must not see the engine's own threads or locks.
#pragma once
#include <csignal>
#include <cstdio>
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

// libc's fwrite: a preload shim's parks a green thread whose stream's file
// is full, and the engine's writers (np_dump) must not park.
size_t real_fwrite(const void *p, size_t size, size_t n, FILE *f);

// A line for the engine's own messages, on standard error: formatted here
// and written with one system call, never through stdio (a shim's
// fprintf is the program's, and may park).
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

} // namespace np
