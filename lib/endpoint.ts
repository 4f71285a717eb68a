import type { BoundEndpoint, CallControl } from './backend.js';
import { DvkError, type ErrorContext } from './errors.js';
import {
  type CallOptions,
  ENDPOINT_ANY,
  type EndpointAddress,
  type Message,
  type OutgoingMessage,
  type ReceiveOptions,
  type Target,
} from './message.js';

const EMPTY = new Uint8Array(0);
const U32_MAX = 0xffff_ffff;
/**
 * Timeouts above this (100 years, in ms) mean "no deadline", like Infinity: an absolute deadline
 * in CLOCK_MONOTONIC nanoseconds must fit the u64 the backends carry, and beyond a few hundred
 * years it would not.
 */
const MAX_TIMEOUT_MS = 100 * 365 * 24 * 3600 * 1000;

/**
 * A bound endpoint: the process's identity in its DC, and the handle for every primitive.
 * Obtain one with `DvkNode.bind`. Every method validates its arguments before anything leaves
 * the process and rejects with a `DvkError` that names this endpoint.
 *
 * Closing the endpoint (or the process ending) unbinds it. Calls still pending settle with
 * ECANCELED; calls made afterwards fail with EBADF.
 */
export class Endpoint implements AsyncIterable<Message> {
  /** The DC id, endpoint number and generation this bind received. */
  readonly address: EndpointAddress;
  private closed = false;
  /** Why the binding ended without `close()`: the node went away. Later calls fail with it. */
  private lost: DvkError | undefined;

  /** @internal Use `DvkNode.bind`. */
  constructor(
    private readonly bound: BoundEndpoint,
    private readonly defaultTimeout: number,
  ) {
    this.address = bound.address;
    bound.onLost((reason) => {
      this.closed = true;
      this.lost =
        reason instanceof DvkError ? reason : new DvkError('EHOSTUNREACH', reason.message);
    });
  }

  get dc(): number {
    return this.address.dc;
  }
  get endpoint(): number {
    return this.address.endpoint;
  }
  get generation(): number {
    return this.address.generation;
  }
  /** Largest payload this node accepts, in bytes. */
  get maxPayload(): number {
    return this.bound.maxPayload;
  }

  /**
   * Puts a message in `dst`'s queue. Resolves once it is there; if the queue is full it waits
   * (backpressure) until there is room, the timeout passes (ETIMEDOUT) or, with `timeout: 0`,
   * fails at once with EAGAIN. Messages from one sender reach one destination in send order.
   */
  send(dst: Target, message: OutgoingMessage, options: CallOptions = {}): Promise<void> {
    return this.run(
      'send',
      () => dst,
      () => {
        const c = this.outgoingCall(dst, message, options, true);
        return () => this.bound.send(c.ep, c.gen, c.type, c.payload, c.control);
      },
    );
  }

  /**
   * The next message, request or notification, in arrival order (pending notifications first).
   * With `from`, only those from that endpoint. A request must be answered with `reply`.
   */
  receive(options: ReceiveOptions = {}): Promise<Message> {
    return this.run(
      'receive',
      () => (isObject(options) ? options.from : undefined),
      () => {
        const control = this.control(options);
        const [ep, gen] = source(options.from);
        return () => this.bound.receive(ep, gen, control);
      },
    );
  }

  /**
   * Sends a request to `dst` and waits for its reply. If the call times out or is cancelled
   * before the server received the request, the request is withdrawn; a reply that arrives
   * after the caller gave up is dropped. If the server unbinds or dies first: ESRCH.
   * Many sendrecs may be in flight on one endpoint at once.
   */
  sendrec(dst: Target, message: OutgoingMessage, options: CallOptions = {}): Promise<Message> {
    return this.run(
      'sendrec',
      () => dst,
      () => {
        const c = this.outgoingCall(dst, message, options, false);
        return () => this.bound.sendrec(c.ep, c.gen, c.type, c.payload, c.control);
      },
    );
  }

  /**
   * Answers a request received from `receive`, exactly once; a second reply fails with EINVAL.
   * Resolves once the reply is on its way: a caller that gave up in the meantime drops it, and
   * the server is not told (a slow client must not make a server fail).
   */
  reply(request: Message, message: OutgoingMessage = {}): Promise<void> {
    return this.run(
      'reply',
      () => request?.source,
      () => {
        if (request?.kind !== 'request') throw new DvkError('EINVAL', 'reply needs a request');
        const { source, sourceGeneration, requestId } = request;
        // A request that went through JSON, say, is not one this endpoint received.
        if (
          !isU32(source) ||
          !isU32(sourceGeneration) ||
          typeof requestId !== 'bigint' ||
          requestId < 0n ||
          requestId > U64_MAX
        ) {
          throw new DvkError('EINVAL', 'reply needs a request as receive returned it');
        }
        const [type, payload] = this.outgoing(message);
        return () => this.bound.reply(source, sourceGeneration, requestId, type, payload);
      },
    );
  }

