package tezos

// Base58check version prefixes, as defined by Octez (src/lib_crypto/base58.ml).
var (
	prefixTz1 = []byte{6, 161, 159}
	prefixTz2 = []byte{6, 161, 161}
	prefixTz3 = []byte{6, 161, 164}
	prefixTz4 = []byte{6, 161, 166}

	prefixEdpk = []byte{13, 15, 37, 217}
	prefixSppk = []byte{3, 254, 226, 86}
	prefixP2pk = []byte{3, 178, 139, 127}
	prefixBLpk = []byte{6, 149, 135, 204}

	prefixEdskSeed = []byte{13, 15, 58, 7}  // 32-byte seed (54 characters)
	prefixEdsk64   = []byte{43, 246, 78, 7} // 64-byte seed‖public key (98 characters)
	prefixSpsk     = []byte{17, 162, 224, 201}
	prefixP2sk     = []byte{16, 81, 238, 189}
	prefixBLsk     = []byte{3, 150, 192, 40}

	prefixEdsig = []byte{9, 245, 205, 134, 18}
	prefixSpsig = []byte{13, 115, 101, 19, 63}
	prefixP2sig = []byte{54, 240, 44, 52}
	prefixSig   = []byte{4, 130, 43}
	prefixBLsig = []byte{40, 171, 64, 207}

	prefixChainID = []byte{87, 82, 0}
)

// encoding describes one base58check form: its prefix and payload length.
type encoding struct {
	prefix []byte
	size   int
}

func pkhEncoding(t KeyType) encoding {
	switch t {
	case Ed25519:
		return encoding{prefixTz1, 20}
	case Secp256k1:
		return encoding{prefixTz2, 20}
	case P256:
		return encoding{prefixTz3, 20}
	case BLS:
		return encoding{prefixTz4, 20}
	}
	return encoding{}
}

func pkEncoding(t KeyType) encoding {
	switch t {
	case Ed25519:
		return encoding{prefixEdpk, 32}
	case Secp256k1:
		return encoding{prefixSppk, 33}
	case P256:
		return encoding{prefixP2pk, 33}
	case BLS:
		return encoding{prefixBLpk, 48}
	}
	return encoding{}
}

func skEncoding(t KeyType) encoding {
	switch t {
	case Ed25519:
		return encoding{prefixEdskSeed, 32}
	case Secp256k1:
		return encoding{prefixSpsk, 32}
	case P256:
		return encoding{prefixP2sk, 32}
	case BLS:
		return encoding{prefixBLsk, 32}
	}
	return encoding{}
}

func sigEncoding(t KeyType) encoding {
	switch t {
	case Ed25519:
		return encoding{prefixEdsig, 64}
	case Secp256k1:
		return encoding{prefixSpsig, 64}
	case P256:
		return encoding{prefixP2sig, 64}
	case BLS:
		return encoding{prefixBLsig, 96}
	}
	return encoding{}
}
