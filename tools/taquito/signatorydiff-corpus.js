#!/usr/bin/env node
// Regenerates integration/signatorydiff/testdata/corpus.json: the keys and
// the sign requests of the differential test that runs Signatory and Sigil
// side by side (integration/signatorydiff).
//
//   NODE_PATH=tools/taquito/node_modules node tools/taquito/signatorydiff-corpus.js \
//     > integration/signatorydiff/testdata/corpus.json
//
// Keys: test-only keys, each derived from a fixed seed (Blake2b-512 of
// "sigil signatorydiff <name>", first 32 bytes, top bits cleared so that
// every type accepts it); Taquito's InMemorySigner computes their public
// keys and hashes. They protect nothing and must never hold funds.
//
// Messages (name -> hex of the whole sign request, magic byte included):
//   staking/<key>/<entrypoint>/<to>   a transaction from <key> calling
//        stake, unstake, finalize_unstake or set_delegate_parameters, to
//        itself (self), a KT1 (kt1) or another account (other); forged by
//        LocalForger (the entrypoint's reserved tag)
//   staking/<key>/stake/self-named    to itself, the entrypoint spelled by
//        name (tag 255, "stake"): forged by LocalForger with the name
//        "stakf" and patched to "stake", then parsed back by LocalForger
//   staking/<key>/batch               a transaction to another account then
//        a stake to itself, in one operation
//   ballot/<key>/<vote>               a ballot (yay, nay, pass) whose source
//        is <key>
//   signature-prefix/transaction      a BLS signature prefix (tag 255, type
//        3, 32 bytes) then a transaction, in one operation
//   micheline                         0x05 ‖ a packed Micheline value
//   <kind>/<chain>/<level>/<round>/<payload>[/<extra>]   consensus requests:
//        blk (block: Taquito's codecs assemble the shell header and
//        protocol data; the round is the fitness round, the payload round
//        equals it unless /pr<N>), pre (preattestation, tag 20), att
//        (attestation, tag 21), dal (attestation_with_dal, tag 23), bpre and
//        batt (the tz4 forms, tags 40 and 41); chain main (NetXdQprcVkpaWU)
//        or other (NetXnHfVqm9iesp); payload a or b (two block payload
//        hashes)
//   blk/main/1300/0/a/fitness-short   a block whose fitness is a single
//        element (no round)
// The generic operations of every kind come from the request parser's
// vectors (domain/request/testdata/vectors.json, forge-vectors.js); the
// malformed requests are derived in the Go test from these.
'use strict';

const crypto = require('crypto');
const { LocalForger, encoders, CODEC, ProtocolsHash } = require('@taquito/local-forging');
const { InMemorySigner } = require('@taquito/signer');
const { b58Encode, b58DecodeAndCheckPrefix, PrefixV2, buf2hex } = require('@taquito/utils');

const forger = new LocalForger(ProtocolsHash.PsUshuai9);

const hex = (b) => buf2hex(b);
function bytes(n, seed) {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed + i * 7) & 0xff;
  return b;
}
const enc = (codec, v) => encoders[codec](v);
const z = (n) => enc(CODEC.ZARITH, String(n));
const i32 = (n) => enc(CODEC.INT32, n);
const u8 = (n) => n.toString(16).padStart(2, '0');
const u16 = (n) => n.toString(16).padStart(4, '0');
const dyn = (h) => enc(CODEC.PADDED_BYTES, h);
const raw = (s, prefix) => hex(b58DecodeAndCheckPrefix(s, [prefix])[0]);

const branch = b58Encode(bytes(32, 1), PrefixV2.BlockHash);
const kt1 = b58Encode(bytes(20, 50), PrefixV2.ContractHash);
const proto = b58Encode(bytes(32, 120), PrefixV2.ProtocolHash);
const chains = { main: 'NetXdQprcVkpaWU', other: 'NetXnHfVqm9iesp' };
const payloads = { a: b58Encode(bytes(32, 150), PrefixV2.ValueHash), b: b58Encode(bytes(32, 151), PrefixV2.ValueHash) };

const prefixes = {
  tz1: PrefixV2.Ed25519Seed, tz2: PrefixV2.Secp256k1SecretKey,
  tz3: PrefixV2.P256SecretKey, tz4: PrefixV2.BLS12_381SecretKey,
};