  /**
   * ORs `bits` (a non-zero 32-bit mask) into `dst`'s pending notifications from this endpoint.
   * Never blocks; repeated notifications coalesce until `dst` receives them.
   */
  notify(dst: Target, bits: number): Promise<void> {
    return this.run(
      'notify',
      () => dst,
      () => {
        const [ep, gen] = target(dst);
        if (!Number.isInteger(bits) || bits < 1 || bits > U32_MAX) {
          throw new DvkError('EINVAL', 'bits must be a non-zero 32-bit mask');
        }
        return () => this.bound.notify(ep, gen, bits);
      },
    );
  }

  /**
   * Received messages as an async iterator. It ends when the endpoint is closed; an aborted
   * `signal` ends it with ECANCELED, losing the node with EHOSTUNREACH. Options that are not an
   * object make the first `next()` reject with EINVAL.
   */
  async *messages(options: Omit<ReceiveOptions, 'timeout'> = {}): AsyncGenerator<Message> {
    if (!isObject(options)) {
      throw new DvkError('EINVAL', 'options must be an object', this.context('messages'));
    }
    for (;;) {
      if (this.lost) throw this.lost.withContext(this.context('messages'));
      if (this.closed) return;
      try {
        yield await this.receive({ ...options, timeout: Number.POSITIVE_INFINITY });
      } catch (err) {
        const closedHere = this.closed && !this.lost;
        if (closedHere && err instanceof DvkError && ['ECANCELED', 'EBADF'].includes(err.code)) {
          return;
        }
        throw err;
      }
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return this.messages();
  }

  /**
   * `receive`, synchronously: **blocks this thread, and its event loop, until a message
   * comes** or the timeout passes. For worker threads and tight loops that do nothing else.
   * Takes no AbortSignal (nothing could run to fire it). Kernel backend only: elsewhere it
   * throws EOPNOTSUPP. Errors are thrown, not returned as rejected promises.
   */
  receiveSync(options: Omit<ReceiveOptions, 'signal'> = {}): Message {
    return this.runSync(
      'receiveSync',
      () => options?.from,
      (bound) => {
        const control = this.control(options);
        const [ep, gen] = source(options.from);
        if (!bound.receiveSync)
          throw new DvkError('EOPNOTSUPP', 'receiveSync needs the kernel backend');
        return bound.receiveSync(ep, gen, control.deadline, control.nonblock);
      },
    );
  }

  /**
   * `sendrec`, synchronously: **blocks this thread, and its event loop, until the reply
   * comes** or the timeout passes. For worker threads and hot paths. Takes no AbortSignal.
   * Kernel backend only: elsewhere it throws EOPNOTSUPP.
   */
  sendrecSync(
    dst: Target,
    message: OutgoingMessage,
    options: Omit<CallOptions, 'signal'> = {},
  ): Message {
    return this.runSync(
      'sendrecSync',
      () => dst,
      (bound) => {
        const c = this.outgoingCall(dst, message, options, false);
        if (!bound.sendrecSync) {
          throw new DvkError('EOPNOTSUPP', 'sendrecSync needs the kernel backend');
        }
        return bound.sendrecSync(c.ep, c.gen, c.type, c.payload, c.control.deadline);
      },
    );
  }

  /** Unbinds the endpoint. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.bound.close();
  }

  /** Runs a synchronous call; errors become DvkErrors (EINVAL for bad arguments) with context. */
  private runSync<T>(
    call: string,
    peer: () => Target | undefined,
    body: (b: BoundEndpoint) => T,
  ): T {
    return this.checked(this.callContext(call, peer), () => body(this.bound));
  }

  /**
   * Runs one call: `prepare` validates the arguments and returns the backend call to make. Being
   * async, this never throws synchronously; anything `prepare` throws (a getter on an argument
   * object included) becomes a DvkError, EINVAL unless it is one already, naming this endpoint
   * and `call`.
   */
  private async run<T>(
    call: string,
    peer: () => Target | undefined,
    prepare: () => () => Promise<T>,
  ): Promise<T> {
    const context = this.callContext(call, peer);
    const perform = this.checked(context, prepare);
    try {
      return await perform();
    } catch (err) {
      if (err instanceof DvkError) throw err.withContext(context);
      throw err;
    }
  }

  /** The error context of a call; `peer` reads the addressed endpoint, and may throw. */
  private callContext(call: string, peer: () => Target | undefined): ErrorContext {
    try {
      const p = peer();
      const n = typeof p === 'number' ? p : isObject(p) ? p.endpoint : undefined;
      if (typeof n === 'number') return this.context(call, n);
    } catch {
      // A broken argument: the call itself reports it.
    }
    return this.context(call);
  }

  /** Runs `body` on an open endpoint; whatever it throws leaves as a DvkError with `context`. */
  private checked<T>(context: ErrorContext, body: () => T): T {
    try {
      if (this.lost) throw this.lost;
      if (this.closed) throw new DvkError('EBADF');
      return body();
    } catch (err) {
      const dvk =
        err instanceof DvkError
          ? err
          : new DvkError('EINVAL', `bad argument: ${(err as Error)?.message ?? String(err)}`);
      throw dvk.withContext(context);
    }
  }

  private context(call: string, peer?: number): ErrorContext {
    return { call, dc: this.address.dc, endpoint: this.address.endpoint, peer };
  }

  /** Checks a destination, a message and call options: what send and sendrec take. */
  private outgoingCall(
    dst: Target,
    message: OutgoingMessage,
    options: CallOptions,
    mayBeNonblocking: boolean,
  ): { ep: number; gen: number; type: number; payload: Uint8Array; control: CallControl } {
    const [ep, gen] = target(dst);
    const [type, payload] = this.outgoing(message);
    const control = this.control(options);
    if (control.nonblock && !mayBeNonblocking) {
      throw new DvkError('EINVAL', 'sendrec cannot be non-blocking');
    }
    return { ep, gen, type, payload, control };
  }

  private outgoing(message: OutgoingMessage): [number, Uint8Array] {
    if (typeof message !== 'object' || message === null) {
      throw new DvkError('EINVAL', 'message must be an object { type?, payload? }');
    }
    const type = message.type ?? 0;
    if (!Number.isInteger(type) || type < -0x8000_0000 || type > 0x7fff_ffff) {
      throw new DvkError('EINVAL', 'type must be a signed 32-bit integer');
    }
    const payload = message.payload ?? EMPTY;
    if (!(payload instanceof Uint8Array)) {
      throw new DvkError('EINVAL', 'payload must be a Uint8Array or Buffer');
    }
    if (payload.byteLength > this.bound.maxPayload) {
      throw new DvkError(
        'EMSGSIZE',
        `payload of ${payload.byteLength} bytes exceeds ${this.bound.maxPayload}`,
      );
    }
    return [type, payload];
  }

  /**
   * Checks call options and turns the timeout into an absolute deadline. `options` must be an
   * object (or undefined, for the defaults). A timeout of 0 means non-blocking; Infinity, or any
   * finite timeout above 100 years (whose deadline in nanoseconds might not fit a u64), means no
   * deadline.
   */
  private control(options: CallOptions): CallControl {
    if (!isObject(options)) throw new DvkError('EINVAL', 'options must be an object');
    const { timeout = this.defaultTimeout, signal } = options;
    if (typeof timeout !== 'number' || Number.isNaN(timeout) || timeout < 0) {
      throw new DvkError('EINVAL', 'timeout must be a number of milliseconds >= 0');
    }
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new DvkError('EINVAL', 'signal must be an AbortSignal');
    }
    if (signal?.aborted) throw new DvkError('ECANCELED');
    const nonblock = timeout === 0;
    const deadline =
      nonblock || timeout > MAX_TIMEOUT_MS
        ? 0n
        : process.hrtime.bigint() + BigInt(Math.ceil(timeout * 1e6));
    return { deadline, nonblock, signal };
  }
}

const U64_MAX = 0xffff_ffff_ffff_ffffn;

function isU32(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= U32_MAX;
}

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null;
}

/** Splits and checks a `from` filter; none means any source. */
function source(from: Target | undefined): [number, number] {
  return from === undefined ? [ENDPOINT_ANY, 0] : target(from);
}

/** Splits and checks a destination. */
function target(t: Target): [number, number] {
  const [endpoint, generation] = typeof t === 'number' ? [t, 0] : [t?.endpoint, t?.generation ?? 0];
  if (!Number.isInteger(endpoint) || (endpoint as number) < 0 || (endpoint as number) >= U32_MAX) {
    throw new DvkError('EINVAL', `bad endpoint number ${String(endpoint)}`);
  }
  if (!Number.isInteger(generation) || generation < 0 || generation > U32_MAX) {
    throw new DvkError('EINVAL', `bad generation ${String(generation)}`);
  }
  return [endpoint as number, generation];
}
