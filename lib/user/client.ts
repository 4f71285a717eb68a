/**
 * The userspace backend: each bound endpoint is one connection to the node agent's Unix socket.
 * Calls are frames tagged with a per-connection number; the agent answers each tag exactly once,
 * also after a CANCEL, so a call's outcome is always the agent's verdict and never a guess.
 */
import { once } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import type {
  Backend,
  BoundEndpoint,
  CallControl,
  MigrationReport,
  NodeStatus,
} from '../backend.js';
import { DvkError } from '../errors.js';
import { type EndpointAddress, kindOf, type Message } from '../message.js';
import {
  CallFlags,
  type Frame,
  FrameDecoder,
  FrameWriter,
  frame,
  Op,
  ProtocolViolation,
} from './wire.js';

interface Pending {
  resolve(f: Frame): void;
  reject(err: DvkError): void;
}

/** One connection to the agent. */
class Connection {
  private readonly decoder = new FrameDecoder('reply');
  private readonly pending = new Map<number, Pending>();
  private nextTag = 1;
  private readonly writer: FrameWriter;
  /** Set once the connection is over; later calls fail with it. */
  private ended: DvkError | null = null;
  private lostListeners: ((reason: Error) => void)[] = [];
  /** Called when the last pending call settles, while `shutdown` waits for that. */
  private onIdle: (() => void) | undefined;

  private constructor(private readonly socket: Socket) {
    this.writer = new FrameWriter(socket);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () =>
      this.end(new DvkError('EHOSTUNREACH', 'connection to the node agent lost'), true),
    );
  }

  static open(path: string): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        socket.setNoDelay?.(true);
        resolve(new Connection(socket));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => reject(connectError(path, err)));
    });
  }

  set maxPayload(n: number) {
    this.decoder.maxPayload = n;
  }

  onLost(listener: (reason: Error) => void): void {
    this.lostListeners.push(listener);
  }

  /** The next free tag; after 2^32 calls the numbers wrap, skipping calls still waiting. */
  private takeTag(): number {
    let tag: number;
    do {
      tag = this.nextTag;
      this.nextTag = this.nextTag === 0xffff_ffff ? 1 : this.nextTag + 1;
    } while (this.pending.has(tag));
    return tag;
  }

  /** Sends a call the agent answers only if it fails (REPLY); throws if the connection ended. */
  post(f: Frame): void {
    if (this.ended) throw this.ended;
    f.tag = this.takeTag();
    this.write(f);
  }

  /** Sends a call and resolves with the agent's successful reply, or rejects with its error. */
  call(f: Frame, signal?: AbortSignal): Promise<Frame> {
    if (this.ended) return Promise.reject(this.ended);
    const tag = this.takeTag();
    f.tag = tag;
    return new Promise<Frame>((resolve, reject) => {
      let onAbort: (() => void) | undefined;
      if (signal) {
        onAbort = () => this.write(frame({ op: Op.CANCEL, arg: BigInt(tag) }));
        signal.addEventListener('abort', onAbort, { once: true });
      }
      const cleanup = () => {
        if (onAbort) signal?.removeEventListener('abort', onAbort);
      };
      this.pending.set(tag, {
        resolve: (reply) => {
          cleanup();
          resolve(reply);
        },
        reject: (err) => {
          cleanup();
          reject(err);
        },
      });
      this.write(f);
    });
  }

  private write(f: Frame): void {
    if (this.ended) return;
    this.writer.write(f);
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof ProtocolViolation)) throw err;
      this.socket.destroy();
      this.end(new DvkError('EPROTO', `agent sent a bad frame: ${err.message}`), true);
      return;
    }
    for (const f of frames) {
      const p = this.pending.get(f.tag);
      if (!p) continue;
      this.pending.delete(f.tag);
      if (f.status === 0) p.resolve(f);
      else p.reject(DvkError.fromErrno(-f.status, f.payload.toString('utf8') || undefined));
    }
    if (this.pending.size === 0) this.onIdle?.();
  }

  /**
   * Ends the connection cleanly: frames already written (a reply, say) still reach the agent,
   * and every call still waiting is cancelled and settles with the agent's verdict, so a call
   * reported as cancelled never took effect. Bounded: calls the agent has not answered within
   * `graceMs` reject with ECANCELED.
   */
  async shutdown(graceMs = 2000): Promise<void> {
    if (this.ended) return;
    if (this.pending.size > 0) {
      const settled = new Promise<void>((resolve) => {
        this.onIdle = resolve;
      });
      // Newest first: cancelling an older held send first could let a newer one into the
      // room it leaves, delivering it after its predecessor was cancelled.
      for (const tag of [...this.pending.keys()].reverse()) {
        this.write(frame({ op: Op.CANCEL, tag: this.takeTag(), arg: BigInt(tag) }));
      }
      await atMost(settled, graceMs);
    }
    const reason = new DvkError('ECANCELED', 'endpoint closed');
    this.ended ??= reason;
    // The agent unbinds when it reads our FIN and answers with its own: once the socket has
    // closed, the endpoint number is free to bind again (bounded, should the agent hang).
    const closed = this.socket.closed ? Promise.resolve() : once(this.socket, 'close');
    this.socket.end();
    for (const p of this.pending.values()) p.reject(reason);
    this.pending.clear();
    await atMost(closed, graceMs);
  }

  /** Ends the connection at once: every pending call rejects with `reason`. */
  end(reason: DvkError, lost: boolean): void {
    if (this.ended) return;
    this.ended = reason;
    this.socket.destroy();
    for (const p of this.pending.values()) p.reject(reason);
    this.pending.clear();
    this.onIdle?.();
    if (lost) for (const l of this.lostListeners) l(reason);
  }
}

