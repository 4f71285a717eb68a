/**
 * What agents say to each other inside a link's messages: one record per link message, a
 * 56-byte little-endian header followed by the payload.
 *
 *   off size field
 *     0  u8   kind       Record.*
 *     1  u8   flags      RecordFlags.*; unknown bits are refused
 *     2  u16  reserved   0
 *     4  u32  dc
 *     8  u32  dst        destination endpoint (SEND, SENDREC, NOTIFY); the caller (REPLY)
 *    12  u32  dstGen
 *    16  u32  src        the endpoint acting: sender, caller, claimant, server (REPLY)
 *    20  u32  srcGen
 *    24  i32  type       the application's message type
 *    28  i32  value      -errno (RESULT, CLAIMED), notification bits as u32 (NOTIFY)
 *    32  u64  id         the caller's agent numbers its calls and claims; answers echo it
 *    40  u64  requestId  the caller's own request id (SENDREC, REPLY)
 *    48  u64  timeoutNs  what is left of the caller's deadline when sent; 0 = none
 *
 * SNAPSHOT's payload lists the sender's bound endpoints as (dc, endpoint, generation, epoch)
 * u32 quadruples. MIGRATE's payload is JSON (lib/cluster/migration.ts), except a STATE
 * step's, which is a piece of a service's snapshot. Every other payload is the application's.
 */
import { ProtocolViolation } from '../user/wire.js';

export const RECORD_HEADER = 56;

export const Record = {
  /** Every endpoint bound on the sending node; replaces what the receiver knew of it. */
  SNAPSHOT: 1,
  /** The sender wants to bind src (generation srcGen); answered by CLAIMED. */
  CLAIM: 2,
  /** value 0: go ahead; -EADDRINUSE: this node has it, or claims it first. */
  CLAIMED: 3,
  /** src/srcGen is no longer bound on the sending node (or its claim failed). */
  UNBOUND: 4,
  SEND: 5,
  SENDREC: 6,
  /** The outcome of SEND (value 0 or -errno), or the failure of a SENDREC. */
  RESULT: 7,
  /** The answer to SENDREC id, from server src to caller dst. */
  REPLY: 8,
  /** The caller gives up on call id: withdraw it if it is still waiting. */
  CANCEL: 9,
  NOTIFY: 10,
  /** A step of a migration; `type` says which (lib/cluster/migration.ts). */
  MIGRATE: 11,
} as const;
export type RecordKind = (typeof Record)[keyof typeof Record];

export const RecordFlags = {
  /** Fail with EAGAIN instead of waiting for room. */
  NONBLOCK: 1,
  /**
   * A call the sending node forwards for an incarnation that moved away from it: its source
   * lives on another node (or on the receiving one), not on the sender (docs/migration.md).
   */
  FORWARDED: 2,
} as const;

const recordFlagsAll = RecordFlags.NONBLOCK | RecordFlags.FORWARDED;

export interface RemoteRecord {
  kind: RecordKind;
  flags: number;
  dc: number;
  dst: number;
  dstGen: number;
  src: number;
  srcGen: number;
  type: number;
  value: number;
  id: bigint;
  requestId: bigint;
  timeoutNs: bigint;
  payload: Buffer;
}

export interface BoundRecord {
  dc: number;
  endpoint: number;
  generation: number;
  /** Where the incarnation lives: 1 when bound, one more at every move (docs/migration.md). */
  epoch: number;
}

const empty = Buffer.alloc(0);

export function record(fields: Partial<RemoteRecord> & { kind: RecordKind }): RemoteRecord {
  return {
    flags: 0,
    dc: 0,
    dst: 0,
    dstGen: 0,
    src: 0,
    srcGen: 0,
    type: 0,
    value: 0,
    id: 0n,
    requestId: 0n,
    timeoutNs: 0n,
    payload: empty,
    ...fields,
  };
}

export function encodeRecord(r: RemoteRecord): Buffer {
  const b = Buffer.allocUnsafe(RECORD_HEADER + r.payload.length);
  b.writeUInt8(r.kind, 0);
  b.writeUInt8(r.flags, 1);
  b.writeUInt16LE(0, 2);
  b.writeUInt32LE(r.dc, 4);
  b.writeUInt32LE(r.dst, 8);
  b.writeUInt32LE(r.dstGen, 12);
  b.writeUInt32LE(r.src, 16);
  b.writeUInt32LE(r.srcGen, 20);
  b.writeInt32LE(r.type, 24);
  b.writeInt32LE(r.value | 0, 28);
  b.writeBigUInt64LE(r.id, 32);
  b.writeBigUInt64LE(r.requestId, 40);
  b.writeBigUInt64LE(r.timeoutNs, 48);
  r.payload.copy(b, RECORD_HEADER);
  return b;
}

/** Decodes one record; throws ProtocolViolation if it breaks the format. */
export function decodeRecord(b: Buffer): RemoteRecord {
  if (b.length < RECORD_HEADER) throw new ProtocolViolation(`record of ${b.length} bytes`);
  const kind = b.readUInt8(0);
  if (kind < Record.SNAPSHOT || kind > Record.MIGRATE) {
    throw new ProtocolViolation(`unknown record kind ${kind}`);
  }
  const flags = b.readUInt8(1);
  if (flags & ~recordFlagsAll) throw new ProtocolViolation(`unknown record flags ${flags}`);
  if (b.readUInt16LE(2) !== 0) throw new ProtocolViolation('reserved record field set');
  const r: RemoteRecord = {
    kind: kind as RecordKind,
    flags,
    dc: b.readUInt32LE(4),
    dst: b.readUInt32LE(8),
    dstGen: b.readUInt32LE(12),
    src: b.readUInt32LE(16),
    srcGen: b.readUInt32LE(20),
    type: b.readInt32LE(24),
    value: b.readInt32LE(28),
    id: b.readBigUInt64LE(32),
    requestId: b.readBigUInt64LE(40),
    timeoutNs: b.readBigUInt64LE(48),
    payload: b.subarray(RECORD_HEADER),
  };
  if (r.kind === Record.SNAPSHOT && r.payload.length % SNAPSHOT_ENTRY !== 0) {
    throw new ProtocolViolation(`SNAPSHOT payload of ${r.payload.length} bytes`);
  }
  return r;
}

const SNAPSHOT_ENTRY = 16;

export function encodeSnapshot(bound: BoundRecord[]): Buffer {
  const b = Buffer.allocUnsafe(bound.length * SNAPSHOT_ENTRY);
  bound.forEach((e, i) => {
    const at = i * SNAPSHOT_ENTRY;
    b.writeUInt32LE(e.dc, at);
    b.writeUInt32LE(e.endpoint, at + 4);
    b.writeUInt32LE(e.generation, at + 8);
    b.writeUInt32LE(e.epoch, at + 12);
  });
  return b;
}

export function decodeSnapshot(payload: Buffer): BoundRecord[] {
  const out: BoundRecord[] = [];
  for (let off = 0; off + SNAPSHOT_ENTRY <= payload.length; off += SNAPSHOT_ENTRY) {
    out.push({
      dc: payload.readUInt32LE(off),
      endpoint: payload.readUInt32LE(off + 4),
      generation: payload.readUInt32LE(off + 8),
      epoch: payload.readUInt32LE(off + 12),
    });
  }
  return out;
}
