package securechannel_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/securechannel"
)

// The benchmarks measure CPU, not wall-clock time: the enclave side runs in
// a child process (this test binary, started with benchServerEnv set), so
// that the client's CPU (getrusage of this process) and the server's (the
// child's getrusage, which it reports on request) are measured apart in
// the same run. Command and figures: docs/performance.md, series F.

const benchServerEnv = "SIGIL_SECURECHANNEL_BENCH_SERVER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(benchServerEnv); mode != "" {
		benchServer(mode)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// blsSignature is the reply of a Sign request for a tz4 key: the largest
// signature (96 bytes).
var blsReply = func() []byte {
	b, err := enclavewire.EncodeOk(enclavewire.Tagged{Type: enclavewire.KeyBLS, Bytes: make([]byte, 96)})
	if err != nil {
		panic(err)
	}
	return b
}()

// benchServer is the child: it listens on loopback, prints its address,
// then serves plain or attested connections answering every Sign with a
// 96-byte signature; a line on stdin asks for its CPU time (µs), EOF ends
// it.
func benchServer(mode string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var srv *securechannel.Server
	if mode == "tls" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		srv, err = securechannel.OpenServer(ctx, securechannel.ServerSettings{
			LauncherSocket: os.Getenv(benchServerEnv + "_LAUNCHER"),
			ClientPins:     os.Getenv(benchServerEnv + "_PINS"),
		}, nil)
		cancel()
		if err != nil {
			panic(err)
		}
	}
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				var c net.Conn = raw
				if srv != nil {
					tc, _, err := srv.Handshake(context.Background(), raw)
					if err != nil {
						return
					}
					c = tc
				}
				defer c.Close()
				rd := bufio.NewReader(c)
				for {
					p, err := enclavewire.ReadFrame(rd, 0)
					if err != nil {
						return
					}
					reply, ok := []byte(nil), false
					if srv != nil {
						reply, ok = answerToken(srv, p)
					}
					if !ok {
						reply = blsReply
					}
					if err := enclavewire.WriteFrame(c, reply); err != nil {
						return
					}
				}
			}()
		}
	}()
	fmt.Println(ln.Addr().String())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println(cpuMicros())
	}
}

func cpuMicros() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return ru.Utime.Nano()/1000 + ru.Stime.Nano()/1000
}

// child is a running bench server.
type child struct {
	addr string
	in   io.WriteCloser
	out  *bufio.Scanner
}

func (c *child) cpu(b *testing.B) int64 {
	if _, err := io.WriteString(c.in, "cpu\n"); err != nil {
		b.Fatal(err)
	}
	if !c.out.Scan() {
		b.Fatal("bench server gone")
	}
	n, err := strconv.ParseInt(c.out.Text(), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func startChild(b *testing.B, mode string, w *world) *child {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchServerEnv+"="+mode)
	if w != nil {
		cmd.Env = append(cmd.Env, benchServerEnv+"_LAUNCHER="+w.launcher.Socket, benchServerEnv+"_PINS="+w.key.Pin.String())
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = in.Close(); _ = cmd.Wait() })
	c := &child{in: in, out: bufio.NewScanner(out)}
	if !c.out.Scan() {
		b.Fatal("bench server did not start")
	}
	c.addr = strings.TrimSpace(c.out.Text())
	return c
}

// measure runs f b.N times and reports the CPU per operation of this
// process (client) and of the child (server), in µs.
func measure(b *testing.B, c *child, f func()) {
	b.Helper()
	s0, c0 := c.cpu(b), cpuMicros()
	b.ResetTimer()
	for range b.N {
		f()
	}
	b.StopTimer()
	s1, c1 := c.cpu(b), cpuMicros()
	b.ReportMetric(float64(c1-c0)/float64(b.N), "client-cpu-µs/op")
	b.ReportMetric(float64(s1-s0)/float64(b.N), "server-cpu-µs/op")
}

