// spawn.go - goroutine spawn+exit cost.
//
// Measures: ns per goroutine to start N goroutines running an empty
// function and wait for all of them with a sync.WaitGroup (default
// GOMAXPROCS).  Best of several rounds (the peer of spawn_np.c).
// Usage: spawn [n]   (default 1000000)
// Output: one line "go_spawn <ns_per_thread>".
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

func main() {
	n := 1000000
	if len(os.Args) > 1 {
		if v, err := strconv.Atoi(os.Args[1]); err == nil && v > 0 {
			n = v
		}
	}
	const rounds = 3
	best := 1e30
	for r := 0; r < rounds; r++ {
		var wg sync.WaitGroup
		t0 := time.Now()
		wg.Add(n)
		for i := 0; i < n; i++ {
			go wg.Done()
		}
		wg.Wait()
		per := float64(time.Since(t0).Nanoseconds()) / float64(n)
		if per < best {
			best = per
		}
	}
	fmt.Printf("go_spawn %.2f\n", best)
}
