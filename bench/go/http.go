// http.go - net/http hello-world server (the Go peer of http_np.c).
//
// Serves: HTTP/1.1 keep-alive on 127.0.0.1:PORT; every request gets
// "200 OK" with the 13-byte body "Hello, World!".
// Usage: http PORT
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: http PORT")
		os.Exit(2)
	}
	body := []byte("Hello, World!")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], h); err != nil {
		fmt.Fprintln(os.Stderr, "http:", err)
		os.Exit(1)
	}
}
