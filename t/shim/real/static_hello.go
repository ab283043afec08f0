// Built with CGO_ENABLED=0 by t/shim/real/run.sh: a statically linked
// program, which nprun must refuse (LD_PRELOAD cannot reach it).
package main

import "os"

func main() {
	os.Stdout.WriteString("hello from a static Go binary\n")
}
