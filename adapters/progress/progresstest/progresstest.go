// Package progresstest gives tests a pseudo-terminal whose screen they can
// read back: what a user at a terminal would see of a progress bar.
package progresstest

import (
	"bytes"
	"os"
	"sync"
	"testing"

	"github.com/creack/pty"
)

// Terminal is an open pseudo-terminal: write to TTY, then Screen returns
// everything written.
type Terminal struct {
	TTY    *os.File
	master *os.File
	mu     sync.Mutex
	screen bytes.Buffer
	done   chan struct{}
}

// Open opens a pseudo-terminal and starts reading what is written to it.
func Open(t testing.TB) *Terminal {
	t.Helper()
	master, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	term := &Terminal{TTY: tty, master: master, done: make(chan struct{})}
	t.Cleanup(func() { master.Close() })
	go func() {
		defer close(term.done)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			term.mu.Lock()
			term.screen.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return term
}

// Screen closes the terminal's writing side, waits for everything written
// to be read and returns it.
func (term *Terminal) Screen() string {
	term.TTY.Close()
	<-term.done
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.screen.String()
}
