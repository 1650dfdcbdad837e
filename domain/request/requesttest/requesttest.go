// Package requesttest builds well-formed sign requests for tests: Tenderbake
// blocks, (pre)attestations in their tz1–tz3 and tz4 forms, and generic
// operations (transactions with or without an entrypoint, delegations,
// reveals), in the binary layouts domain/request parses (Octez
// operation_repr.ml and block_header_repr.ml). Each message's payload hash
// (or branch) comes from a caller's byte, so that two requests at one level
// and round can be made to differ.
package requesttest

import (
	"encoding/binary"

	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// Mainnet and Ghostnet are two chain ids.
var (
	Mainnet  = mustChain("NetXdQprcVkpaWU")
	Ghostnet = mustChain("NetXnHfVqm9iesp")
)

func mustChain(s string) request.ChainID {
	c, err := request.ParseChainID(s)
	if err != nil {
		panic(err)
	}
	return c
}

func be32(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

func elem(b []byte) []byte { return append(be32(int32(len(b))), b...) }

func fill(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// Block returns a block request (0x11) at level and round (the fitness
// round), its payload hash made from payload.
func Block(chain request.ChainID, level, round int32, payload byte) []byte {
	var fit []byte
	fit = append(fit, elem([]byte{0x02})...)
	fit = append(fit, elem(be32(level))...)
	fit = append(fit, elem(nil)...)         // locked round: none
	fit = append(fit, elem(be32(0))...)     // predecessor round
	fit = append(fit, elem(be32(round))...) // round
	m := []byte{request.MagicBlock}
	m = append(m, chain[:]...)
	m = append(m, be32(level)...)
	m = append(m, 24)                        // proto
	m = append(m, fill(32, 1)...)            // predecessor
	m = append(m, 0, 0, 0, 0, 0x68, 1, 2, 3) // timestamp
	m = append(m, 4)                         // validation passes
	m = append(m, fill(32, 2)...)            // operations hash
	m = append(m, elem(fit)...)              // fitness
	m = append(m, fill(32, 3)...)            // context
	m = append(m, fill(32, payload)...)      // payload hash
	m = append(m, be32(round)...)            // payload round
	m = append(m, fill(8, 4)...)             // proof of work nonce
	m = append(m, 0x00)                      // no seed nonce hash
	return append(m, 0x00)                   // per block votes
}

func consensus(magic, tag byte, slot bool, chain request.ChainID, level, round int32, payload byte) []byte {
	m := []byte{magic}
	m = append(m, chain[:]...)
	m = append(m, fill(32, 9)...) // branch
	m = append(m, tag)
	if slot {
		m = append(m, 0, 7)
	}
	m = append(m, be32(level)...)
	m = append(m, be32(round)...)
	return append(m, fill(32, payload)...)
}

// Preattestation returns a preattestation (0x12, tag 20).
func Preattestation(chain request.ChainID, level, round int32, payload byte) []byte {
	return consensus(request.MagicPreattestation, 20, true, chain, level, round, payload)
}

// Attestation returns an attestation (0x13, tag 21).
func Attestation(chain request.ChainID, level, round int32, payload byte) []byte {
	return consensus(request.MagicAttestation, 21, true, chain, level, round, payload)
}

// AttestationWithDAL returns an attestation with DAL content (0x13, tag
// 23, a one-byte DAL attestation).
func AttestationWithDAL(chain request.ChainID, level, round int32, payload byte) []byte {
	return append(consensus(request.MagicAttestation, 23, true, chain, level, round, payload), 0x05)
}

// PreattestationTz4 returns the tz4 form of a preattestation (tag 40).
func PreattestationTz4(chain request.ChainID, level, round int32, payload byte) []byte {
	return consensus(request.MagicPreattestation, 40, false, chain, level, round, payload)
}

// AttestationTz4 returns the tz4 form of an attestation (tag 41).
func AttestationTz4(chain request.ChainID, level, round int32, payload byte) []byte {
	return consensus(request.MagicAttestation, 41, false, chain, level, round, payload)
}

// zarith appends n in Tezos's zarith (base 128, little endian, high bit
// for continuation).
func zarith(b []byte, n uint64) []byte {
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}

func manager(tag byte, source tezos.PublicKeyHash) []byte {
	m := []byte{tag}
	m = append(m, source.Tagged()...)
	m = zarith(m, 1420)  // fee
	m = zarith(m, 77)    // counter
	m = zarith(m, 10600) // gas limit
	return zarith(m, 300)
}

// Entrypoint tags of the reserved entrypoints (Octez entrypoint_repr.ml).
const (
	EntrypointNone    = -1 // no parameters
	EntrypointDefault = 0
	EntrypointStake   = 6
	EntrypointUnstake = 7
)

// Transaction returns one transaction operation (no branch): amount mutez
// from source to dest, with the reserved entrypoint of tag entrypoint and
// a Unit argument, or no parameters (EntrypointNone).
func Transaction(source tezos.PublicKeyHash, dest request.Contract, amount uint64, entrypoint int) []byte {
	m := manager(108, source)
	m = zarith(m, amount)
	m = append(m, dest[:]...)
	if entrypoint < 0 {
		return append(m, 0x00)
	}
	m = append(m, 0xff, byte(entrypoint))
	return append(m, elem([]byte{0x03, 0x0b})...) // Unit
}

// Delegation returns one delegation operation (no branch) from source to
// delegate.
func Delegation(source, delegate tezos.PublicKeyHash) []byte {
	m := manager(110, source)
	m = append(m, 0xff)
	return append(m, delegate.Tagged()...)
}

// Implicit returns the contract id of an implicit account.
func Implicit(h tezos.PublicKeyHash) request.Contract {
	var c request.Contract
	copy(c[1:], h.Tagged())
	return c
}

// Originated returns the contract id of an originated contract (KT1…)
// whose hash is made from seed.
func Originated(seed byte) request.Contract {
	var c request.Contract
	c[0] = 1
	copy(c[1:21], fill(20, seed))
	return c
}

// Generic returns a generic operation request (0x03): a branch made from
// branch, then ops.
func Generic(branch byte, ops ...[]byte) []byte {
	m := []byte{request.MagicGeneric}
	m = append(m, fill(32, branch)...)
	for _, op := range ops {
		m = append(m, op...)
	}
	return m
}
