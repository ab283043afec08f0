// httpraw.go - minimal HTTP/1.1 hello-world server on Go's net package.
//
// Serves: 127.0.0.1:PORT, one goroutine per connection, with exactly the
// request handling of http_np.c (a request is everything up to
// "\r\n\r\n"; same reply bytes, Date refreshed once per second;
// "Connection: close" honoured).  Separates the cost of net/http from
// the cost of the goroutine/netpoller underneath it.
// Usage: httpraw PORT
package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"time"
)

var connClose = []byte("\r\nconnection:")

// wantsClose scans like http_np.c does: no allocation, case-insensitive.
func wantsClose(req []byte) bool {
	k := len(connClose)
	for i := 0; i+k <= len(req); i++ {
		if !bytes.EqualFold(req[i:i+k], connClose) {
			continue
		}
		v := bytes.TrimLeft(req[i+k:], " ")
		return len(v) >= 5 && bytes.EqualFold(v[:5], []byte("close"))
	}
	return false
}

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	var resp []byte
	var stamp int64
	n := 0
	for {
		end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
		if end < 0 {
			if n == len(buf) {
				return
			}
			k, err := c.Read(buf[n:])
			if k <= 0 || err != nil {
				return
			}
			n += k
			continue
		}
		used := end + 4
		if now := time.Now(); now.Unix() != stamp {
			stamp = now.Unix()
			resp = []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: 13\r\n"+
				"Content-Type: text/plain\r\nDate: %s\r\n\r\nHello, World!",
				now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")))
		}
		closeAfter := wantsClose(buf[:used])
		if _, err := c.Write(resp); err != nil || closeAfter {
			return
		}
		n = copy(buf, buf[used:n])
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: httpraw PORT")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpraw:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "httpraw: accept:", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c)
	}
}
