/**
 * One instance of a service, in a process its node's agent started (lib/agent/services.ts).
 * It binds the endpoint, then receives and hands each message to the service, one at a time,
 * so a snapshot always sees a state no handler is changing. The agent steers it over the
 * process's IPC channel (ControlToInstance / ControlFromInstance):
 *
 * - freeze: stop receiving (the agent has already stopped delivering), let the running
 *   handler finish, and send back a snapshot tagged with the freeze's id. A freeze while
 *   frozen is answered at once (nothing runs); the state has not changed since the last one;
 * - resume: the move was rolled back; receive again. A snapshot not yet taken is not sent;
 * - restore: an instance started to take over an endpoint gets the snapshot, in pieces, and
 *   starts serving with the state it restores (an instance that is not incoming ignores them);
 * - exit: the endpoint has moved; this instance is done: `runService` closes the endpoint and
 *   returns, whatever a handler is doing.
 *
 * A handler that throws ends the instance, as an uncaught error ends any server: its callers
 * then get ESRCH, a definite error, rather than a reply nobody meant.
 */
import type { Endpoint } from '../endpoint.js';
import { isDvkError } from '../errors.js';
import type { Message } from '../message.js';
import { openNode } from '../node.js';
import type { ServiceContext, ServiceDefinition } from './define.js';

/** Messages from the agent to an instance. */
export type ControlToInstance =
  /** `id` tags the snapshot that answers it, so a late answer to an abandoned freeze is told apart. */
  | { op: 'freeze'; id: number }
  | { op: 'resume' }
  /** One piece of the snapshot to restore; `last` ends it. */
  | { op: 'restore'; piece: Uint8Array; last: boolean }
  | { op: 'exit' };

/** Messages from an instance to its agent. */
export type ControlFromInstance =
  /** Bound (and restored, for an incoming instance): serving. */
  | { op: 'serving'; generation: number }
  /** The answer to freeze `id`: every handler finished; the state as bytes. */
  | { op: 'snapshot'; id: number; state: Uint8Array }
  /** The instance cannot go on (it exits next): why, for the agent's log. */
  | { op: 'failed'; reason: string };

export interface RuntimeOptions {
  /** The DC, by name or id. */
  dc: string | number;
  endpoint: number;
  /** The agent's socket. */
  socketPath: string;
  /** Take over an endpoint that moves here: wait for a snapshot instead of calling init(). */
  incoming: boolean;
  /** The channel to the agent (the process's IPC channel). */
  send(message: ControlFromInstance): void;
  /** Subscribes to the agent's messages; called before anything else, so none is missed. */
  onControl(listener: (message: ControlToInstance) => void): void;
}

/**
 * Runs a service until the agent says exit (then resolves, with the endpoint closed) or the
 * service fails: the bind, init, restore, snapshot or a handler (then rejects).
 */
export async function runService<S>(
  definition: ServiceDefinition<S>,
  options: RuntimeOptions,
): Promise<void> {
  let frozen = false;
  /** The freeze waiting for a snapshot, taken as soon as no handler runs. */
  let snapshotFor: number | undefined;
  /** Ends the receive in progress when a freeze comes. */
  let receiving: AbortController | undefined;
  /** Wakes the loop while it waits out a freeze. */
  let wake: (() => void) | undefined;
  const pieces: Uint8Array[] = [];
  const restored = deferred<Uint8Array>();
  const exitAsked = deferred<void>();

  options.onControl((m) => {
    switch (m.op) {
      case 'freeze':
        frozen = true;
        snapshotFor = m.id;
        receiving?.abort();
        break;
      case 'resume':
        frozen = false;
        snapshotFor = undefined;
        break;
      case 'restore':
        pieces.push(m.piece);
        if (m.last) restored.resolve(Buffer.concat(pieces.splice(0)));
        break;
      case 'exit':
        exitAsked.resolve();
        break;
    }
    wake?.();
  });

  // Never the kernel backend, whatever DVK_BACKEND the agent's environment passed on: the
  // instance binds through the agent that started it.
  const node = openNode({ backend: 'user', socketPath: options.socketPath });
  let endpoint: Endpoint | undefined;

  const serve = async (): Promise<never> => {
    endpoint = await node.bind({ dc: options.dc, endpoint: options.endpoint });
    const ctx: ServiceContext = { endpoint };
    const state = options.incoming
      ? await definition.restore(await restored.promise)
      : await definition.init();
    options.send({ op: 'serving', generation: endpoint.generation });

    for (;;) {
      if (snapshotFor !== undefined) {
        const id = snapshotFor;
        snapshotFor = undefined;
        options.send({ op: 'snapshot', id, state: bytes(await definition.snapshot(state)) });
        // A resume or another freeze may have come while the snapshot was taken.
        continue;
      }
      if (frozen) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
        continue;
      }
      const abort = new AbortController();
      receiving = abort;
      let message: Message;
      try {
        message = await endpoint.receive({ signal: abort.signal, timeout: Infinity });
      } catch (err) {
        // A freeze ended the wait (a resume may already have followed it); anything else ends
        // the instance. A message the agent handed over before the cancel arrived is not an
        // error: it comes back as the receive's result and is handled before the snapshot.
        if (abort.signal.aborted && isDvkError(err, 'ECANCELED')) continue;
        throw err;
      } finally {
        receiving = undefined;
      }
      await handle(definition, state, message, ctx);
    }
  };

  try {
    await Promise.race([serve(), exitAsked.promise]);
  } finally {
    // On exit a handler may still be running; its reply then fails, which nobody hears.
    await endpoint?.close().catch(() => {});
  }
}

async function handle<S>(
  definition: ServiceDefinition<S>,
  state: S,
  message: Message,
  ctx: ServiceContext,
): Promise<void> {
  switch (message.kind) {
    case 'request': {
      const reply = definition.onRequest ? await definition.onRequest(state, message, ctx) : {};
      await ctx.endpoint.reply(message, reply ?? {});
      return;
    }
    case 'message':
      await definition.onMessage?.(state, message, ctx);
      return;
    case 'notification':
      await definition.onNotification?.(state, message, ctx);
      return;
  }
}

/** A snapshot as the IPC channel carries it; anything else is the service's bug, said here. */
function bytes(snapshot: unknown): Uint8Array {
  if (!(snapshot instanceof Uint8Array)) {
    throw new TypeError('snapshot() must return a Uint8Array (a Buffer, say)');
  }
  return snapshot;
}

function deferred<T>(): { promise: Promise<T>; resolve(value: T): void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
