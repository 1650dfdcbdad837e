#!/usr/bin/env node
// Regenerates domain/request/testdata/vectors.json: Tezos remote-signer sign
// requests (magic byte ‖ …) for every operation kind, forged by Taquito.
//
//   NODE_PATH=tools/taquito/node_modules node tools/taquito/forge-vectors.js \
//     > domain/request/testdata/vectors.json
//
// "source" in each vector says how its bytes were made:
//   taquito-forge   LocalForger.forge() of {branch, contents} (whole operation).
//   taquito-codec   kinds LocalForger does not know (Taquito 25 forges only the
//                   kinds in its kindMapping): the bytes are assembled here,
//                   field by field, from Taquito's own field encoders
//                   (zarith, pkh, public key, address, int32, b58 hashes…),
//                   following the Octez layouts cited next to each one.
// Expected fields (chain id "Net…", payload hash "vh…", level, round, kinds)
// are computed here from the inputs with Taquito's base58 encoder, so the Go
// test checks the parser against an independent implementation.
'use strict';

const { LocalForger, encoders, CODEC, ProtocolsHash } = require('@taquito/local-forging');
const { b58Encode, b58DecodeAndCheckPrefix, PrefixV2, buf2hex } = require('@taquito/utils');

const forger = new LocalForger(ProtocolsHash.PsUshuai9);

// Deterministic filler bytes: n bytes starting at `seed`, stepping by 7.
function bytes(n, seed) {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed + i * 7) & 0xff;
  return b;
}
const hex = (b) => buf2hex(b);
const b58 = (n, seed, prefix) => b58Encode(bytes(n, seed), prefix);

const branch = b58(32, 1, PrefixV2.BlockHash);
const tz1 = b58(20, 10, PrefixV2.Ed25519PublicKeyHash);
const tz2 = b58(20, 20, PrefixV2.Secp256k1PublicKeyHash);
const tz3 = b58(20, 30, PrefixV2.P256PublicKeyHash);
const tz4 = b58(20, 40, PrefixV2.BLS12_381PublicKeyHash);
const kt1 = b58(20, 50, PrefixV2.ContractHash);
const sr1 = b58(20, 60, PrefixV2.SmartRollupHash);
const src1 = b58(32, 70, PrefixV2.SmartRollupCommitmentHash);
const edpk = b58(32, 80, PrefixV2.Ed25519PublicKey);
const sppk = b58Encode(new Uint8Array([2, ...bytes(32, 90)]), PrefixV2.Secp256k1PublicKey);
const p2pk = b58Encode(new Uint8Array([3, ...bytes(32, 95)]), PrefixV2.P256PublicKey);
const blpk = b58(48, 100, PrefixV2.BLS12_381PublicKey);
const blsig = b58(96, 110, PrefixV2.BLS12_381Signature);
const proto = b58(32, 120, PrefixV2.ProtocolHash);
const proto2 = b58(32, 130, PrefixV2.ProtocolHash);
const dalCommitment = b58(48, 140, PrefixV2.SlotHeader);
const payloadHash = b58(32, 150, PrefixV2.ValueHash);
const chainID = b58(4, 0x7a, PrefixV2.ChainID);
const chainIDHex = hex(bytes(4, 0x7a));

const enc = (codec, v) => encoders[codec](v);
const z = (n) => enc(CODEC.ZARITH, String(n));
const pkh = (a) => enc(CODEC.PKH, a);
const i32 = (n) => enc(CODEC.INT32, n);
const u8 = (n) => n.toString(16).padStart(2, '0');
const u16 = (n) => n.toString(16).padStart(4, '0');
const dyn = (h) => enc(CODEC.PADDED_BYTES, h); // 4-byte length ‖ bytes
// payload bytes of a base58check string, checked against its prefix
const hash32 = (s, prefix) => hex(b58DecodeAndCheckPrefix(s, [prefix])[0]);

// Manager fields common to every manager operation (Octez operation_repr.ml:
// source, fee, counter, gas_limit, storage_limit).
const mgr = { source: tz1, fee: '1420', counter: '5000123', gas_limit: '10600', storage_limit: '300' };
const mgrHex = pkh(mgr.source) + z(mgr.fee) + z(mgr.counter) + z(mgr.gas_limit) + z(mgr.storage_limit);

