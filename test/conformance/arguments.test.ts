/**
 * Bad arguments: every call rejects with EINVAL naming the call and the endpoint, never throws
 * synchronously, and leaves the endpoint and everything queued at it as they were.
 */
import test from 'ava';
import { DvkError, type Endpoint, openNode } from '../../lib/index.js';
import { DC, numbered, numberOf, startNode } from '../helpers/backend.js';
import { nothingPending, rejects } from '../helpers/expect.js';

/** Calls `call` and checks that it returned a promise rejecting with EINVAL for `ep`. */
async function einval(
  t: import('ava').ExecutionContext,
  ep: Endpoint,
  name: string,
  call: () => Promise<unknown>,
): Promise<void> {
  let promise: Promise<unknown>;
  try {
    promise = call();
  } catch (err) {
    t.fail(`${name} threw synchronously: ${String(err)}`);
    return;
  }
  const err = await rejects(t, promise, 'EINVAL');
  t.is(err?.endpoint, ep.endpoint, name);
  t.is(err?.dc, ep.dc, name);
}

// Deliberately ill-typed values, as JavaScript callers can pass them.
// biome-ignore lint/suspicious/noExplicitAny: the point is to bypass the types
const bad = (v: unknown) => v as any;

test('ill-formed destinations, messages, bits and options reject with EINVAL and lose nothing', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(1);
  const sender = await node.bind(2);
  await sender.send(1, { payload: numbered(1) });

  const cases: [string, () => Promise<unknown>][] = [
    ['send to a negative endpoint', () => sender.send(-1, {})],
    ['send to a fractional endpoint', () => sender.send(1.5, {})],
    ['send to the any-endpoint number', () => sender.send(0xffff_ffff, {})],
    ['send to a string', () => sender.send(bad('1'), {})],
    ['send to null', () => sender.send(bad(null), {})],
    ['send with a negative generation', () => sender.send({ endpoint: 1, generation: -1 }, {})],
    ['send a string payload', () => sender.send(1, { payload: bad('text') })],
    ['send a type beyond i32', () => sender.send(1, { type: 2 ** 31 })],
    ['send a message that is not an object', () => sender.send(1, bad(42))],
    ['send with a negative timeout', () => sender.send(1, {}, { timeout: -1 })],
    ['send with a NaN timeout', () => sender.send(1, {}, { timeout: Number.NaN })],
    ['send with a string timeout', () => sender.send(1, {}, { timeout: bad('10') })],
    ['send with options that are a number', () => sender.send(1, {}, bad(5))],
    ['send with a signal that is not one', () => sender.send(1, {}, { signal: bad({}) })],
    ['sendrec without blocking', () => sender.sendrec(1, {}, { timeout: 0 })],
    ['receive with options that are null', () => receiver.receive(bad(null))],
    ['receive from a negative endpoint', () => receiver.receive({ from: -3 })],
    ['notify with no bits', () => sender.notify(1, 0)],
    ['notify with bits beyond 32', () => sender.notify(1, 2 ** 32)],
    ['notify with fractional bits', () => sender.notify(1, 1.5)],
    ['reply to something that is not a request', () => receiver.reply(bad({ kind: 'message' }))],
    ['reply to undefined', () => receiver.reply(bad(undefined))],
    [
      'reply to a request whose id is not a bigint (it went through JSON)',
      () => receiver.reply(bad({ kind: 'request', source: 2, sourceGeneration: 1, requestId: 7 })),
    ],
  ];
  const getterThrows = {
    get payload(): Uint8Array {
      throw new Error('boom');
    },
  };
  cases.push(['send a message whose getter throws', () => sender.send(1, getterThrows)]);

  for (const [name, call] of cases) {
    await einval(
      t,
      name.startsWith('receive') || name.startsWith('reply') ? receiver : sender,
      name,
      call,
    );
  }

  // Nothing was sent and nothing was taken: the one message queued before is still there, alone.
  const m = await receiver.receive({ timeout: 0 });
  t.is(numberOf(m.payload), 1);
  await nothingPending(t, receiver, 'no bad call delivered anything');
  await sender.send(1, { payload: numbered(2) });
  t.is(numberOf((await receiver.receive({ timeout: 0 })).payload), 2);
});

test('a timeout beyond 100 years means no deadline', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(1);
  const sender = await node.bind(2);
  const waiting = receiver.receive({ timeout: Number.MAX_VALUE });
  await sender.send(1, { payload: numbered(7) }, { timeout: 2 ** 60 });
  t.is(numberOf((await waiting).payload), 7);
});

test('bind rejects ill-formed DCs and endpoint numbers with EINVAL before reaching the agent', async (t) => {
  const node = await startNode(t);
  const dvk = openNode({ socketPath: node.socketPath });
  const cases: [string, unknown][] = [
    ['no options', undefined],
    ['a DC id beyond u32', { dc: 2 ** 32, endpoint: 1 }],
    ['a negative DC id', { dc: -1, endpoint: 1 }],
    ['an empty DC name', { dc: '', endpoint: 1 }],
    ['a DC name with a slash', { dc: 'a/b', endpoint: 1 }],
    ['a DC name of 64 characters', { dc: 'x'.repeat(64), endpoint: 1 }],
    ['a fractional endpoint', { dc: DC.name, endpoint: 0.5 }],
    ['the any-endpoint number', { dc: DC.name, endpoint: 0xffff_ffff }],
    ['an endpoint given as a string', { dc: DC.name, endpoint: '3' }],
  ];
  for (const [what, options] of cases) {
    const err = await t.throwsAsync(dvk.bind(bad(options)), { instanceOf: DvkError }, what);
    t.is(err?.code, 'EINVAL', what);
    t.is(err?.call, 'bind', what);
  }
  t.deepEqual(
    (await node.status()).dcs.flatMap((d) => d.endpoints),
    [],
    'nothing was bound',
  );
  // A well-formed bind on the same handle still works, and a 63-character name is accepted
  // by the client (the agent then says whether it knows the DC).
  const ep = await dvk.bind({ dc: DC.name, endpoint: 3 });
  t.is(ep.endpoint, 3);
  await rejects(t, dvk.bind({ dc: 'y'.repeat(63), endpoint: 1 }), 'ENOENT');
  await ep.close();
});

test('openNode rejects options that are not an object, and a bad default timeout', (t) => {
  for (const options of [5, 'x', null]) {
    const err = t.throws(() => openNode(bad(options)), { instanceOf: DvkError });
    t.is(err?.code, 'EINVAL');
  }
  const err = t.throws(() => openNode({ defaultTimeout: -5 }), { instanceOf: DvkError });
  t.is(err?.code, 'EINVAL');
});