function connectError(path: string, err: NodeJS.ErrnoException): DvkError {
  if (err.code === 'EACCES' || err.code === 'EPERM') {
    return new DvkError('EACCES', `no permission to connect to the node agent at ${path}`);
  }
  return new DvkError(
    'EHOSTUNREACH',
    `no node agent at ${path} (${err.code ?? err.message}); start one with \`dvk agent\``,
  );
}

function callFlags(c: CallControl): number {
  return c.nonblock ? CallFlags.NONBLOCK : 0;
}

function toMessage(f: Frame): Message {
  const kind = kindOf(f.flags);
  return {
    kind,
    source: f.peer,
    sourceGeneration: f.peerGen,
    type: f.type,
    requestId: kind === 'notification' ? 0n : f.arg,
    bits: kind === 'notification' ? Number(f.arg) : 0,
    payload: f.payload,
  };
}

function asBuffer(payload: Uint8Array): Buffer {
  return Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}

function requestKey(source: number, generation: number, requestId: bigint): string {
  return `${source}:${generation}:${requestId}`;
}

class UserEndpoint implements BoundEndpoint {
  private nextRequest = 1n;
  /**
   * Requests received and not answered yet. Checking here lets `reply` complete without a
   * round trip to the agent, which checks again and drops anything that does not match.
   */
  private readonly unanswered = new Set<string>();

  constructor(
    private readonly conn: Connection,
    readonly address: EndpointAddress,
    readonly maxPayload: number,
  ) {}

  async send(dst: number, dstGen: number, type: number, payload: Uint8Array, c: CallControl) {
    await this.conn.call(
      frame({
        op: Op.SEND,
        peer: dst,
        peerGen: dstGen,
        type,
        flags: callFlags(c),
        deadline: c.deadline,
        payload: asBuffer(payload),
      }),
      c.signal,
    );
  }