const vectors = [];

async function generic(name, contents, kinds) {
  const forged = await forger.forge({ branch, contents });
  vectors.push({ name, source: 'taquito-forge', hex: '03' + forged, kind: 'generic', ops: kinds });
}

// tagHex + body assembled from Taquito field encoders.
function genericManual(name, ops, kinds, layout) {
  const h = '03' + hash32(branch, PrefixV2.BlockHash) + ops.join('');
  vectors.push({ name, source: 'taquito-codec', layout, hex: h, kind: 'generic', ops: kinds });
}

const micheline = { prim: 'Pair', args: [{ string: 'hello' }, { int: '42' }] };
const script = {
  code: [
    { prim: 'parameter', args: [{ prim: 'unit' }] },
    { prim: 'storage', args: [{ prim: 'unit' }] },
    { prim: 'code', args: [[{ prim: 'CDR' }, { prim: 'NIL', args: [{ prim: 'operation' }] }, { prim: 'PAIR' }]] },
  ],
  storage: { prim: 'Unit' },
};

async function main() {
  // ---- generic operations forged by LocalForger ----
  await generic('transaction/simple', [{ kind: 'transaction', ...mgr, amount: '1000000', destination: tz2 }], ['transaction']);
  await generic('transaction/to-kt1-named-entrypoint', [{
    kind: 'transaction', ...mgr, amount: '0', destination: kt1,
    parameters: { entrypoint: 'transfer', value: micheline },
  }], ['transaction']);
  // Staking pseudo-operations: a transaction to the sender itself calling
  // stake, unstake, finalize_unstake or set_delegate_parameters is
  // classified by the entrypoint (as Signatory does), not as "transaction".
  await generic('transaction/stake', [{
    kind: 'transaction', ...mgr, amount: '6000000000', destination: tz1,
    parameters: { entrypoint: 'stake', value: { prim: 'Unit' } },
  }], ['stake']);
  await generic('transaction/unstake', [{
    kind: 'transaction', ...mgr, amount: '1000000', destination: tz1,
    parameters: { entrypoint: 'unstake', value: { prim: 'Unit' } },
  }], ['unstake']);
  await generic('transaction/finalize_unstake', [{
    kind: 'transaction', ...mgr, amount: '0', destination: tz1,
    parameters: { entrypoint: 'finalize_unstake', value: { prim: 'Unit' } },
  }], ['finalize_unstake']);
  await generic('transaction/set_delegate_parameters', [{
    kind: 'transaction', ...mgr, amount: '0', destination: tz1,
    parameters: {
      entrypoint: 'set_delegate_parameters',
      value: { prim: 'Pair', args: [{ int: '4000000' }, { prim: 'Pair', args: [{ int: '20000000' }, { prim: 'Unit' }] }] },
    },
  }], ['set_delegate_parameters']);
  await generic('batch/stake+transaction', [
    { kind: 'transaction', ...mgr, amount: '5', destination: tz2 },
    { kind: 'transaction', ...mgr, counter: '5000124', amount: '7000000', destination: tz1, parameters: { entrypoint: 'stake', value: { prim: 'Unit' } } },
  ], ['transaction', 'stake']);
  await generic('transaction/from-tz4', [{ kind: 'transaction', ...mgr, source: tz4, amount: '1', destination: tz3 }], ['transaction']);
  await generic('reveal/edpk', [{ kind: 'reveal', ...mgr, public_key: edpk }], ['reveal']);
  await generic('reveal/sppk', [{ kind: 'reveal', ...mgr, source: tz2, public_key: sppk }], ['reveal']);
  await generic('reveal/p2pk', [{ kind: 'reveal', ...mgr, source: tz3, public_key: p2pk }], ['reveal']);
  await generic('reveal/blpk-with-proof', [{ kind: 'reveal', ...mgr, source: tz4, public_key: blpk, proof: blsig }], ['reveal']);
  await generic('batch/reveal+transaction+delegation', [
    { kind: 'reveal', ...mgr, public_key: edpk },
    { kind: 'transaction', ...mgr, counter: '5000124', amount: '5', destination: kt1 },
    { kind: 'delegation', ...mgr, counter: '5000125', delegate: tz3 },
  ], ['reveal', 'transaction', 'delegation']);
  await generic('delegation/set', [{ kind: 'delegation', ...mgr, delegate: tz2 }], ['delegation']);
  await generic('delegation/withdraw', [{ kind: 'delegation', ...mgr }], ['delegation']);
  await generic('origination', [{ kind: 'origination', ...mgr, balance: '0', script }], ['origination']);
  await generic('origination/with-delegate', [{ kind: 'origination', ...mgr, balance: '12', delegate: tz1, script }], ['origination']);
  await generic('register_global_constant', [{ kind: 'register_global_constant', ...mgr, value: micheline }], ['register_global_constant']);
  await generic('set_deposits_limit/some', [{ kind: 'set_deposits_limit', ...mgr, limit: '1000000000' }], ['set_deposits_limit']);
  await generic('set_deposits_limit/none', [{ kind: 'set_deposits_limit', ...mgr }], ['set_deposits_limit']);
  await generic('increase_paid_storage', [{ kind: 'increase_paid_storage', ...mgr, amount: '100', destination: kt1 }], ['increase_paid_storage']);
  await generic('update_consensus_key/edpk', [{ kind: 'update_consensus_key', ...mgr, pk: edpk }], ['update_consensus_key']);
  await generic('update_consensus_key/blpk-with-proof', [{ kind: 'update_consensus_key', ...mgr, pk: blpk, proof: blsig }], ['update_consensus_key']);
  await generic('update_companion_key', [{ kind: 'update_companion_key', ...mgr, pk: blpk, proof: blsig }], ['update_companion_key']);
  await generic('transfer_ticket', [{
    kind: 'transfer_ticket', ...mgr, ticket_contents: { string: 'abc' }, ticket_ty: { prim: 'string' },
    ticket_ticketer: kt1, ticket_amount: '2', destination: kt1, entrypoint: 'default',
  }], ['transfer_ticket']);
  await generic('smart_rollup_originate', [{
    kind: 'smart_rollup_originate', ...mgr, pvm_kind: 'wasm_2_0_0', kernel: 'deadbeef',
    parameters_ty: { prim: 'bytes' },
  }], ['smart_rollup_originate']);
  await generic('smart_rollup_originate/whitelist', [{
    kind: 'smart_rollup_originate', ...mgr, pvm_kind: 'riscv', kernel: '00ff',
    parameters_ty: { prim: 'unit' }, whitelist: [tz1, tz4],
  }], ['smart_rollup_originate']);
  await generic('smart_rollup_add_messages', [{ kind: 'smart_rollup_add_messages', ...mgr, message: ['0102', 'ffeedd'] }], ['smart_rollup_add_messages']);
  await generic('smart_rollup_execute_outbox_message', [{
    kind: 'smart_rollup_execute_outbox_message', ...mgr, rollup: sr1, cemented_commitment: src1, output_proof: 'abcdef',
  }], ['smart_rollup_execute_outbox_message']);
  await generic('dal_publish_commitment', [{
    kind: 'dal_publish_commitment', ...mgr,
    slot_header: { slot_index: 3, commitment: dalCommitment, commitment_proof: hex(bytes(96, 160)) },
  }], ['dal_publish_commitment']);
  // A ballot carries its vote: Signatory's policy names it ballot:<vote>.
  for (const vote of ['yay', 'nay', 'pass']) {
    await generic(vote === 'yay' ? 'ballot' : `ballot/${vote}`, [{ kind: 'ballot', source: tz1, period: 120, proposal: proto, ballot: vote }], ['ballot']);
    vectors[vectors.length - 1].ballots = [vote];
  }
  await generic('batch/ballot+proposals', [
    { kind: 'proposals', source: tz2, period: 119, proposals: [proto] },
    { kind: 'ballot', source: tz2, period: 120, proposal: proto2, ballot: 'nay' },
  ], ['proposals', 'ballot']);
  vectors[vectors.length - 1].ballots = ['', 'nay'];
  await generic('proposals', [{ kind: 'proposals', source: tz2, period: 119, proposals: [proto, proto2] }], ['proposals']);
  await generic('seed_nonce_revelation', [{ kind: 'seed_nonce_revelation', level: 5000000, nonce: hex(bytes(32, 170)) }], ['seed_nonce_revelation']);
  await generic('activate_account', [{ kind: 'activate_account', pkh: tz1, secret: hex(bytes(20, 180)) }], ['activate_account']);
  await generic('drain_delegate', [{ kind: 'drain_delegate', consensus_key: tz4, delegate: tz1, destination: tz2 }], ['drain_delegate']);
  await generic('failing_noop', [{ kind: 'failing_noop', arbitrary: hex(new TextEncoder().encode('hello tezos')) }], ['failing_noop']);
  await generic('attestation-in-generic', [{ kind: 'attestation', slot: 1, level: 100, round: 0, block_payload_hash: payloadHash }], ['attestation']);

  // ---- generic operations LocalForger cannot forge: Taquito field encoders ----
  const bph = hash32(payloadHash, PrefixV2.ValueHash);
  const consensus = (tag, slot, level, round) => u8(tag) + u16(slot) + i32(level) + i32(round) + bph;
  const inlined = (tag, slot, level, round) => // branch ‖ contents ‖ signature (64 bytes)
    hash32(branch, PrefixV2.BlockHash) + consensus(tag, slot, level, round) + hex(bytes(64, 190));
  const sr = hash32(sr1, PrefixV2.SmartRollupHash);
  const srCommit = hash32(src1, PrefixV2.SmartRollupCommitmentHash);
  const header = // a full signed block header for double baking evidence
    i32(100) + '00' + hash32(branch, PrefixV2.BlockHash) + '0000000065000000' + '08' + hex(bytes(32, 5)) +
    dyn('00000001' + '02' + '00000004' + i32(100) + '00000000' + '00000004' + 'ffffffff' + '00000004' + i32(0)) +
    hex(bytes(32, 6)) + bph + i32(0) + hex(bytes(8, 7)) + '00' + '00' + hex(bytes(64, 8));

  genericManual('double_consensus_operation_evidence',
    ['02' + u16(7) + dyn(inlined(21, 7, 100, 1)) + dyn(inlined(21, 7, 100, 1).replace(/..$/, '00'))],
    ['double_consensus_operation_evidence'],
    'tag 2: slot uint16, op1 and op2 each a 4-byte-length inlined consensus operation (Seoul)');
  genericManual('double_baking_evidence', ['03' + dyn(header) + dyn(header.replace(/..$/, '01'))],
    ['double_baking_evidence'], 'tag 3: bh1, bh2 each a 4-byte-length block header');
  genericManual('vdf_revelation', ['08' + hex(bytes(100, 200)) + hex(bytes(100, 201))],
    ['vdf_revelation'], 'tag 8: solution = two 100-byte class group elements');
  genericManual('dal_entrapment_evidence',
    ['18' + dyn(inlined(21, 3, 90, 0)) + u16(3) + u8(2) + i32(17) + dyn(hex(bytes(64, 210))) + hex(bytes(48, 211))],
    ['dal_entrapment_evidence'],
    'tag 24: attestation (4-byte length), consensus_slot uint16, slot_index uint8, shard (int32, 4-byte-length bytes), proof 48 bytes');
  genericManual('preattestations_aggregate',
    ['1e' + i32(200) + i32(1) + bph + dyn(u16(1) + u16(5) + u16(9))],
    ['preattestations_aggregate'], 'tag 30: level, round, payload hash, committee (4-byte-length list of uint16)');
  genericManual('attestations_aggregate',
    ['1f' + i32(200) + i32(0) + bph + dyn(u16(1) + '00' + u16(5) + 'ff' + z(13))],
    ['attestations_aggregate'], 'tag 31: level, round, payload hash, committee (4-byte-length list of (slot uint16, dal option))');
  genericManual('preattestation-in-generic', [consensus(20, 4, 300, 2)], ['preattestation'], 'tag 20: consensus content');
  genericManual('attestation_with_dal-in-generic', [consensus(23, 4, 300, 2) + z(5)], ['attestation_with_dal'],
    'tag 23: consensus content, dal attestation (zarith)');
  genericManual('smart_rollup_cement', ['ca' + mgrHex + sr], ['smart_rollup_cement'], 'tag 202: manager fields, rollup (20)');
  genericManual('smart_rollup_publish',
    ['cb' + mgrHex + sr + hex(bytes(32, 220)) + i32(1000) + srCommit + '0000000000000fa0'],
    ['smart_rollup_publish'], 'tag 203: rollup, commitment (state 32, inbox_level int32, predecessor 32, ticks int64)');
  genericManual('smart_rollup_refute/start',
    ['cc' + mgrHex + sr + pkh(tz2) + '00' + srCommit + srCommit],
    ['smart_rollup_refute'], 'tag 204: rollup, opponent pkh, refutation start (two commitment hashes)');
  genericManual('smart_rollup_refute/dissection',
    ['cc' + mgrHex + sr + pkh(tz2) + '01' + z(3) + '00' + dyn('ff' + hex(bytes(32, 230)) + z(0) + '00' + z(500))],
    ['smart_rollup_refute'], 'tag 204: refutation move (choice N), dissection (4-byte-length list)');
  genericManual('smart_rollup_refute/proof-dal-page',
    ['cc' + mgrHex + sr + pkh(tz2) + '01' + z(3) + '01' + dyn('0a0b') + 'ff' + '01' + '02' + i32(10) + u8(1) + u16(2) + dyn('0c')],
    ['smart_rollup_refute'], 'tag 204: move, proof step (pvm_step, input_proof = reveal proof, dal page)');
  genericManual('smart_rollup_refute/proof-inbox',
    ['cc' + mgrHex + sr + pkh(tz2) + '01' + z(130) + '01' + dyn('0a') + 'ff' + '00' + i32(10) + z(2) + dyn('0d0e')],
    ['smart_rollup_refute'], 'tag 204: move, proof step, inbox proof (level, message counter, serialized proof)');
  genericManual('smart_rollup_timeout', ['cd' + mgrHex + sr + pkh(tz1) + pkh(tz3)], ['smart_rollup_timeout'],
    'tag 205: rollup, stakers (alice, bob)');
  genericManual('smart_rollup_recover_bond', ['cf' + mgrHex + sr + pkh(tz4)], ['smart_rollup_recover_bond'],
    'tag 207: rollup, staker');
  const zkr = hex(bytes(20, 240));
  genericManual('zk_rollup_origination',
    ['fa' + mgrHex + dyn('0102') + dyn(dyn('00') + '00') + dyn(hex(bytes(32, 1))) + i32(5)],
    ['zk_rollup_origination'], 'tag 250: public_parameters, circuits_info, init_state (4-byte lengths), nb_ops int32');
  // One op without a ticket, one with (contents "abc", ty string, ticketer
  // a KT1); price amounts below 64 encode alike as N and Z.
  const zkOp = (code, seed, amount, dst, payload, ticket) =>
    i32(code) + hex(bytes(32, seed)) + z(amount) + pkh(dst) + zkr + dyn(payload) + ticket;
  const zkTicket = '01' + '01' + i32(3) + '616263' + '0368' + enc(CODEC.ADDRESS, kt1);
  genericManual('zk_rollup_publish',
    ['fb' + mgrHex + zkr + dyn(zkOp(1, 7, 5, tz1, '', '00') + zkOp(0, 8, 60, tz4, hex(bytes(32, 9)), zkTicket))],
    ['zk_rollup_publish'],
    'tag 251: zk_rollup (20), op list (4-byte length): op_code int31, price (32, Z), l1_dst, rollup_id (20), payload (32-byte scalars), ticket option (0 none, 1 some: Micheline contents and ty, ticketer)');
  genericManual('zk_rollup_update',
    ['fc' + mgrHex + zkr + dyn('') + dyn('') + dyn('01') + dyn('02')],
    ['zk_rollup_update'], 'tag 252: zk_rollup, pending_pis, private_pis, fee_pi.new_state, proof (4-byte lengths)');
  genericManual('batch/cement+timeout',
    ['ca' + mgrHex + sr, 'cd' + mgrHex + sr + pkh(tz1) + pkh(tz3)],
    ['smart_rollup_cement', 'smart_rollup_timeout'], 'two manager operations');

  // ---- consensus requests: magic ‖ chain id ‖ LocalForger(branch, op) ----
  async function consensusVec(name, magic, content, opKind, expect) {
    let forged = await forger.forge({ branch, contents: [content] });
    if (expect.retag) {
      // Taquito has no preattestation encoder; Octez's preattestation (tag 20)
      // has exactly the attestation (tag 21) layout, so retag the forged bytes.
      forged = forged.slice(0, 64) + expect.retag + forged.slice(66);
    }
    vectors.push({
      name, source: 'taquito-forge', hex: magic + chainIDHex + forged,
      kind: expect.kind, op_kind: opKind, chain_id: chainID, level: content.level, round: content.round,
      payload_hash: content.block_payload_hash,
    });
  }
  await consensusVec('attestation', '13', { kind: 'attestation', slot: 12, level: 7654321, round: 3, block_payload_hash: payloadHash }, 'attestation', { kind: 'attestation' });
  await consensusVec('attestation/round0', '13', { kind: 'attestation', slot: 0, level: 1, round: 0, block_payload_hash: payloadHash }, 'attestation', { kind: 'attestation' });
  await consensusVec('attestation_with_dal', '13', { kind: 'attestation_with_dal', slot: 300, level: 8000000, round: 1, block_payload_hash: payloadHash, dal_attestation: '1267650600228229401496703205376' }, 'attestation_with_dal', { kind: 'attestation' });
  await consensusVec('preattestation', '12', { kind: 'attestation', slot: 5, level: 7654322, round: 0, block_payload_hash: payloadHash }, 'preattestation', { kind: 'preattestation', retag: '14' });
  // tz4 (BLS) simplified consensus encodings: tag ‖ level ‖ round ‖ payload hash.
  for (const [name, magic, tag, opKind, kind] of [
    ['bls-preattestation', '12', 40, 'preattestation', 'preattestation'],
    ['bls-attestation', '13', 41, 'attestation', 'attestation'],
  ]) {
    const level = 9000001, round = 4;
    vectors.push({
      name, source: 'taquito-codec', layout: `tag ${tag}: level int32, round int32, block_payload_hash 32`,
      hex: magic + chainIDHex + hash32(branch, PrefixV2.BlockHash) + u8(tag) + i32(level) + i32(round) + bph,
      kind, op_kind: opKind, chain_id: chainID, level, round, payload_hash: payloadHash,
    });
  }

  // ---- packed Micheline data (request kind pack) ----
  // Taquito's value encoder writes a 4-byte length first: dropped.
  const packed = [
    ['pack', micheline],
    ['pack/int', { int: '-1234567890123456789' }],
    ['pack/string', { string: 'Tezos Signed Message: hello' }],
    ['pack/bytes', { bytes: '0500deadbeef' }],
    ['pack/empty-sequence', []],
    ['pack/sequence', [{ int: '1' }, { string: 'a' }, [{ bytes: '' }]]],
    ['pack/prim-annots', { prim: 'Pair', args: [{ int: '1' }], annots: ['%a'] }],
    ['pack/prim-2-args-annots', { prim: 'Pair', args: [{ int: '1' }, { prim: 'Unit' }], annots: ['%a', '@b'] }],
    ['pack/prim-n-args', { prim: 'Pair', args: [{ int: '1' }, { int: '2' }, { prim: 'Some', args: [{ prim: 'None' }] }] }],
    ['pack/lambda', [{ prim: 'DROP' }, { prim: 'PUSH', args: [{ prim: 'nat' }, { int: '7' }] }, { prim: 'NIL', args: [{ prim: 'operation', annots: [':op'] }] }]],
  ];
  for (const [name, v] of packed) {
    vectors.push({ name, source: 'taquito-codec', hex: '05' + enc(CODEC.VALUE, v).slice(8), kind: 'pack' });
  }

  process.stdout.write(JSON.stringify({
    generator: 'tools/taquito/forge-vectors.js',
    taquito: require('@taquito/local-forging/package.json').version,
    protocol: forger.protocolHash,
    vectors,
  }, null, 1) + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
