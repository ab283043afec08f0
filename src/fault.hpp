// Fault injection, for tests only: built with -DNP_FAULTS (make FAULTS=1,
// make check-faults), absent otherwise -- without NP_FAULTS this header
// declares nothing and src/sys.hpp's wrappers are the bare system calls.
//
// NP_FAULT_RATE (a probability, 0 to 1; default 0: nothing injected) and
// NP_FAULT_SEED (default 1) drive one process-wide generator: a given seed
// gives the same sequence of decisions, though which call meets which
// decision depends on the scheduling.  NP_FAULT_KINDS picks the kinds
// (comma separated; default all): eintr, eagain, short, reset, emfile,
// enomem, uring.  At exit a line on stderr counts what was injected
// (NP_FAULT_QUIET=1: not).
//
// Only what the kernel may return for that call, with its semantics:
//
//   - Reads, writes, accept and connect are faulted only on descriptors
//     registered with a port (np_open, np_accept): the engine's own
//     (eventfds, epoll sets, the ring, /proc, stderr) fail only as the
//     kernel makes them.
//   - EINTR: before reads, writes and accept, as a signal would; connect's
//     replaces the EINPROGRESS of a connection the real call started (as
//     a signal during a blocking connect: it goes on asynchronously, and
//     its end makes the socket writable; before the call, or after one that
//     connected at once, no edge would ever come); close's after the real
//     close (Linux frees the descriptor anyway); blocking
//     waits (epoll_pwait, ppoll, io_uring's wait, futex, clock_nanosleep)
//     only when they would block.
//   - Short reads and writes: the real call with fewer bytes (at least
//     one), on stream sockets and pipes only (a short datagram read would
//     truncate it).  A short write wrote its prefix.
//   - ECONNRESET: stream sockets only, and sticky as a real reset is: the
//     socket is shut down both ways as it is reported (later reads see
//     end of file, writes EPIPE, the peer end of file).  The caller is told,
//     so a test can tell a connection lost to a reset from lost data.
//   - EAGAIN: only under the poll(2) port.  The epoll and io_uring ports
//     are edge triggered: after an EAGAIN they wait for the next edge, which
//     never comes when the data is queued already -- the kernel never says
//     EAGAIN then, and the engine (like Go's) relies on it.
//   - EMFILE (accept; the connection stays queued, as with a real EMFILE),
//     ENOMEM (accept, recvfrom, recvmsg, sendto, sendmsg), ENOBUFS (sendto,
//     sendmsg): before the call, nothing consumed.
//   - io_uring submissions: -EAGAIN or -EBUSY, the entries left queued in
//     the ring (the kernel took none).
#pragma once
#ifdef NP_FAULTS
#include <cstddef>
#include <linux/futex.h>
#include <sys/uio.h>

namespace np {

enum FaultOp : unsigned {
    kFaultRead,    // read, readv
    kFaultRecv,    // recvfrom, recvmsg
    kFaultWrite,   // write, writev
    kFaultSend,    // sendto, sendmsg
    kFaultAccept,
    kFaultOps,
};

// Before an I/O call on fd moving *n bytes: the errno to fail it with, or
// 0 to make the call, with *n maybe shortened (never below 1).
int fault_io(FaultOp op, int fd, size_t *n);
// connect(2) said EINPROGRESS: true to report EINTR instead.
bool fault_connect(int fd);
// A blocking wait is about to be made: true to fail it with EINTR first.
bool fault_wait();
// close(2) was made: true to report EINTR.
bool fault_close();
// An io_uring submission: -EAGAIN, -EBUSY, or 0 to submit.
int fault_submit();
// The poll(2) port is in use: a spurious EAGAIN is seen (level triggered).
void fault_level_triggered();
// Shorten iov[0..cnt) to n bytes (n >= 1, less than the total) in tmp,
// non-empty entries only; returns the new count.
constexpr int kFaultIov = 8;
int fault_clip_iov(const struct iovec *iov, int cnt, size_t n, struct iovec *tmp);
size_t fault_iov_len(const struct iovec *iov, int cnt);

} // namespace np
#endif
