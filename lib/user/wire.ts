/**
 * The framing between a process and its node agent on the agent's Unix socket.
 *
 * Every frame is a 48-byte little-endian header followed by `length - 48` payload bytes:
 *
 *   off size field
 *     0  u32  length    whole frame, header included (48 .. 48 + max payload)
 *     4  u16  magic     0x4b44 ("DK")
 *     6  u8   version   1
 *     7  u8   op        Op.*; a reply from the agent has bit 0x80 set
 *     8  u32  tag       chosen by the client per call, echoed in the agent's reply
 *    12  i32  status    0, or -errno in an agent reply
 *    16  u32  peer      destination, `from` filter, or the source of a delivered message
 *    20  u32  peerGen   generation of `peer`; 0 means "the current one"
 *    24  i32  type      the application's message type
 *    28  u32  flags     MessageFlags in messages, CallFlags in calls; unknown bits are refused
 *    32  u64  arg       request id (sendrec, reply, requests), notify bits (notify, notifications),
 *                       the tag to cancel (cancel), the DC id (bind, with CallFlags.DC_BY_ID,
 *                       and in the bind's reply, whose `type` is then the payload limit)
 *    40  u64  deadline  absolute CLOCK_MONOTONIC nanoseconds; 0 = no deadline
 *
 * Every call gets exactly one reply frame, except REPLY, which is answered only if it fails
 * (the client has already checked that the request is unanswered, and does not wait).
 *
 * A frame that breaks these rules (length, magic, version, op, flags) is a protocol violation:
 * the agent logs why and closes that connection. Errors of the call itself (no such endpoint,
 * timeout) travel back as a negative `status` and leave the connection open.
 */
import type { Socket } from 'node:net';
import { MessageFlags } from '../message.js';

export const HEADER_SIZE = 48;
export const MAGIC = 0x4b44;
export const VERSION = 1;
/** Replies carry the call's op with this bit set. */
export const REPLY_BIT = 0x80;
/** The payload limit a frame decoder allows before the bind has told it the real one. */
export const HANDSHAKE_PAYLOAD_MAX = 4096;

