/**
 * Assertions and waits the test suites share.
 */
import type { ExecutionContext } from 'ava';
import { DvkError, type Endpoint, type ErrorCode } from '../../lib/index.js';
import type { TestNode } from './backend.js';
import type { Outcome } from './peer.js';

/** Awaits `promise`, which must reject with a DvkError carrying `code`; returns the error. */
export async function rejects(
  t: ExecutionContext,
  promise: Promise<unknown>,
  code: ErrorCode,
): Promise<DvkError | undefined> {
  const err = await t.throwsAsync(promise, { instanceOf: DvkError });
  t.is(err?.code, code, err?.message);
  return err;
}

/** Nothing is waiting to be received on `ep`. */
export async function nothingPending(
  t: ExecutionContext,
  ep: Endpoint,
  why: string,
): Promise<void> {
  const err = await t.throwsAsync(ep.receive({ timeout: 0 }), { instanceOf: DvkError }, why);
  t.is(err?.code, 'EAGAIN', why);
}

/** Waits until `endpoint` (in the test DC) is no longer bound. */
export function unbound(node: TestNode, endpoint: number): Promise<void> {
  return node.until(`endpoint ${endpoint} to unbind`, async () => {
    return (await node.endpointStatus(endpoint)) === undefined;
  });
}

/** Waits until `n` receives wait at `endpoint`. */
export function waitingReceives(node: TestNode, endpoint: number, n = 1): Promise<void> {
  return node.until(`${n} receive(s) waiting at ${endpoint}`, async () => {
    return (await node.endpointStatus(endpoint))?.waitingReceives === n;
  });
}

/** Waits until `n` senders are held at `endpoint`'s full queue. */
export function blockedSenders(node: TestNode, endpoint: number, n = 1): Promise<void> {
  return node.until(`${n} sender(s) held at ${endpoint}`, async () => {
    return (await node.endpointStatus(endpoint))?.blockedSenders === n;
  });
}

/** The error code of a peer call, or 'ok'. */
export function codeOf(outcome: Outcome<unknown>): string {
  return outcome.ok ? 'ok' : outcome.error.code;
}

/** A call's error code once it settles, or 'ok'; attaches its handler at once. */
export function codeWhenSettled(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => 'ok',
    (err: unknown) => (err instanceof DvkError ? err.code : String(err)),
  );
}
