/**
 * Frames between agents, little-endian. Every frame starts with a 32-byte header:
 *
 *    0  u16  magic    0x4c44 ("DL")
 *    2  u8   version  1
 *    3  u8   type     FrameType
 *    4  u32  length   body bytes after the header
 *    8  u64  seq      DATA: its number in the sender's stream; PING/PONG: the probe's id
 *   16  u64  ack      the highest number of the peer's stream delivered here (cumulative)
 *   24  u64  stream   the sender's stream id (DATA, ACK); 0 otherwise
 *
 * HELLO carries the handshake (node id, cluster name, stream ids, a nonce, what was delivered of
 * the peer's stream), AUTH proves knowledge of the cluster secret over both HELLOs. A frame that
 * breaks any rule here is a protocol violation: the link closes with the reason logged.
 */
import { ProtocolViolation } from '../user/wire.js';

export const LINK_MAGIC = 0x4c44;
export const LINK_VERSION = 1;
export const LINK_HEADER = 32;

export const FrameType = {
  HELLO: 1,
  AUTH: 2,
  DATA: 3,
  ACK: 4,
  PING: 5,
  PONG: 6,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

export interface LinkFrame {
  type: number;
  seq: bigint;
  ack: bigint;
  stream: bigint;
  body: Buffer;
}

export function encodeFrame(f: Omit<LinkFrame, 'body'> & { body?: Buffer }): Buffer {
  const body = f.body ?? Buffer.alloc(0);
  const out = Buffer.allocUnsafe(LINK_HEADER + body.length);
  out.writeUInt16LE(LINK_MAGIC, 0);
  out.writeUInt8(LINK_VERSION, 2);
  out.writeUInt8(f.type, 3);
  out.writeUInt32LE(body.length, 4);
  out.writeBigUInt64LE(f.seq, 8);
  out.writeBigUInt64LE(f.ack, 16);
  out.writeBigUInt64LE(f.stream, 24);
  body.copy(out, LINK_HEADER);
  return out;
}

/** Splits a byte stream into frames; throws ProtocolViolation on anything malformed. */
export class LinkDecoder {
  private pending: Buffer[] = [];
  private size = 0;

  constructor(private readonly maxFrame: number) {}

  push(chunk: Buffer): LinkFrame[] {
    this.pending.push(chunk);
    this.size += chunk.length;
    const frames: LinkFrame[] = [];
    while (this.size >= LINK_HEADER) {
      const head = this.peek(LINK_HEADER);
      if (head.readUInt16LE(0) !== LINK_MAGIC) throw new ProtocolViolation('bad magic');
      if (head.readUInt8(2) !== LINK_VERSION) {
        throw new ProtocolViolation(`unsupported version ${head.readUInt8(2)}`);
      }
      const type = head.readUInt8(3);
      if (type < FrameType.HELLO || type > FrameType.PONG) {
        throw new ProtocolViolation(`unknown frame type ${type}`);
      }
      const length = head.readUInt32LE(4);
      if (LINK_HEADER + length > this.maxFrame) {
        throw new ProtocolViolation(`frame of ${length} bytes over the limit ${this.maxFrame}`);
      }
      if (this.size < LINK_HEADER + length) break;
      const whole = this.take(LINK_HEADER + length);
      frames.push({
        type,
        seq: whole.readBigUInt64LE(8),
        ack: whole.readBigUInt64LE(16),
        stream: whole.readBigUInt64LE(24),
        body: whole.subarray(LINK_HEADER),
      });
    }
    return frames;
  }

  private peek(n: number): Buffer {
    if ((this.pending[0]?.length ?? 0) < n) this.pending = [Buffer.concat(this.pending)];
    return (this.pending[0] as Buffer).subarray(0, n);
  }

  private take(n: number): Buffer {
    const all =
      this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending);
    const out = Buffer.from(all.subarray(0, n));
    const rest = all.subarray(n);
    this.pending = rest.length ? [rest] : [];
    this.size -= n;
    return out;
  }
}

/** The HELLO body: who is speaking, and where each stream stands. */
export interface Hello {
  node: number;
  cluster: string;
  /** The sender's current outgoing stream. */
  stream: bigint;
  /** The peer stream the sender last heard of (0: none), and how much of it was delivered. */
  peerStream: bigint;
  delivered: bigint;
  nonce: Buffer;
}

const NONCE = 32;

export function encodeHello(h: Hello): Buffer {
  const name = Buffer.from(h.cluster, 'utf8');
  const body = Buffer.alloc(2 + 8 + 8 + 8 + NONCE + 1 + name.length);
  let o = body.writeUInt16LE(h.node, 0);
  o = body.writeBigUInt64LE(h.stream, o);
  o = body.writeBigUInt64LE(h.peerStream, o);
  o = body.writeBigUInt64LE(h.delivered, o);
  o += h.nonce.copy(body, o);
  o = body.writeUInt8(name.length, o);
  name.copy(body, o);
  return body;
}

export function decodeHello(body: Buffer): Hello {
  if (body.length < 2 + 24 + NONCE + 1) throw new ProtocolViolation('short HELLO');
  const nameLength = body.readUInt8(2 + 24 + NONCE);
  if (body.length !== 2 + 24 + NONCE + 1 + nameLength) throw new ProtocolViolation('bad HELLO');
  return {
    node: body.readUInt16LE(0),
    stream: body.readBigUInt64LE(2),
    peerStream: body.readBigUInt64LE(10),
    delivered: body.readBigUInt64LE(18),
    nonce: Buffer.from(body.subarray(26, 26 + NONCE)),
    cluster: body.subarray(26 + NONCE + 1).toString('utf8'),
  };
}

export const NONCE_BYTES = NONCE;
