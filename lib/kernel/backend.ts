/**
 * The kernel backend: /dev/dvk (dvk.ko) through the native addon. One bound endpoint is one
 * open file. Calls are submitted to the kernel (DVK_IOC_SUBMIT) and settle when the file turns
 * readable and their completions are reaped; the addon polls the file on this thread's event
 * loop, so it works the same in worker threads. The kernel decides every outcome: a timeout or
 * an abort asks it to cancel the call, and a call it had already completed keeps its result.
 */
import { closeSync, openSync } from 'node:fs';
import type {
  Backend,
  BoundEndpoint,
  CallControl,
  MigrationReport,
  NodeStatus,
} from '../backend.js';
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

  async migrate(): Promise<MigrationReport> {
    throw new DvkError('EOPNOTSUPP', 'moving endpoints that live in dvk.ko is not built yet');
  }
}

/** What DVK_IOC_SUBMIT is given for a call (absent fields are zero). */
interface Submission {
  op: number;
  peer?: number;
  peerGen?: number;
  type?: number;
  payload?: Uint8Array;
  from?: number;
  fromGen?: number;
  /** DVK_CALL_NONBLOCK for a send that must not wait. */
  flags?: number;
  /** A notify's. */
  bits?: number;
}

/** A call of this endpoint, from its submission (or its wait for one) until it settles. */
interface Call {
  resolve(value: Message | undefined): void;
  reject(err: DvkError): void;
  /** Makes the DVK_IOC_SUBMIT for it; returns the token. */
  submit(): number;
  deadline: bigint;
  signal: AbortSignal | undefined;
  timer: Deadline | undefined;
  onAbort: (() => void) | undefined;
  /** Set once the kernel has it. */
  token: number | undefined;
}

/** Offsets in a reaped record (`struct dvk_completion`, little-endian). */
const TOKEN = 0;
const RESULT = 12;
const MSG = 16;

class KernelEndpoint implements BoundEndpoint {
  /** Calls the kernel holds, by token. */
  private readonly pending = new Map<number, Call>();
  /**
   * Calls beyond DVK_ASYNC_MAX, in call order: they wait here for the kernel to take them, as
   * callers of the agent wait when it stops reading. Their timeouts and aborts still apply.
   */
  private readonly backlog: Call[] = [];
  private readonly poller: NativePoller;
  private readonly ops: NativeAddon['abi']['ops'];
  private reapBuffer: Buffer;
  /** Where synchronous receives land before their payload is copied out. */
  private readonly scratch: Buffer;
  private closed = false;

  constructor(
    private readonly addon: NativeAddon,
    private readonly fd: number,
    readonly address: EndpointAddress,
    readonly maxPayload: number,
  ) {
    this.ops = addon.abi.ops;
    // One largest record fits; usually many small ones do.
    this.reapBuffer = Buffer.alloc(Math.max(64 * 1024, addon.abi.completionSize + maxPayload + 8));
    this.scratch = Buffer.alloc(maxPayload);
    this.poller = new addon.Poller(fd, () => this.onReadable());
  }

  /**
   * A non-blocking send is submitted too, with DVK_CALL_NONBLOCK: to an endpoint on another
   * node it can only complete with that node's verdict, a round trip away.
   */
  async send(dst: number, dstGen: number, type: number, payload: Uint8Array, c: CallControl) {
    const flags = c.nonblock ? this.addon.abi.callNonblock : 0;
    await this.call({ op: this.ops.send, peer: dst, peerGen: dstGen, type, payload, flags }, c);
  }

  async receive(from: number, fromGen: number, c: CallControl): Promise<Message> {
    if (c.nonblock) return this.receiveSync(from, fromGen, 0n, true);
    return this.call({ op: this.ops.receive, from, fromGen }, c) as Promise<Message>;
  }

  async sendrec(
    dst: number,
    dstGen: number,
    type: number,
    payload: Uint8Array,
    c: CallControl,
  ): Promise<Message> {
    return this.call(
      { op: this.ops.sendrec, peer: dst, peerGen: dstGen, type, payload },
      c,
    ) as Promise<Message>;
  }

  async reply(to: number, toGen: number, requestId: bigint, type: number, payload: Uint8Array) {
    this.sync(() => this.addon.reply(this.fd, to, toGen, requestId, type, payload));
  }

  /** Settles once the bits are pending at the destination, which may be on another node. */
  async notify(dst: number, dstGen: number, bits: number) {
    const c = { deadline: 0n, nonblock: false, signal: undefined };
    await this.call({ op: this.ops.notify, peer: dst, peerGen: dstGen, bits }, c);
  }

  /** Blocks this thread until a message comes (see `Endpoint.receiveSync`). */
  receiveSync(from: number, fromGen: number, deadline: bigint, nonblock = false): Message {
    const header = this.sync(() =>
      this.addon.receiveSync(this.fd, from, fromGen, deadline, nonblock, this.scratch),
    );
    return toMessage(header, Buffer.from(this.scratch.subarray(0, header.size)));
  }

