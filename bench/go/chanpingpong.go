// chanpingpong.go - goroutine switch cost through unbuffered channels.
//
// Measures: ns per switch of a ping-pong between two goroutines over two
// unbuffered channels with GOMAXPROCS=1; each round trip is two switches.
// Best of several rounds (the peer of yield_np.c).
// Usage: chanpingpong [round_trips_per_round]   (default 2000000)
// Output: one line "go_chan <ns_per_switch>".
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

func main() {
	runtime.GOMAXPROCS(1)
	n := 2000000
	if len(os.Args) > 1 {
		if v, err := strconv.Atoi(os.Args[1]); err == nil && v > 0 {
			n = v
		}
	}
	const rounds = 5
	ping := make(chan int)
	pong := make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
		close(pong)
	}()
	ping <- 0 // warm up
	<-pong
	best := 1e30
	for r := 0; r < rounds; r++ {
		t0 := time.Now()
		for i := 0; i < n; i++ {
			ping <- i
			<-pong
		}
		per := float64(time.Since(t0).Nanoseconds()) / float64(2*n)
		if per < best {
			best = per
		}
	}
	close(ping)
	fmt.Printf("go_chan %.2f\n", best)
}
