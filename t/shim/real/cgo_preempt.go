// Built with cgo by t/shim/real/run.sh: a dynamically linked Go program,
// whose threads come from pthread_create.  Goroutines compute in tight
// loops (Go preempts them with SIGURG, the shim's own signal) while the
// garbage collector stops the world, then it waits for SIGTERM through
// os/signal.  Under nprun the shim must step aside with one line: Go's
// runtime schedules its own threads.
package main

/*
static int twice(int x) { return 2 * x; }
*/
import "C"

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

var sink [4]uint64

func main() {
	for i := 0; i < 4; i++ {
		go func(i int) {
			for {
				sink[i]++
			}
		}(i)
	}
	for i := 0; i < 20; i++ {
		runtime.GC()
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	fmt.Println("ready", int(C.twice(21)))
	<-ch
	fmt.Println("got SIGTERM")
}
