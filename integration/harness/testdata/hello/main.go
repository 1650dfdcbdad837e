// Command hello is a tiny program the harness tests build and run: it prints
// "listening on <addr>" once it serves HTTP on the address given as its
// argument, and exits on SIGTERM.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: hello ADDR")
		os.Exit(2)
	}
	l, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello") }))
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM) // before announcing readiness
	fmt.Fprintln(os.Stderr, "some noise")
	fmt.Printf("listening on %s\n", l.Addr())
	<-sig
	fmt.Println("terminated")
}
