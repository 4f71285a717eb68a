/**
 * The kernel backend: /dev/dvk (dvk.ko) through the native addon. One bound endpoint is one
 * open file. Calls are submitted to the kernel (DVK_IOC_SUBMIT) and settle when the file turns
 * readable and their completions are reaped; the addon polls the file on this thread's event
 * loop, so it works the same in worker threads. The kernel decides every outcome: a timeout or
 * an abort asks it to cancel the call, and a call it had already completed keeps its result.
 */
import { closeSync, openSync } from 'node:fs';
import type { Backend, BoundEndpoint, CallControl, NodeStatus } from '../backend.js';
import { type Deadline, deadlineTimer } from '../deadline.js';
import { DvkError } from '../errors.js';
import { type EndpointAddress, kindOf, type Message } from '../message.js';
import { type NativeAddon, type NativeMessage, type NativePoller, native } from '../native.js';
import { kernelStatus } from './status.js';

/** Where the module's device is. */
export const DEVICE_PATH = '/dev/dvk';

/** An Error thrown by the addon: its `code` is an errno name. */
interface ErrnoError extends Error {
  code?: string;
  errno?: number;
  needed?: number;
}

/** Turns an addon error into a DvkError with the same errno. */
export function fromNative(err: unknown): DvkError {
  if (err instanceof DvkError) return err;
  const e = err as ErrnoError;
  // The errno says what happened; its standard text reads the same on every backend.
  if (typeof e?.errno === 'number') return DvkError.fromErrno(e.errno);
  return new DvkError('EPROTO', `native addon: ${String(e?.message ?? err)}`);
}

/** Opens /dev/dvk; a missing device means the node (its kernel module) is unreachable. */
export function openDevice(path = DEVICE_PATH): number {
  try {
    return openSync(path, 'r+');
  } catch (err) {
    const code = (err as ErrnoError).code;
    if (code === 'ENOENT' || code === 'ENXIO' || code === 'ENODEV') {
      throw new DvkError('EHOSTUNREACH', `${path} is missing: is dvk.ko loaded?`);
    }
    if (code === 'EACCES' || code === 'EPERM') throw new DvkError('EACCES', `cannot open ${path}`);
    throw new DvkError('EPROTO', `cannot open ${path}: ${(err as Error).message}`);
  }
}

/** The addon, checked once against the module it talks to. */
function checkedAddon(fd: number): NativeAddon {
  const addon = native();
  const version = addon.dvkVersion(fd);
  if (version.abi !== addon.abi.version || !(version.features & addon.abi.featureAsync)) {
    throw new DvkError(
      'EPROTO',
      `dvk.ko speaks ABI ${version.abi} (features 0x${version.features.toString(16)}); ` +
        `this addon was built for ABI ${addon.abi.version} with asynchronous calls`,
    );
  }
  return addon;
}

export class KernelBackend implements Backend {
  readonly kind = 'kernel' as const;

  constructor(readonly devicePath = DEVICE_PATH) {}

  async bind(dc: number | string, endpoint: number): Promise<BoundEndpoint> {
    const fd = openDevice(this.devicePath);
    try {
      const addon = checkedAddon(fd);
      const bound = addon.bind(fd, dc, endpoint);
      const { maxPayload } = addon.dvkVersion(fd);
      const address = { dc: bound.dc, endpoint, generation: bound.generation };
      // From here the endpoint's poller owns the file.
      return new KernelEndpoint(addon, fd, address, maxPayload);
    } catch (err) {
      closeSync(fd);
      throw fromNative(err);
    }
  }

  status(): Promise<NodeStatus> {
    return kernelStatus();
  }
}

interface Pending {
  resolve(value: Message | undefined): void;
  reject(err: DvkError): void;
  timer: Deadline | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** Offsets in a reaped record (`struct dvk_completion`, little-endian). */
const TOKEN = 0;
const RESULT = 12;
const MSG = 16;

class KernelEndpoint implements BoundEndpoint {
  private readonly pending = new Map<number, Pending>();
  private readonly poller: NativePoller;
  private readonly ops: NativeAddon['abi']['ops'];
  private reapBuffer: Buffer;
  private closed = false;

  constructor(
    private readonly addon: NativeAddon,
    private readonly fd: number,
    readonly address: EndpointAddress,
    readonly maxPayload: number,
  ) {
    this.ops = addon.abi.ops;
    // One largest record fits; usually many small ones do.
    this.reapBuffer = Buffer.alloc(Math.max(64 * 1024, addon.abi.completionSize + maxPayload));
    this.poller = new addon.Poller(fd, () => this.reap());
  }

  async send(dst: number, dstGen: number, type: number, payload: Uint8Array, c: CallControl) {
    if (c.nonblock) {
      this.sync(() => this.addon.sendNonblock(this.fd, dst, dstGen, type, payload));
      return;
    }
    await this.submit(this.ops.send, dst, dstGen, type, payload, 0, 0, c);
  }

  async receive(from: number, fromGen: number, c: CallControl): Promise<Message> {
    if (c.nonblock) return this.receiveSync(from, fromGen, 0n, true);
    return this.submit(this.ops.receive, 0, 0, 0, null, from, fromGen, c) as Promise<Message>;
  }

  async sendrec(
    dst: number,
    dstGen: number,
    type: number,
    payload: Uint8Array,
    c: CallControl,
  ): Promise<Message> {
    return this.submit(this.ops.sendrec, dst, dstGen, type, payload, 0, 0, c) as Promise<Message>;
  }

  async reply(to: number, toGen: number, requestId: bigint, type: number, payload: Uint8Array) {
    this.sync(() => this.addon.reply(this.fd, to, toGen, requestId, type, payload));
  }

