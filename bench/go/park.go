// park.go - memory held by parked goroutines.
//
// Measures: VmRSS after N goroutines are all blocked on one sync.Cond
// (the peer of park_np.c), in MiB, and KiB per goroutine over the RSS
// before spawning; then wakes them all and waits for them to end.
// Usage: park [n]   (default 1000000)
// Output: one line "go_park threads=N rss_mib=X kib_per_thread=Y".
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func rssKiB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmRSS:") {
			fs := strings.Fields(sc.Text())
			v, _ := strconv.ParseInt(fs[1], 10, 64)
			return v
		}
	}
	return -1
}

func main() {
	n := 1000000
	if len(os.Args) > 1 {
		if v, err := strconv.Atoi(os.Args[1]); err == nil && v > 0 {
			n = v
		}
	}
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	parked, release := 0, false
	var wg sync.WaitGroup
	before := rssKiB()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			mu.Lock()
			parked++
			for !release {
				cond.Wait()
			}
			parked--
			mu.Unlock()
			wg.Done()
		}()
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		mu.Lock()
		p := parked
		mu.Unlock()
		if p == n {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "park: only %d of %d parked\n", p, n)
			os.Exit(1)
		}
		time.Sleep(time.Millisecond)
	}
	after := rssKiB()
	fmt.Printf("go_park threads=%d rss_mib=%.1f kib_per_thread=%.2f\n",
		n, float64(after)/1024, float64(after-before)/float64(n))
	mu.Lock()
	release = true
	cond.Broadcast()
	mu.Unlock()
	wg.Wait()
}
