/* go_no_note: as go_library, with Go's runtime in a library that carries
 * no Go note (go_no_note_lib.c: built with -ldflags=-buildid=, it exports
 * cgo's crosscall2 all the same).  A cgo program built so ran on green
 * threads: Go's SIGURG preemption, a raw tgkill to the OS thread, was taken
 * for the shim's poke, and a spinning goroutine with GOMAXPROCS=1 hung it.
 * The shim must step aside for it too; here each thread checks that its
 * own SIGURG, sent the way Go sends it, runs its handler at once. */
#define GO_TEST "go_no_note"
#define GO_LINKED go_no_note_linked
#include "go_library.c"
