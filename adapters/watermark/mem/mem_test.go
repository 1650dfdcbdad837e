package mem

import (
	"testing"

	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
	"github.com/sigil-signer/sigil/ports"
)

func TestContract(t *testing.T) {
	watermarktest.Run(t, func(testing.TB) ports.WatermarkStore { return New(Config{}) })
}

func BenchmarkCommit(b *testing.B) { watermarktest.BenchmarkCommit(b, New(Config{})) }

func BenchmarkCommitParallel(b *testing.B) { watermarktest.BenchmarkCommitParallel(b, New(Config{})) }