// name -> key type; role in the test is described in corpus_test.go.
const keySpecs = [
  ['w1', 'tz1'], ['w2', 'tz2'], ['w3', 'tz3'], ['w4', 'tz4'],
  ['staker', 'tz1'], ['payer', 'tz2'], ['bare', 'tz4'], ['voter', 'tz3'],
  ['unlisted', 'tz4'], ['absent', 'tz1'], ['stranger', 'tz2'],
  ['client-a', 'tz1'], ['client-b', 'tz1'], ['client-c', 'tz1'], ['hook', 'tz1'],
];

async function main() {
  const keys = {};
  for (const [name, type] of keySpecs) {
    const seed = crypto.createHash('blake2b512').update('sigil signatorydiff ' + name).digest().subarray(0, 32);
    seed[0] &= 0x3f;
    seed[31] &= 0x3f;
    const sk = b58Encode(seed, prefixes[type]);
    const signer = new InMemorySigner(sk);
    const pkh = await signer.publicKeyHash();
    if (!pkh.startsWith(type)) throw new Error(`${name}: ${pkh} is not a ${type} address`);
    keys[name] = { type, sk, pk: await signer.publicKey(), pkh };
  }

  const messages = {};
  const mgr = (source, counter) => ({ source, fee: '1420', counter: String(counter), gas_limit: '10600', storage_limit: '300' });
  const generic = async (contents) => '03' + (await forger.forge({ branch, contents }));

  // ---- staking pseudo-operations, to self and to others ----
  const params = {
    stake: { prim: 'Unit' }, unstake: { prim: 'Unit' }, finalize_unstake: { prim: 'Unit' },
    set_delegate_parameters: { prim: 'Pair', args: [{ int: '4000000' }, { prim: 'Pair', args: [{ int: '20000000' }, { prim: 'Unit' }] }] },
  };
  for (const k of ['staker', 'payer', 'w1', 'w4']) {
    const src = keys[k].pkh;
    const to = { self: src, kt1, other: keys.stranger.pkh };
    for (const [ep, value] of Object.entries(params)) {
      for (const [dest, addr] of Object.entries(to)) {
        messages[`staking/${k}/${ep}/${dest}`] = await generic([{
          kind: 'transaction', ...mgr(src, 900), amount: ep === 'unstake' ? '1000000' : (ep === 'stake' ? '6000000000' : '0'),
          destination: addr, parameters: { entrypoint: ep, value },
        }]);
      }
    }
    const named = await generic([{
      kind: 'transaction', ...mgr(src, 901), amount: '6000000000', destination: src,
      parameters: { entrypoint: 'stakf', value: { prim: 'Unit' } },
    }]);
    const from = 'ff05' + hex(new TextEncoder().encode('stakf'));
    if (named.split(from).length !== 2) throw new Error('named entrypoint not found exactly once');
    const patched = named.replace(from, 'ff05' + hex(new TextEncoder().encode('stake')));
    const back = await forger.parse(patched.slice(2));
    if (back.contents[0].parameters.entrypoint !== 'stake') throw new Error('patched entrypoint does not parse back as "stake"');
    messages[`staking/${k}/stake/self-named`] = patched;
    messages[`staking/${k}/batch`] = await generic([
      { kind: 'transaction', ...mgr(src, 902), amount: '5', destination: keys.stranger.pkh },
      { kind: 'transaction', ...mgr(src, 903), amount: '7000000', destination: src, parameters: { entrypoint: 'stake', value: { prim: 'Unit' } } },
    ]);
  }

  // ---- ballots ----
  for (const k of ['voter', 'w1', 'w4']) {
    for (const vote of ['yay', 'nay', 'pass']) {
      messages[`ballot/${k}/${vote}`] = await generic([{ kind: 'ballot', source: keys[k].pkh, period: 120, proposal: proto, ballot: vote }]);
    }
  }

  // ---- a signature prefix (tag 255) before a transaction ----
  const tx = await forger.forge({ branch, contents: [{ kind: 'transaction', ...mgr(keys.w4.pkh, 904), amount: '1', destination: keys.stranger.pkh }] });
  messages['signature-prefix/transaction'] = '03' + tx.slice(0, 64) + 'ff' + '03' + hex(bytes(32, 77)) + tx.slice(64);

  // ---- Micheline (pack) ----
  messages.micheline = '05' + enc(CODEC.VALUE, { prim: 'Pair', args: [{ string: 'sigil' }, { int: '16' }] }).slice(8);

  // ---- consensus requests ----
  const chainHex = (c) => raw(chains[c], PrefixV2.ChainID);
  const bph = (p) => raw(payloads[p], PrefixV2.ValueHash);
  async function attestationLike(kind, chain, level, round, p) {
    const content = { slot: 7, level, round, block_payload_hash: payloads[p] };
    let forged;
    switch (kind) {
      case 'att': forged = await forger.forge({ branch, contents: [{ kind: 'attestation', ...content }] }); break;
      case 'dal': forged = await forger.forge({ branch, contents: [{ kind: 'attestation_with_dal', ...content, dal_attestation: '5' }] }); break;
      case 'pre': // Octez's preattestation (tag 20) has the attestation layout (tag 21)
        forged = await forger.forge({ branch, contents: [{ kind: 'attestation', ...content }] });
        if (forged.slice(64, 66) !== '15') throw new Error('attestation tag not where expected');
        forged = forged.slice(0, 64) + '14' + forged.slice(66);
        break;
      case 'bpre': forged = raw(branch, PrefixV2.BlockHash) + u8(40) + i32(level) + i32(round) + bph(p); break;
      case 'batt': forged = raw(branch, PrefixV2.BlockHash) + u8(41) + i32(level) + i32(round) + bph(p); break;
      default: throw new Error(kind);
    }
    const magic = (kind === 'pre' || kind === 'bpre') ? '12' : '13';
    return magic + chainHex(chain) + forged;
  }
  function block(chain, level, round, p, payloadRound, shortFitness) {
    const fitness = shortFitness ? dyn('02') :
      dyn('02') + dyn(i32(level)) + dyn('') + dyn(i32(0)) + dyn(i32(round));
    return '11' + chainHex(chain) + i32(level) + '01' + raw(branch, PrefixV2.BlockHash) +
      '0000000065000000' + '04' + hex(bytes(32, 5)) + dyn(fitness) + hex(bytes(32, 6)) +
      bph(p) + i32(payloadRound) + hex(bytes(8, 7)) + '00' + '00';
  }
  const add = async (kind, chain, level, round, p) => {
    const name = `${kind}/${chain}/${level}/${round}/${p}`;
    messages[name] = kind === 'blk' ? block(chain, level, round, p, round, false) : await attestationLike(kind, chain, level, round, p);
  };
  // Each kind has its own levels; the same sequence for every kind:
  // L R0 a, L R0 b, L-1 R5 a, L R1 a, L+1 R0 a (the test sends L R0 a twice).
  const bases = { blk: 1000, pre: 2000, att: 3000, dal: 4000, bpre: 5000, batt: 6000 };
  for (const [kind, base] of Object.entries(bases)) {
    for (const [dl, r, p] of [[0, 0, 'a'], [0, 0, 'b'], [-1, 5, 'a'], [0, 1, 'a'], [1, 0, 'a']]) {
      await add(kind, 'main', base + dl, r, p);
    }
  }
  // attestation_with_dal at the level and round of an attestation
  await add('dal', 'main', 3001, 0, 'a');
  // a chain the policy does not allow
  await add('att', 'other', 3000, 0, 'a');
  // blocks whose payload round differs from the fitness round
  messages['blk/main/1200/2/a/pr0'] = block('main', 1200, 2, 'a', 0, false);
  messages['blk/main/1200/1/b/pr1'] = block('main', 1200, 1, 'b', 1, false);
  messages['blk/main/1300/0/a/fitness-short'] = block('main', 1300, 0, 'a', 0, true);
  // handover: what Signatory signs alone, then what both are asked
  for (const kind of ['blk', 'pre', 'att']) {
    const base = { blk: 8000, pre: 8100, att: 8200 }[kind];
    for (const [dl, r, p] of [[0, 1, 'a'], [0, 1, 'b'], [0, 0, 'a'], [0, 2, 'a'], [1, 0, 'a']]) {
      await add(kind, 'main', base + dl, r, p);
    }
  }

  process.stdout.write(JSON.stringify({
    generator: 'tools/taquito/signatorydiff-corpus.js',
    taquito: require('@taquito/local-forging/package.json').version,
    protocol: forger.protocolHash,
    chains,
    keys,
    messages,
  }, null, 1) + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
