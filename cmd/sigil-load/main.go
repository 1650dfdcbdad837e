// Command sigil-load drives a Tezos remote signer (Sigil, Signatory or any
// server speaking POST /keys/{pkh}) with concurrent keep-alive clients and
// reports ops/s, latency percentiles and errors by HTTP status. It only
// targets loopback addresses. See adapters/loadgen for the details.
//
//	sigil-load --url http://127.0.0.1:6732 --key tz1… [--concurrency 32]
//	    [--duration 10s | --requests N] [--op generic|attestation]
//	    [--verify] [--warmup 1s] [--json]
//	    [--new-connections] [--trickle N [--trickle-from 127.0.0.2] [--trickle-interval 500ms]]
//
// With --trickle, N more connections from --trickle-from send request
// headers one byte at a time (a slowloris) while the load is measured; they
// start 2 s before it, and their fate (refused at once, closed while
// trickling) is reported.
//
// It exits 0 after a run, 1 if the run could not start or any signature
// failed verification, 2 on bad usage.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/sigil-signer/sigil/adapters/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sigil-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o        loadgen.Options
		op       string
		chainHex string
		asJSON   bool
		level    int
		trickle  loadgen.TrickleOptions
	)
	fs.StringVar(&o.URL, "url", "http://127.0.0.1:6732", "signer base URL (loopback hosts only)")
	fs.StringVar(&o.Key, "key", "", "tz… address to sign with (required)")
	fs.IntVar(&o.Concurrency, "concurrency", 32, "number of concurrent clients")
	fs.DurationVar(&o.Duration, "duration", 0, "length of the measured phase (default 10s unless --requests is set)")
	fs.IntVar(&o.Requests, "requests", 0, "number of measured requests")
	fs.StringVar(&op, "op", "generic", "request kind: generic (a forged transaction) or attestation (tag 21, increasing levels)")
	fs.BoolVar(&o.Verify, "verify", false, "fetch the public key and verify every signature")
	fs.DurationVar(&o.Warmup, "warmup", 0, "load to apply before measuring")
	fs.DurationVar(&o.Timeout, "timeout", loadgen.DefaultTimeout, "per-request timeout")
	fs.IntVar(&level, "start-level", 1, "first attestation level")
	fs.StringVar(&chainHex, "chain-id", "", "attestation chain id as 8 hex digits (default: random per run)")
	fs.BoolVar(&o.SharedChain, "shared-chain", false, "all clients attest on one chain id (out-of-order arrivals are then refused)")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	fs.BoolVar(&o.NewConnections, "new-connections", false, "open a connection per request (no keep-alive)")
	fs.IntVar(&trickle.Connections, "trickle", 0, "also keep this many connections trickling header bytes (slowloris)")
	fs.StringVar(&trickle.From, "trickle-from", "127.0.0.2", "local address of the trickling connections")
	fs.DurationVar(&trickle.Interval, "trickle-interval", 500*time.Millisecond, "pause between two trickled header bytes")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sigil-load: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if o.Key == "" {
		fmt.Fprintln(stderr, "sigil-load: --key is required")
		return 2
	}
	if o.Duration == 0 && o.Requests == 0 {
		o.Duration = 10 * time.Second
	}
	if level < 1 || level > 1<<31-1 {
		fmt.Fprintf(stderr, "sigil-load: --start-level %d out of range\n", level)
		return 2
	}
	o.StartLevel = int32(level)
	o.Op = loadgen.Op(op)
	if chainHex != "" {
		id, err := hex.DecodeString(chainHex)
		if err != nil || len(id) != 4 {
			fmt.Fprintf(stderr, "sigil-load: --chain-id %q: want 8 hex digits\n", chainHex)
			return 2
		}
		o.ChainID = id
	}

	var (
		tstats loadgen.TrickleStats
		terr   error
		tdone  = make(chan struct{})
	)
	tctx, stopTrickle := context.WithCancel(ctx)
	if trickle.Connections > 0 {
		go func() {
			defer close(tdone)
			tstats, terr = loadgen.Trickle(tctx, o.URL, trickle)
		}()
		select { // let the trickling connections pile up first
		case <-time.After(2 * time.Second):
		case <-tdone:
		}
	} else {
		close(tdone)
	}
	res, err := loadgen.Run(ctx, o)
	stopTrickle()
	<-tdone
	if err == nil {
		err = terr
	}
	if err != nil {
		fmt.Fprintf(stderr, "sigil-load: %v\n", err)
		return 1
	}
	if trickle.Connections > 0 {
		res.Trickle = &tstats
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "sigil-load: %v\n", err)
			return 1
		}
	} else {
		fmt.Fprint(stdout, res.String())
	}
	if res.WrongSignatures > 0 {
		fmt.Fprintf(stderr, "sigil-load: %d signatures failed verification\n", res.WrongSignatures)
		return 1
	}
	return 0
}
