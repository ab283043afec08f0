// The program's descriptors as the shim sees them: what kind of file each
// is (so an operation is made non-blocking the right way per call), its
// registration with the poller, and SO_RCVTIMEO/SO_SNDTIMEO as deadlines.
// The file's own flags stay the program's: O_NONBLOCK is asked of the
// kernel (F_GETFL) only when an operation would block.
#pragma once
#include <atomic>
#include <cstdint>
#include <sys/socket.h>

#include <netpoll.h>

namespace shim {

enum Kind : uint8_t {
    kUnknown = 0,
    kStream,   // a stream socket: MSG_DONTWAIT per call, full writes looped
    kDgram,    // another socket: MSG_DONTWAIT per call
    kPollable, // pipe, FIFO, tty, character device, eventfd, timerfd,
               // signalfd, inotify: readiness, then the call
    kDirect,   // regular file, directory, ...: the call as it is
    kInternal, // the engine's own (poller, wake-up): never the program's
};

struct Fd {
    std::atomic<np_fd *> pd{nullptr};   // registration (kBusy while made)
    // Moved on by every close of the number (fd_forget): a call that saw it
    // move between its attempt and its park was in the call when the file
    // was closed, and must not park on the file the number names now.
    std::atomic<uint32_t> closes{0};
    // Threads waiting on the file through epoll sets of their own
    // (park_private): a close wakes them through fd_closing.
    std::atomic<uint32_t> private_waits{0};
    // close(2), dup2(2) or dup3(2) of the number under way (a count, and
    // kCloseWaiters while a thread waits for them): the threads the close
    // woke wait until the kernel's close is done (fd_close_wait).
    std::atomic<uint32_t> closing{0};
    // A futex lock held from a readiness check to the call it allows
    // (io.cpp's ReadyTurn): 0 free, 1 held, 2 held with waiters.
    std::atomic<uint32_t> ready_turn{0};
    std::atomic<uint8_t> kind{kUnknown};
    // Reads shorter than this fail at once (EINVAL) on the event files of
    // kPollable (eventfd, timerfd: 8; signalfd: 128): no readiness first.
    uint8_t min_read = 0;
    // A pipe read and written per call without blocking (RWF_NOWAIT): no
    // readiness first, no window in which another process takes what was
    // ready.  Set for every pipe and FIFO, cleared by the first call that
    // the file refuses (a named FIFO, a kernel before 6.0).
    std::atomic<bool> nowait{false};
    // A character device that is not a terminal (/dev/random, /dev/null):
    // written as a regular file is, with no readiness first, since its
    // poll need not say POLLOUT (/dev/random's never does) and its writes
    // do not wait.  Its reads still wait for readiness (a tun device's).
    bool write_direct = false;
    // A TCP or unix stream socket: a read that comes back short has emptied
    // it, so the next read waits for readiness first (io.cpp's drained()).
    bool drains = false;
    // A connection accept4() gave this process, not duplicated since (dup,
    // dup2, dup3, F_DUPFD, SCM_RIGHTS): while no other process shares our
    // files, its close is the last one, so a SO_LINGER wait is ours to make
    // (io.cpp's linger_park).
    bool accepted = false;
    // That read's npshim_io_events, as (events << 1) | 1; 0: none.
    std::atomic<uint64_t> drained{0};
    int64_t rcvtimeo = 0, sndtimeo = 0; // ns, 0 none
    // The timeouts as read at this timeouts_gen: they are the socket's,
    // so a setsockopt through any dup of it moves that on.
    std::atomic<uint32_t> timeo_gen{0};
    // The program's O_NONBLOCK as last read, valid while nonblock_gen is
    // the table's (any F_SETFL or FIONBIO in the process moves that on).
    std::atomic<uint32_t> nb_gen{0};
    bool nb = false;
};

void fd_flags_changed();              // after an F_SETFL or FIONBIO
bool tcp_ulp(int fd);                 // kernel TLS or another upper layer on it
void fd_timeouts_changed();           // after a SO_RCVTIMEO or SO_SNDTIMEO
// ...which under a seccomp filter (not asked of the kernel then) is kept here.
void fd_timeout_set(int fd, int opt, const void *val, socklen_t len);
// Another process may now share our open files (we forked or spawned, or
// are a forked child): their O_NONBLOCK and timeouts can change without a
// call here, so from now on they are read from the kernel when they count.
void fd_files_shared();
bool fd_files_are_shared();           // since a fork or spawn, either side
// SO_RCVTIMEO (NP_READ) or SO_SNDTIMEO (NP_WRITE) of a socket, in ns (0
// none), as it is now: read again if another process may have set it.
int64_t fd_timeout(int fd, Fd *e, int mode);

Fd *fd_entry(int fd);                 // null beyond the table
Kind fd_kind(int fd, Fd *e);          // classifies on first use
np_fd *fd_registered(int fd, Fd *e);  // registers on first use; null if it cannot be
np_fd *fd_registered_now(Fd *e);      // the registration if made, else null
void fd_reset(int fd);                // a new file under this number
int fd_forget(int fd);                // unregister (waking waiters) before a close
// Around a close of the program's (or a dup2 onto the number): fd_forget
// wakes the threads parked on the file (EBADF) and waits for them to leave
// their calls, so they run while the file is still open.  Those calls
// return only after fd_close_end, when the number is closed: the next call
// the program makes there finds it closed, as after the kernel's close,
// which is one step.  (Python polls a socket with a timeout, then reads
// it: the read was made on the file still open, said EAGAIN, and the poll
// after it waited out its timeout on a file closed under it.)
void fd_close_begin(Fd *e);
void fd_close_end(Fd *e);
void fd_close_wait(int fd);           // after a call a close ended (EBADF)
extern void (*fd_closing)(int fd);    // called by fd_forget while private_waits
bool fd_prog_nonblock(int fd);        // the program's O_NONBLOCK on the file
// O_NONBLOCK on fd's file for one call that has no per-call flag for it
// (connect, sendfile, a socket's side of splice), the file's flags put
// back after it: the kernel's socket side looks at the file's flags only.
// Returns the flags to put back with fd_nonblock_end, -1 when nothing is
// to be put back (set already, or the file's flags cannot be had or set:
// the call then blocks as it would have).
int fd_nonblock_begin(int fd);
void fd_nonblock_end(int fd, int saved);
// A green thread's blocking call on fd parks (io.cpp): its kind in *k.
bool parks_as(int fd, Kind *k);
// Start the runtime, noting the descriptors it opens as internal.
int fd_start_runtime();
// A forked child: the registrations were the parent's runtime's, and so
// are the engine's descriptors it inherited (closed here).
void fd_after_fork();

} // namespace shim
