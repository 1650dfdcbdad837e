package enclaverpc

import (
	"net"
	"testing"
	"time"
)

// loopbackPair returns both ends of a TCP connection on loopback.
func loopbackPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestPeekIgnoresDeadlines: an idle connection whose read deadline has
// passed (as the last request leaves it) is idle, not dead; a byte nobody
// asked for is unsolicited, and is not consumed; a closed peer is closed.
func TestPeekIgnoresDeadlines(t *testing.T) {
	a, b := loopbackPair(t)
	if r := peek(a); r != peekIdle {
		t.Fatalf("fresh connection: %v", r)
	}
	_ = a.SetDeadline(time.Now().Add(-time.Second))
	if r := peek(a); r != peekIdle {
		t.Fatalf("idle connection after its deadline: %v", r)
	}
	if _, err := b.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for peek(a) == peekIdle && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if r := peek(a); r != peekUnsolicited {
		t.Fatalf("a byte waiting: %v", r)
	}
	if r := peek(a); r != peekUnsolicited {
		t.Fatalf("the peek consumed the byte: %v", r)
	}
	a2, b2 := loopbackPair(t)
	b2.Close()
	for peek(a2) == peekIdle && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if r := peek(a2); r != peekClosed {
		t.Fatalf("closed by the peer: %v", r)
	}
}

// BenchmarkPeek is the cost of the check made before every request: one
// non-blocking recv(MSG_PEEK) on an idle loopback TCP connection.
func BenchmarkPeek(b *testing.B) {
	a, _ := loopbackPair(b)
	p := newPeeker(a) // made once per connection, as the pool does
	b.ReportAllocs()
	for b.Loop() {
		if p.peek() != peekIdle {
			b.Fatal("not idle")
		}
	}
}
