package tezos

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestB58RoundTripRandom(t *testing.T) {
	for n := 0; n < 3000; n++ {
		b := make([]byte, rand.IntN(80))
		for i := range b {
			if rand.IntN(4) > 0 {
				b[i] = byte(rand.IntN(256))
			}
		}
		got, err := b58Decode(b58Encode(b))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%x -> %x %v", b, got, err)
		}
	}
}
