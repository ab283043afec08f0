// echo.go - echo server, one goroutine per connection (net package).
//
// Serves: TCP echo on 127.0.0.1:PORT; each connection is handled by its
// own goroutine that reads into a 4 KiB buffer and writes back what it
// read.  The Go peer of echo_np.c for echo_client.
// Usage: echo PORT
package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: echo PORT")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "echo: accept:", err)
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: back off
			continue
		}
		go serve(c)
	}
}