  async receive(from: number, fromGen: number, c: CallControl): Promise<Message> {
    const f = frame({
      op: Op.RECEIVE,
      peer: from,
      peerGen: fromGen,
      flags: callFlags(c),
      deadline: c.deadline,
    });
    const message = toMessage(await this.conn.call(f, c.signal));
    if (message.kind === 'request') {
      this.unanswered.add(requestKey(message.source, message.sourceGeneration, message.requestId));
    }
    return message;
  }

  async sendrec(
    dst: number,
    dstGen: number,
    type: number,
    payload: Uint8Array,
    c: CallControl,
  ): Promise<Message> {
    const f = frame({
      op: Op.SENDREC,
      peer: dst,
      peerGen: dstGen,
      type,
      flags: callFlags(c),
      arg: this.nextRequest++,
      deadline: c.deadline,
      payload: asBuffer(payload),
    });
    return toMessage(await this.conn.call(f, c.signal));
  }

  async reply(to: number, toGen: number, requestId: bigint, type: number, payload: Uint8Array) {
    const f = frame({
      op: Op.REPLY,
      peer: to,
      peerGen: toGen,
      type,
      arg: requestId,
      payload: asBuffer(payload),
    });
    const key = requestKey(to, toGen, requestId);
    if (!this.unanswered.has(key)) {
      throw new DvkError('EINVAL', `no unanswered request ${requestId} from endpoint ${to}`);
    }
    this.conn.post(f);
    this.unanswered.delete(key);
  }

  async notify(dst: number, dstGen: number, bits: number) {
    await this.conn.call(frame({ op: Op.NOTIFY, peer: dst, peerGen: dstGen, arg: BigInt(bits) }));
  }

  async close(): Promise<void> {
    await this.conn.shutdown();
  }

  onLost(listener: (reason: Error) => void): void {
    this.conn.onLost(listener);
  }
}

/** Reaches the node through its agent's Unix socket. */
export class UserBackend implements Backend {
  readonly kind = 'user' as const;

  constructor(readonly socketPath: string) {}

  async bind(dc: number | string, endpoint: number): Promise<BoundEndpoint> {
    const conn = await Connection.open(this.socketPath);
    const byId = typeof dc === 'number';
    try {
      const reply = await conn.call(
        frame({
          op: Op.BIND,
          peer: endpoint,
          flags: byId ? CallFlags.DC_BY_ID : 0,
          arg: byId ? BigInt(dc) : 0n,
          payload: byId ? Buffer.alloc(0) : Buffer.from(dc, 'utf8'),
        }),
      );
      const maxPayload = reply.type;
      conn.maxPayload = maxPayload;
      const address = { dc: Number(reply.arg), endpoint: reply.peer, generation: reply.peerGen };
      return new UserEndpoint(conn, address, maxPayload);
    } catch (err) {
      conn.end(new DvkError('ECANCELED', 'bind failed'), false);
      throw err;
    }
  }

  async status(): Promise<NodeStatus> {
    const conn = await Connection.open(this.socketPath);
    try {
      // Status documents can exceed the handshake limit on large nodes.
      conn.maxPayload = 64 * 1024 * 1024;
      const reply = await conn.call(frame({ op: Op.STATUS }));
      return JSON.parse(reply.payload.toString('utf8')) as NodeStatus;
    } finally {
      conn.end(new DvkError('ECANCELED', 'status read'), false);
    }
  }

  async migrate(dc: number | string, endpoint: number, to: string): Promise<MigrationReport> {
    const conn = await Connection.open(this.socketPath);
    try {
      const request = Buffer.from(JSON.stringify({ dc, endpoint, to }));
      const reply = await conn.call(frame({ op: Op.MIGRATE, payload: request }));
      return JSON.parse(reply.payload.toString('utf8')) as MigrationReport;
    } finally {
      conn.end(new DvkError('ECANCELED', 'migration answered'), false);
    }
  }
}

/** Waits for `promise` to settle, or `ms` at most. */
async function atMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const elapsed = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  await Promise.race([promise.catch(() => {}), elapsed]);
  clearTimeout(timer);
}
