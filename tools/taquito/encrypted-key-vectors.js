#!/usr/bin/env node
// Regenerates domain/tezos/testdata/encrypted_keys.json: encrypted Tezos
// secret keys (edesk…, spesk…, p2esk…, BLesk…) as octez-client writes them,
// made and checked without Sigil's code:
//
//   NODE_PATH=tools/taquito/node_modules node tools/taquito/encrypted-key-vectors.js \
//     > domain/tezos/testdata/encrypted_keys.json
//
// Each key's unencrypted payload (the bytes of its edsk/spsk/p2sk/BLsk form)
// is sealed the octez way: an 8-byte random salt, a key of 32 bytes from
// PBKDF2-HMAC-SHA512 (32768 iterations) of the passphrase, NaCl secretbox
// with a zero nonce, base58check of salt ‖ box under the encrypted prefix.
// Then Taquito's InMemorySigner opens the encrypted key with the passphrase
// and gives the expected unencrypted secret key and address, so the vectors
// are confirmed by Taquito's own decryption.
'use strict';

const { InMemorySigner } = require('@taquito/signer');
const { b58Encode, PrefixV2 } = require('@taquito/utils');
const { pbkdf2 } = require('@noble/hashes/pbkdf2.js');
const { sha512 } = require('@noble/hashes/sha2.js');
const { secretBox } = require('@stablelib/nacl');
const crypto = require('crypto');

const kinds = [
  ['ed25519', PrefixV2.Ed25519EncryptedSeed],
  ['secp256k1', PrefixV2.Secp256k1EncryptedSecretKey],
  ['p256', PrefixV2.P256EncryptedSecretKey],
  ['bls', PrefixV2.BLS12_381EncryptedSecretKey],
];
const passphrases = ['correct horse battery staple', 'pässwörd ✓', 'x'];

async function main() {
  const out = [];
  for (const [type, prefix] of kinds) {
    for (const passphrase of passphrases) {
      const payload = crypto.randomBytes(32);
      payload[0] &= 0x3f; // below every curve order (BLS: the payload is little-endian, so keep the top byte small too)
      payload[31] &= 0x3f;
      const salt = crypto.randomBytes(8);
      const key = pbkdf2(sha512, new TextEncoder().encode(passphrase), salt, { c: 32768, dkLen: 32 });
      const box = secretBox(key, new Uint8Array(24), new Uint8Array(payload));
      const encrypted = b58Encode(Buffer.concat([salt, Buffer.from(box)]), prefix);
      const signer = new InMemorySigner(encrypted, passphrase);
      out.push({
        type,
        passphrase,
        encrypted,
        secret_key: await signer.secretKey(),
        public_key_hash: await signer.publicKeyHash(),
      });
    }
  }
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
