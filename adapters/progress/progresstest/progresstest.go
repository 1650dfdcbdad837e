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

// Lines replays what was written to a terminal the way the terminal shows
// it, and returns its lines (scrollback included): a carriage return moves
// to the start of the line, a newline to the next line, ESC [ 2 K clears the
// line, other escape sequences are dropped, and text overwrites what was
// there. A bar redrawn in place therefore leaves one line, and a log line
// written in the middle of a bar shows as a broken line.
func Lines(raw string) []string {
	lines := [][]rune{{}}
	row, col := 0, 0
	rs := []rune(raw)
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; r {
		case '\r':
			col = 0
		case '\n':
			row++
			col = 0
			if row == len(lines) {
				lines = append(lines, []rune{})
			}
		case 0x1b:
			j := i + 1
			if j < len(rs) && rs[j] == '[' {
				j++
				for j < len(rs) && (rs[j] < 0x40 || rs[j] > 0x7e) {
					j++
				}
				if j < len(rs) && rs[j] == 'K' && string(rs[i+2:j]) == "2" {
					lines[row] = lines[row][:0]
				}
			}
			i = j
		default:
			for len(lines[row]) < col {
				lines[row] = append(lines[row], ' ')
			}
			if col < len(lines[row]) {
				lines[row][col] = r
			} else {
				lines[row] = append(lines[row], r)
			}
			col++
		}
	}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		out = append(out, string(l))
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}