export const Op = {
  BIND: 1,
  SEND: 2,
  RECEIVE: 3,
  SENDREC: 4,
  REPLY: 5,
  NOTIFY: 6,
  CANCEL: 7,
  STATUS: 8,
  /** Move an endpoint's service to another node: JSON { dc, endpoint, to } both ways. */
  MIGRATE: 9,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

/** Options of a call frame (client to agent). */
export const CallFlags = {
  /** Fail with EAGAIN instead of waiting. */
  NONBLOCK: 1 << 8,
  /** BIND names its DC by id in `arg` instead of by name in the payload. */
  DC_BY_ID: 1 << 9,
} as const;

const messageFlagsAll = MessageFlags.REQUEST | MessageFlags.NOTIFY | MessageFlags.REPLY;
const callFlagsAll = CallFlags.NONBLOCK | CallFlags.DC_BY_ID;

/** Which flags each direction may carry; anything else is a protocol violation. */
export const allowedFlags = { call: callFlagsAll, reply: messageFlagsAll } as const;

export interface Frame {
  op: number;
  tag: number;
  status: number;
  peer: number;
  peerGen: number;
  type: number;
  flags: number;
  arg: bigint;
  deadline: bigint;
  payload: Buffer;
}

export function frame(fields: Partial<Frame> & { op: number }): Frame {
  return {
    tag: 0,
    status: 0,
    peer: 0,
    peerGen: 0,
    type: 0,
    flags: 0,
    arg: 0n,
    deadline: 0n,
    payload: EMPTY,
    ...fields,
  };
}

const EMPTY = Buffer.alloc(0);

/**
 * Encodes a frame as one buffer when the payload is small, else as a header plus the caller's
 * payload (no copy), ready for `writev`.
 */
export function encode(f: Frame): Buffer[] {
  const small = f.payload.length <= 1024;
  const head = Buffer.allocUnsafe(small ? HEADER_SIZE + f.payload.length : HEADER_SIZE);
  head.writeUInt32LE(HEADER_SIZE + f.payload.length, 0);
  head.writeUInt16LE(MAGIC, 4);
  head.writeUInt8(VERSION, 6);
  head.writeUInt8(f.op, 7);
  head.writeUInt32LE(f.tag, 8);
  head.writeInt32LE(f.status, 12);
  head.writeUInt32LE(f.peer, 16);
  head.writeUInt32LE(f.peerGen, 20);
  head.writeInt32LE(f.type, 24);
  head.writeUInt32LE(f.flags, 28);
  head.writeBigUInt64LE(f.arg, 32);
  head.writeBigUInt64LE(f.deadline, 40);
  if (!small) return [head, f.payload];
  f.payload.copy(head, HEADER_SIZE);
  return [head];
}

/** A frame that cannot be accepted; the connection that sent it must be closed. */
export class ProtocolViolation extends Error {
  override readonly name = 'ProtocolViolation';
}

/**
 * Cuts a byte stream into frames. Validates every header before it waits for the payload, so an
 * oversized length is refused without buffering it.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /**
   * @param direction which side's frames this decoder reads: `call` (agent side) or `reply`.
   * @param maxPayload the largest payload accepted; raised after the bind handshake.
   */
  constructor(
    private readonly direction: 'call' | 'reply',
    public maxPayload: number = HANDSHAKE_PAYLOAD_MAX,
  ) {}

  /** Adds bytes and returns every complete frame; throws ProtocolViolation on a bad header. */
  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    while (this.buffered >= HEADER_SIZE) {
      const head = this.peek(HEADER_SIZE);
      const length = this.validate(head);
      if (this.buffered < length) break;
      const [whole, owned] = this.take(length);
      frames.push(parse(whole, owned));
    }
    return frames;
  }

  private validate(head: Buffer): number {
    const length = head.readUInt32LE(0);
    if (head.readUInt16LE(4) !== MAGIC) throw new ProtocolViolation('bad magic');
    const version = head.readUInt8(6);
    if (version !== VERSION) throw new ProtocolViolation(`unsupported version ${version}`);
    if (length < HEADER_SIZE) throw new ProtocolViolation(`frame length ${length} below header`);
    if (length - HEADER_SIZE > this.maxPayload) {
      throw new ProtocolViolation(
        `payload of ${length - HEADER_SIZE} bytes exceeds the limit of ${this.maxPayload}`,
      );
    }
    const op = head.readUInt8(7);
    const isReply = (op & REPLY_BIT) !== 0;
    const base = op & ~REPLY_BIT;
    if (base < Op.BIND || base > Op.MIGRATE || isReply !== (this.direction === 'reply')) {
      throw new ProtocolViolation(`unexpected op 0x${op.toString(16)}`);
    }
    const flags = head.readUInt32LE(28);
    if (flags & ~allowedFlags[this.direction]) {
      throw new ProtocolViolation(`unknown flags 0x${flags.toString(16)}`);
    }
    if (this.direction === 'call' && head.readInt32LE(12) !== 0) {
      throw new ProtocolViolation('status set in a call');
    }
    return length;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length >= n) return first.subarray(0, n);
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined.subarray(0, n);
  }

  /**
   * The next `n` bytes, and whether they may be kept as they are: true when they are a whole
   * buffer of their own, false when they share memory with following frames.
   */
  private take(n: number): [Buffer, boolean] {
    const first = this.chunks[0] as Buffer;
    this.buffered -= n;
    if (first.length === n) {
      this.chunks.shift();
      return [first, true];
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return [first.subarray(0, n), false];
    }
    const joined = Buffer.concat(this.chunks);
    this.chunks = joined.length > n ? [joined.subarray(n)] : [];
    return [joined.subarray(0, n), joined.length === n];
  }
}

function parse(b: Buffer, owned: boolean): Frame {
  return {
    op: b.readUInt8(7),
    tag: b.readUInt32LE(8),
    status: b.readInt32LE(12),
    peer: b.readUInt32LE(16),
    peerGen: b.readUInt32LE(20),
    type: b.readInt32LE(24),
    flags: b.readUInt32LE(28),
    arg: b.readBigUInt64LE(32),
    deadline: b.readBigUInt64LE(40),
    // A payload sharing a read chunk with other frames is copied, so that keeping it does not
    // pin the whole chunk; one that had a buffer to itself is used in place.
    payload:
      b.length === HEADER_SIZE
        ? EMPTY
        : owned
          ? b.subarray(HEADER_SIZE)
          : Buffer.from(b.subarray(HEADER_SIZE)),
  };
}

/**
 * Writes frames to a socket. Frames written in one turn of the event loop leave in one writev:
 * the socket is corked at the first write and uncorked on the next tick.
 */
export class FrameWriter {
  private corked = false;

  constructor(private readonly socket: Socket) {}

  write(f: Frame): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    for (const buf of encode(f)) this.socket.write(buf);
  }
}
