package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// TrickleOptions configure Trickle: slow clients holding connections open
// by sending a request's headers one byte at a time (a "slowloris"), while
// the measured load runs.
type TrickleOptions struct {
	// Connections is how many trickling connections to keep open.
	Connections int
	// From is the local IP address they come from (any 127/8 address is
	// this host's loopback), so that the signer sees another client than
	// the measured one; "" lets the system choose.
	From string
	// Interval is the pause between two header bytes (default 500 ms).
	Interval time.Duration
	// Redial is the pause before a closed connection is dialled again
	// (default 1 s): a persistent attacker, not a connection flood.
	Redial time.Duration
}

// TrickleStats count what the trickling connections met.
type TrickleStats struct {
	// Dials is the number of connections opened.
	Dials int64 `json:"dials"`
	// RefusedAtOnce counts connections the signer closed before their
	// first header byte was due (over a connection cap).
	RefusedAtOnce int64 `json:"refused_at_once"`
	// ClosedLater counts connections the signer closed while they were
	// trickling (the header read timeout).
	ClosedLater int64 `json:"closed_later"`
	// DialErrors counts failed dials.
	DialErrors int64 `json:"dial_errors"`
}

func (s TrickleStats) String() string {
	return fmt.Sprintf("trickle      %d dials: %d refused at once, %d closed while trickling, %d dial errors",
		s.Dials, s.RefusedAtOnce, s.ClosedLater, s.DialErrors)
}

// Trickle keeps o.Connections trickling connections to the signer at base
// (a loopback URL) until ctx ends, and returns what they met.
func Trickle(ctx context.Context, base string, o TrickleOptions) (TrickleStats, error) {
	u, err := CheckLoopback(base)
	if err != nil {
		return TrickleStats{}, err
	}
	if o.Connections < 1 || o.Connections > 100_000 {
		return TrickleStats{}, fmt.Errorf("loadgen: trickle connections %d out of range 1..100000", o.Connections)
	}
	if o.Interval <= 0 {
		o.Interval = 500 * time.Millisecond
	}
	if o.Redial <= 0 {
		o.Redial = time.Second
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	if o.From != "" {
		ip := net.ParseIP(o.From)
		if ip == nil {
			return TrickleStats{}, fmt.Errorf("loadgen: trickle source %q is not an IP address", o.From)
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	host := hostPort(u)
	var st struct{ dials, refused, later, errs atomic.Int64 }
	var wg sync.WaitGroup
	for range o.Connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				trickleOnce(ctx, &d, host, o.Interval, &st.dials, &st.refused, &st.later, &st.errs)
				select {
				case <-ctx.Done():
				case <-time.After(o.Redial):
				}
			}
		}()
	}
	wg.Wait()
	return TrickleStats{Dials: st.dials.Load(), RefusedAtOnce: st.refused.Load(), ClosedLater: st.later.Load(), DialErrors: st.errs.Load()}, nil
}

// trickleOnce holds one connection, sending a header byte every interval,
// until the signer closes it or ctx ends.
func trickleOnce(ctx context.Context, d *net.Dialer, host string, interval time.Duration, dials, refused, later, errs *atomic.Int64) {
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		if ctx.Err() == nil {
			errs.Add(1)
		}
		return
	}
	dials.Add(1)
	defer c.Close()
	closed := make(chan struct{})
	go func() {
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				close(closed)
				return
			}
		}
	}()
	req := []byte("POST /keys/tz1burnburnburnburnburnburnburjAYjjX HTTP/1.1\r\nHost: signer\r\nX-Slow: " +
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	for i := 0; ; i = (i + 1) % len(req) {
		select {
		case <-ctx.Done():
			return
		case <-closed:
			if i == 0 {
				refused.Add(1)
			} else {
				later.Add(1)
			}
			return
		case <-time.After(interval):
		}
		if _, err := c.Write(req[i : i+1]); err != nil {
			if i == 0 {
				refused.Add(1)
			} else {
				later.Add(1)
			}
			return
		}
	}
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return u.Host + ":443"
	}
	return u.Host + ":80"
}