// BenchmarkAttestConnect: a new connection per operation, closed at once:
// plain TCP, then TCP + TLS 1.3 handshake + token verification (the
// issuer's keys are cached after the first).
func BenchmarkAttestConnect(b *testing.B) {
	b.Run("plain", func(b *testing.B) {
		c := startChild(b, "plain", nil)
		measure(b, c, func() {
			conn, err := net.Dial("tcp", c.addr)
			if err != nil {
				b.Fatal(err)
			}
			conn.Close()
		})
	})
	b.Run("attested", func(b *testing.B) {
		w := newWorld(b, 0)
		c := startChild(b, "tls", w)
		client, err := w.settings.Client(nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		measure(b, c, func() {
			conn, err := client.Dial(ctx, "tcp", c.addr)
			if err != nil {
				b.Fatal(err)
			}
			// One round trip, so that the server's side of the handshake
			// (client certificate check) is done and counted.
			if _, err := signRaw(conn, benchRequest); err != nil {
				b.Fatal(err)
			}
			conn.Close()
		})
	})
}

// benchRequest is a Sign request of the size of a tz4 attestation (a
// 128-byte message).
var benchRequest = func() []byte {
	r, err := enclavewire.EncodeRequest(enclavewire.NewSign(3, make([]byte, 128), 2))
	if err != nil {
		panic(err)
	}
	return r
}()

func signRaw(conn io.ReadWriter, req []byte) ([]byte, error) {
	if err := enclavewire.WriteFrame(conn, req); err != nil {
		return nil, err
	}
	return enclavewire.ReadFrame(conn, 0)
}

// BenchmarkAttestRoundTrip: one Sign-sized request and its 96-byte
// signature reply per operation, on one plain TCP connection and on one
// attested connection, in alternating blocks of 256 requests so that both
// see the same load on a shared machine. b.N requests go over each; the
// CPU per request of each side is reported per channel.
func BenchmarkAttestRoundTrip(b *testing.B) {
	type side struct {
		c        *child
		rw       io.ReadWriter
		cli, srv int64
	}
	mk := func(c *child, conn net.Conn) *side {
		return &side{c: c, rw: struct {
			io.Reader
			io.Writer
		}{bufio.NewReader(conn), conn}}
	}
	pc := startChild(b, "plain", nil)
	praw, err := net.Dial("tcp", pc.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer praw.Close()
	w := newWorld(b, 0)
	tc := startChild(b, "tls", w)
	client, err := w.settings.Client(nil)
	if err != nil {
		b.Fatal(err)
	}
	traw, err := client.Dial(context.Background(), "tcp", tc.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer traw.Close()
	sides := []*side{mk(pc, praw), mk(tc, traw)}
	const block = 256
	b.ResetTimer()
	for done := 0; done < b.N; done += block {
		n := min(block, b.N-done)
		for _, s := range sides {
			s0, c0 := s.c.cpu(b), cpuMicros()
			for range n {
				if _, err := signRaw(s.rw, benchRequest); err != nil {
					b.Fatal(err)
				}
			}
			c1 := cpuMicros()
			s.cli += c1 - c0
			s.srv += s.c.cpu(b) - s0
		}
	}
	b.StopTimer()
	per := func(v int64) float64 { return float64(v) / float64(b.N) }
	b.ReportMetric(per(sides[0].cli), "plain-client-cpu-µs/op")
	b.ReportMetric(per(sides[0].srv), "plain-server-cpu-µs/op")
	b.ReportMetric(per(sides[1].cli), "attested-client-cpu-µs/op")
	b.ReportMetric(per(sides[1].srv), "attested-server-cpu-µs/op")
}

// BenchmarkAttestVerifyToken: the token check alone (RS256 signature with
// a cached key, claims decoding, the domain decision), in process.
func BenchmarkAttestVerifyToken(b *testing.B) {
	w := newWorld(b, 0)
	_, nonce, _ := securechannel.NewEphemeralKey()
	tok := w.iss.Sign(w.iss.Claims(w.workload(), securechannel.DefaultAudience, []string{nonce}), 0)
	v, err := w.settings.Verifier(w.key.Pin)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok, nonce); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := v.Verify(ctx, tok, nonce); err != nil {
			b.Fatal(err)
		}
	}
}
