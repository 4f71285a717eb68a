import test from 'ava';
import {
  CallFlags,
  encode,
  FrameDecoder,
  frame,
  HEADER_SIZE,
  Op,
  ProtocolViolation,
  REPLY_BIT,
} from '../../lib/user/wire.js';

const call = frame({
  op: Op.SENDREC,
  tag: 0xfedc_ba98,
  peer: 0xffff_fffe,
  peerGen: 77,
  type: -123456,
  flags: CallFlags.NONBLOCK,
  arg: 0xffff_ffff_ffff_fffen,
  deadline: 123_456_789_012n,
  payload: Buffer.from('hello'),
});

test('a frame survives encode and decode field for field', (t) => {
  const [decoded] = new FrameDecoder('call').push(Buffer.concat(encode(call)));
  t.deepEqual(decoded, call);
});

test('a large payload is sent as a separate buffer without copying', (t) => {
  const payload = Buffer.alloc(4096, 7);
  const parts = encode(frame({ op: Op.SEND, payload }));
  t.is(parts.length, 2);
  t.is(parts[1], payload);
  t.is(parts[0]?.readUInt32LE(0), HEADER_SIZE + 4096);
});

test('frames split at every byte boundary and glued together decode in order', (t) => {
  const bytes = Buffer.concat([
    ...encode(call),
    ...encode(frame({ op: Op.RECEIVE, tag: 2 })),
    ...encode(frame({ op: Op.SEND, tag: 3, payload: Buffer.alloc(2000, 1) })),
  ]);
  const decoder = new FrameDecoder('call');
  const tags: number[] = [];
  for (const byte of bytes) for (const f of decoder.push(Buffer.from([byte]))) tags.push(f.tag);
  t.deepEqual(tags, [call.tag, 2, 3]);
});

function violation(mutate: (b: Buffer) => void, direction: 'call' | 'reply' = 'call') {
  const bytes = Buffer.concat(encode(frame({ op: Op.SEND, tag: 1 })));
  mutate(bytes);
  return () => new FrameDecoder(direction).push(bytes);
}

test('bad magic, version, length, op, flags and status are protocol violations', (t) => {
  const cases: [string, (b: Buffer) => void][] = [
    ['bad magic', (b) => b.writeUInt16LE(0x1234, 4)],
    ['unsupported version', (b) => b.writeUInt8(9, 6)],
    ['below header', (b) => b.writeUInt32LE(10, 0)],
    ['exceeds the limit', (b) => b.writeUInt32LE(HEADER_SIZE + 4097, 0)],
    ['unexpected op', (b) => b.writeUInt8(0x42, 7)],
    ['unexpected op', (b) => b.writeUInt8(Op.SEND | REPLY_BIT, 7)],
    ['unknown flags', (b) => b.writeUInt32LE(1 << 20, 28)],
    ['status set', (b) => b.writeInt32LE(-2, 12)],
  ];
  for (const [reason, mutate] of cases) {
    const err = t.throws(violation(mutate), { instanceOf: ProtocolViolation });
    t.regex(err?.message ?? '', new RegExp(reason));
  }
});

test('an oversized length is refused from the header alone, before its payload arrives', (t) => {
  const head = Buffer.concat(encode(frame({ op: Op.SEND }))).subarray(0, HEADER_SIZE);
  head.writeUInt32LE(0x4000_0000, 0);
  t.throws(() => new FrameDecoder('call', 65536).push(head), { instanceOf: ProtocolViolation });
});

test('the payload limit can be raised after the handshake', (t) => {
  const bytes = Buffer.concat(encode(frame({ op: Op.SEND, payload: Buffer.alloc(10_000) })));
  t.throws(() => new FrameDecoder('call').push(bytes), { instanceOf: ProtocolViolation });
  const decoder = new FrameDecoder('call');
  decoder.maxPayload = 65536;
  t.is(decoder.push(bytes)[0]?.payload.length, 10_000);
});

test('a reply decoder accepts reply ops and message flags only', (t) => {
  const reply = Buffer.concat(encode(frame({ op: Op.RECEIVE | REPLY_BIT, flags: 2, status: -2 })));
  t.is(new FrameDecoder('reply').push(reply)[0]?.status, -2);
  t.throws(() => new FrameDecoder('call').push(reply), { instanceOf: ProtocolViolation });
});
