/* The kernel's ID of the OS thread running the caller, from
 * /proc/thread-self: under the shim, gettid() names the green thread
 * (netpoll-preload(7)), and this the worker it runs on now. */
#ifndef SHIM_OS_TID_H
#define SHIM_OS_TID_H
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static inline pid_t st_os_tid(void)
{
    char buf[64];
    ssize_t n = readlink("/proc/thread-self", buf, sizeof buf - 1);
    if (n <= 0) return -1;
    buf[n] = '\0';
    const char *p = strrchr(buf, '/');
    return p ? (pid_t)atoi(p + 1) : -1;
}
#endif