  /** Blocks this thread until the reply comes (see `Endpoint.sendrecSync`). */
  sendrecSync(dst: number, dstGen: number, type: number, payload: Uint8Array, deadline: bigint) {
    const header = this.sync(() =>
      this.addon.sendrecSync(this.fd, dst, dstGen, type, payload, deadline, this.scratch),
    );
    return toMessage(header, Buffer.from(this.scratch.subarray(0, header.size)));
  }

  /**
   * Cancels what is still pending (those calls reject with ECANCELED; calls the kernel had
   * completed keep their outcome), then closes the file, which unbinds.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const closing = () => new DvkError('ECANCELED', 'endpoint closed');
    for (const call of this.backlog.splice(0)) this.settle(call, closing());
    try {
      for (const call of [...this.pending.values()].reverse()) this.giveUp(call, closing());
      this.reap();
    } finally {
      for (const call of [...this.pending.values()]) this.settle(call, closing());
      this.poller.close(); // closes the file too
    }
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

  private call(s: Submission, c: CallControl): Promise<Message | undefined> {
    if (this.closed) return Promise.reject(new DvkError('EBADF'));
    return new Promise((resolve, reject) => {
      const call: Call = {
        resolve,
        reject,
        submit: () =>
          this.addon.submit(
            this.fd,
            s.op,
            s.peer ?? 0,
            s.peerGen ?? 0,
            s.type ?? 0,
            s.payload ?? null,
            s.from ?? 0,
            s.fromGen ?? 0,
            s.flags ?? 0,
            s.bits ?? 0,
          ),
        deadline: c.deadline,
        signal: c.signal,
        timer: undefined,
        onAbort: undefined,
        token: undefined,
      };
      call.timer = deadlineTimer(call.deadline, () => this.giveUp(call, new DvkError('ETIMEDOUT')));
      if (call.signal) {
        call.onAbort = () => this.giveUp(call, new DvkError('ECANCELED'));
        call.signal.addEventListener('abort', call.onAbort, { once: true });
      }
      // Behind calls already waiting for the kernel, a call waits too: calls keep their order.
      // A non-blocking one would wait there: it fails instead.
      if (this.backlog.length === 0 && this.trySubmit(call)) return;
      if (c.nonblock) this.settle(call, new DvkError('EAGAIN'));
      else this.backlog.push(call);
    });
  }

  /** Hands a call to the kernel; false if it holds DVK_ASYNC_MAX calls already. */
  private trySubmit(call: Call): boolean {
    let token: number;
    try {
      token = call.submit();
    } catch (err) {
      if ((err as ErrnoError).code === 'EAGAIN') return false;
      this.settle(call, fromNative(err));
      return true;
    }
    call.token = token;
    this.pending.set(token, call);
    if (this.pending.size === 1) this.poller.start();
    return true;
  }

  /** Submits what waited, in order, while the kernel takes it. */
  private drainBacklog(): void {
    while (this.backlog.length > 0 && this.trySubmit(this.backlog[0] as Call)) {
      this.backlog.shift();
    }
  }

  /**
   * A timeout, an abort or close(). A call still waiting for submission never had an effect; a
   * submitted one the kernel either undoes, or has completed, and then its completion settles it.
   */
  private giveUp(call: Call, reason: DvkError): void {
    if (call.token === undefined) {
      const i = this.backlog.indexOf(call);
      if (i >= 0) {
        this.backlog.splice(i, 1);
        this.settle(call, reason);
      }
      return;
    }
    if (!this.pending.has(call.token)) return;
    let undone: boolean;
    try {
      undone = this.addon.cancel(this.fd, call.token);
    } catch (err) {
      undone = true;
      reason = fromNative(err);
    }
    if (undone) this.settle(call, reason);
  }

  /** Settles a call once: rejects it with `err`, or resolves it with `value`. */
  private settle(call: Call, err: DvkError | null, value?: Message): void {
    if (call.token !== undefined) {
      if (!this.pending.delete(call.token)) return;
      if (this.pending.size === 0) this.poller.stop();
    }
    call.timer?.clear();
    if (call.onAbort) call.signal?.removeEventListener('abort', call.onAbort);
    if (err) call.reject(err);
    else call.resolve(value);
  }

  /**
   * The file is readable: completions wait. Should reaping itself fail (it does not, short of a
   * bug), every call fails with it rather than wait on a poll that keeps firing.
   */
  private onReadable(): void {
    try {
      this.reap();
      this.drainBacklog();
    } catch (err) {
      const reason = fromNative(err);
      for (const call of [...this.pending.values(), ...this.backlog.splice(0)]) {
        this.settle(call, reason);
      }
    }
  }

  /** Reaps every completion the kernel holds and settles its call. */
  private reap(): void {
    for (;;) {
      let got: { count: number; size: number };
      try {
        got = this.addon.reap(this.fd, this.reapBuffer);
      } catch (err) {
        const e = err as ErrnoError;
        if (e.code === 'EMSGSIZE' && e.needed) {
          this.reapBuffer = Buffer.alloc(e.needed);
          continue;
        }
        throw fromNative(err);
      }
      if (got.count === 0) return;
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
      const call = this.pending.get(token);
      if (!call) continue;
      if (result < 0) this.settle(call, DvkError.fromErrno(-result));
      else this.settle(call, null, msg.flags || msg.peerGen ? toMessage(msg, payload) : undefined);
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