  async notify(dst: number, dstGen: number, bits: number) {
    this.sync(() => this.addon.notify(this.fd, dst, dstGen, bits));
  }

  /** Blocks this thread until a message comes (see `Endpoint.receiveSync`). */
  receiveSync(from: number, fromGen: number, deadline: bigint, nonblock = false): Message {
    const buffer = Buffer.allocUnsafe(this.maxPayload);
    const header = this.sync(() =>
      this.addon.receiveSync(this.fd, from, fromGen, deadline, nonblock, buffer),
    );
    return toMessage(header, buffer.subarray(0, header.size));
  }

  /** Blocks this thread until the reply comes (see `Endpoint.sendrecSync`). */
  sendrecSync(dst: number, dstGen: number, type: number, payload: Uint8Array, deadline: bigint) {
    const buffer = Buffer.allocUnsafe(this.maxPayload);
    const header = this.sync(() =>
      this.addon.sendrecSync(this.fd, dst, dstGen, type, payload, deadline, buffer),
    );
    return toMessage(header, buffer.subarray(0, header.size));
  }

  /**
   * Cancels what is still pending (those calls reject with ECANCELED; calls the kernel had
   * completed keep their outcome), then closes the file, which unbinds.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const token of [...this.pending.keys()].reverse()) {
      this.giveUp(token, new DvkError('ECANCELED', 'endpoint closed'));
    }
    this.reap();
    for (const [token, p] of this.pending) {
      this.forget(token, p);
      p.reject(new DvkError('ECANCELED', 'endpoint closed'));
    }
    this.poller.close(); // closes the file too
  }

  onLost(): void {
    // An open file keeps the module loaded and the endpoint bound: it is never lost.
  }

  private sync<T>(call: () => T): T {
    if (this.closed) throw new DvkError('EBADF');
    try {
      return call();
    } catch (err) {
      throw fromNative(err);
    }
  }

  private submit(
    op: number,
    peer: number,
    peerGen: number,
    type: number,
    payload: Uint8Array | null,
    from: number,
    fromGen: number,
    c: CallControl,
  ): Promise<Message | undefined> {
    const token = this.sync(() =>
      this.addon.submit(this.fd, op, peer, peerGen, type, payload, from, fromGen),
    );
    return new Promise((resolve, reject) => {
      const p: Pending = {
        resolve,
        reject,
        timer: undefined,
        signal: c.signal,
        onAbort: undefined,
      };
      this.pending.set(token, p);
      if (this.pending.size === 1) this.poller.start();
      p.timer = deadlineTimer(c.deadline, () => this.giveUp(token, new DvkError('ETIMEDOUT')));
      if (c.signal) {
        p.onAbort = () => this.giveUp(token, new DvkError('ECANCELED'));
        c.signal.addEventListener('abort', p.onAbort, { once: true });
      }
    });
  }

  /** Asks the kernel to undo a call; if it had completed, its completion settles it instead. */
  private giveUp(token: number, reason: DvkError): void {
    const p = this.pending.get(token);
    if (!p) return;
    let undone: boolean;
    try {
      undone = this.addon.cancel(this.fd, token);
    } catch (err) {
      undone = true;
      reason = fromNative(err);
    }
    if (!undone) return;
    this.forget(token, p);
    p.reject(reason);
  }

  private forget(token: number, p: Pending): void {
    this.pending.delete(token);
    p.timer?.clear();
    if (p.onAbort) p.signal?.removeEventListener('abort', p.onAbort);
    if (this.pending.size === 0) this.poller.stop();
  }

  /** Reaps every completion the kernel holds and settles its call. */
  private reap(): void {
    for (;;) {
      let got: { count: number; size: number };
      try {
        got = this.addon.reap(this.fd, this.reapBuffer);
      } catch (err) {
        const e = err as ErrnoError;
        if (e.code === 'EAGAIN') return;
        if (e.code === 'EMSGSIZE' && e.needed) {
          this.reapBuffer = Buffer.alloc(e.needed);
          continue;
        }
        throw fromNative(err);
      }
      this.settleRecords(got.count);
    }
  }

  private settleRecords(count: number): void {
    const buf = this.reapBuffer;
    const header = this.addon.abi.completionSize;
    let off = 0;
    for (let i = 0; i < count; i++) {
      const token = Number(buf.readBigUInt64LE(off + TOKEN));
      const result = buf.readInt32LE(off + RESULT);
      const msg = readMessage(buf, off + MSG);
      const payload = Buffer.from(buf.subarray(off + header, off + header + msg.size));
      off += header + Math.ceil(msg.size / 8) * 8;
      const p = this.pending.get(token);
      if (!p) continue;
      this.forget(token, p);
      if (result < 0) p.reject(DvkError.fromErrno(-result));
      else if (msg.flags || msg.peerGen) p.resolve(toMessage(msg, payload));
      else p.resolve(undefined);
    }
  }
}

function readMessage(buf: Buffer, at: number): NativeMessage {
  return {
    peer: buf.readUInt32LE(at),
    peerGen: buf.readUInt32LE(at + 4),
    type: buf.readInt32LE(at + 8),
    flags: buf.readUInt32LE(at + 12),
    requestId: buf.readBigUInt64LE(at + 16),
    size: buf.readUInt32LE(at + 32),
    bits: buf.readUInt32LE(at + 36),
  };
}

function toMessage(m: NativeMessage, payload: Buffer): Message {
  return {
    kind: kindOf(m.flags),
    source: m.peer,
    sourceGeneration: m.peerGen,
    type: m.type,
    requestId: m.requestId,
    bits: m.bits,
    payload,
  };
}
