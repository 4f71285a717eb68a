/**
 * A DVK service: the code behind one server endpoint, written so the agents can move it to
 * another node while its clients keep calling (docs/migration.md). The service says how to
 * handle each message and how to turn its state into bytes and back; the runtime
 * (runtime.ts) binds, receives, replies, and freezes, snapshots or restores on the agent's
 * word. A service never binds or rebinds by itself.
 *
 * @example
 * export default defineService({
 *   init: () => ({ count: 0 }),
 *   snapshot: (s) => Buffer.from(JSON.stringify(s)),
 *   restore: (bytes) => JSON.parse(Buffer.from(bytes).toString()),
 *   onRequest: (s, request) => ({ payload: Buffer.from(String(++s.count)) }),
 * });
 */
import type { Endpoint } from '../endpoint.js';
import type { Message, OutgoingMessage } from '../message.js';

/** What a handler may use besides the message: the service's own endpoint, to call others. */
export interface ServiceContext {
  readonly endpoint: Endpoint;
}

/**
 * A service over a state `S`, an object its handlers change in place. Handlers run one at a
 * time, in the order messages are received.
 */
export interface ServiceDefinition<S> {
  /** The state of the first instance. */
  init(): S | Promise<S>;
  /** The state as bytes, taken once every handler has finished; any size. */
  snapshot(state: S): Uint8Array | Promise<Uint8Array>;
  /** A state from `snapshot`'s bytes, in the instance that takes over. */
  restore(bytes: Uint8Array): S | Promise<S>;
  /** A request (sendrec): what it returns is the reply. Without it, a request gets an empty one. */
  onRequest?(
    state: S,
    request: Message,
    ctx: ServiceContext,
  ): OutgoingMessage | Promise<OutgoingMessage>;
  /** A plain message. */
  onMessage?(state: S, message: Message, ctx: ServiceContext): void | Promise<void>;
  /** Notification bits. */
  onNotification?(state: S, notification: Message, ctx: ServiceContext): void | Promise<void>;
}

/** Marks a module's default export as a service definition (and checks its shape). */
export function defineService<S>(definition: ServiceDefinition<S>): ServiceDefinition<S> {
  assertService(definition);
  return definition;
}

/**
 * Checks that `value` has a service's shape, so that a module exporting something else fails
 * when its instance starts rather than at the first message. Throws TypeError saying what is
 * missing.
 */
export function assertService(value: unknown): asserts value is ServiceDefinition<unknown> {
  if (typeof value !== 'object' || value === null) {
    throw new TypeError('a service is an object with init(), snapshot() and restore()');
  }
  const hooks = value as Record<string, unknown>;
  for (const hook of ['init', 'snapshot', 'restore'] as const) {
    if (typeof hooks[hook] !== 'function') throw new TypeError(`a service needs ${hook}()`);
  }
  for (const hook of ['onRequest', 'onMessage', 'onNotification'] as const) {
    if (hooks[hook] !== undefined && typeof hooks[hook] !== 'function') {
      throw new TypeError(`a service's ${hook} must be a function`);
    }
  }
}
