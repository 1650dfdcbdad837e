// Package loadgentest provides a fake Tezos remote signer for testing load
// generators: an httptest server on 127.0.0.1 that speaks the Signatory API
// (GET/POST /keys/{pkh}) with a real domain/tezos key, and that can be told
// to fail or to return wrong signatures on purpose.
package loadgentest

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// Signer is a fake remote signer. Set its behaviour fields before the first
// request.
type Signer struct {
	*httptest.Server
	Key tezos.PrivateKey
	PK  tezos.PublicKey
	PKH string

	// FailEvery, if positive, makes every FailEvery-th sign request fail
	// with FailStatus (default 503).
	FailEvery  int64
	FailStatus int
	// CorruptEvery, if positive, makes every CorruptEvery-th sign request
	// return a valid-looking signature over a different message.
	CorruptEvery int64
	// Garbage, if set, makes every sign request return 200 without a
	// signature.
	Garbage bool
	// Delay is added to every sign request.
	Delay time.Duration
	// Watermarks makes the signer refuse (409) attestations (0x13) whose
	// level is not above the last one signed for the same chain id.
	Watermarks bool

	// Posts counts sign requests received; Signed counts those answered
	// with a correct signature.
	Posts, Signed atomic.Int64

	mu     sync.Mutex
	levels map[[4]byte]int32
}

// New starts a fake signer with a fresh key of type t. Close it when done.
func New(t tezos.KeyType) (*Signer, error) {
	sk, err := tezos.GeneratePrivateKey(t, nil)
	if err != nil {
		return nil, err
	}
	pk, err := sk.Public()
	if err != nil {
		return nil, err
	}
	s := &Signer{Key: sk, PK: pk, PKH: pk.Hash().String(), levels: map[[4]byte]int32{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /keys/{pkh}", s.get)
	mux.HandleFunc("POST /keys/{pkh}", s.sign)
	s.Server = httptest.NewServer(mux)
	return s, nil
}

func (s *Signer) get(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("pkh") != s.PKH {
		writeError(w, http.StatusNotFound, "no such key")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"public_key": s.PK.String()})
}

func (s *Signer) sign(w http.ResponseWriter, r *http.Request) {
	n := s.Posts.Add(1)
	if s.Delay > 0 {
		time.Sleep(s.Delay)
	}
	if r.PathValue("pkh") != s.PKH {
		writeError(w, http.StatusNotFound, "no such key")
		return
	}
	var h string
	if err := json.NewDecoder(r.Body).Decode(&h); err != nil {
		writeError(w, http.StatusBadRequest, "body is not a JSON string")
		return
	}
	msg, err := hex.DecodeString(h)
	if err != nil || len(msg) == 0 {
		writeError(w, http.StatusBadRequest, "body is not hex")
		return
	}
	if s.FailEvery > 0 && n%s.FailEvery == 0 {
		st := s.FailStatus
		if st == 0 {
			st = http.StatusServiceUnavailable
		}
		writeError(w, st, fmt.Sprintf("injected failure on request %d", n))
		return
	}
	if s.Garbage {
		writeJSON(w, http.StatusOK, map[string]string{"nothing": "here"})
		return
	}
	if s.Watermarks && msg[0] == 0x13 {
		if len(msg) < 1+4+32+1+2+4 {
			writeError(w, http.StatusBadRequest, "short attestation")
			return
		}
		var chain [4]byte
		copy(chain[:], msg[1:5])
		level := int32(uint32(msg[40])<<24 | uint32(msg[41])<<16 | uint32(msg[42])<<8 | uint32(msg[43]))
		s.mu.Lock()
		last, seen := s.levels[chain]
		ok := !seen || level > last
		if ok {
			s.levels[chain] = level
		}
		s.mu.Unlock()
		if !ok {
			writeError(w, http.StatusConflict, fmt.Sprintf("level %d not above %d", level, last))
			return
		}
	}
	corrupt := s.CorruptEvery > 0 && n%s.CorruptEvery == 0
	if corrupt {
		msg = append([]byte("not the request: "), msg...)
	}
	sig, err := s.Key.Sign(msg, tezos.SignVersion2)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if !corrupt {
		s.Signed.Add(1)
	}
	writeJSON(w, http.StatusOK, map[string]string{"signature": sig.String()})
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, []map[string]string{{"id": "failure", "kind": "temporary", "msg": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
