/* dl_lock_lib: a library dl_lock links with, then loads again under another
 * name with dlopen(3), so that its constructor runs under the dynamic
 * linker's lock.  Loaded with the program (DL_LOCK_FDS unset), the
 * constructor does nothing.  Loaded by dlopen, it writes DL_LOCK_STARTED
 * bytes to the started pipe, then parks reading one byte from the gate pipe
 * (DL_LOCK_FDS="gate_read started_write"), and only then sets
 * dl_lock_ready. */
#include <stdlib.h>
#include <unistd.h>

int dl_lock_ready;

__attribute__((constructor)) static void dl_lock_ctor(void)
{
    const char *fds = getenv("DL_LOCK_FDS");
    if (!fds) return;
    char *end;
    int gate = (int)strtol(fds, &end, 10), started = (int)strtol(end, NULL, 10);
    const char *n = getenv("DL_LOCK_STARTED");
    for (int i = n ? atoi(n) : 0; i > 0; i--)
        if (write(started, "s", 1) != 1) abort();
    char c;
    if (read(gate, &c, 1) != 1) abort();
    dl_lock_ready = 1;
}

int *dl_lock_flag(void) { return &dl_lock_ready; }
