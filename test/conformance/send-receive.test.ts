import { randomBytes } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { DvkError, type Endpoint, type Message } from '../../lib/index.js';
import { numbered, numberOf, sleep, startNode } from '../helpers/backend.js';
import { blockedSenders, rejects, unbound, waitingReceives } from '../helpers/expect.js';
import type { Outcome } from '../helpers/peer.js';

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/** Takes every message queued at `ep` without waiting; the queue must then report EAGAIN. */
async function drain(t: ExecutionContext, ep: Endpoint): Promise<number[]> {
  const got: number[] = [];
  for (;;) {
    try {
      got.push(numberOf((await ep.receive({ timeout: 0 })).payload));
    } catch (err) {
      t.true(err instanceof DvkError && err.code === 'EAGAIN', `drain ended with ${String(err)}`);
      return got;
    }
  }
}

/** Tracks whether a promise has settled yet, without consuming its outcome. */
function watch(p: Promise<unknown>): { settled: boolean } {
  const state = { settled: false };
  p.then(
    () => {
      state.settled = true;
    },
    () => {
      state.settled = true;
    },
  );
  return state;
}

function okValue<T>(t: ExecutionContext, outcome: Outcome<T>): T {
  if (!outcome.ok) t.fail(`peer call failed: ${outcome.error.code} ${outcome.error.message}`);
  return (outcome as { ok: true; value: T }).value;
}

/** Fills `dst`'s queue of `length` with messages numbered 0..length-1 from `src`. */
async function fill(src: Endpoint, dst: number, length: number): Promise<void> {
  for (let i = 0; i < length; i++) await src.send(dst, { payload: numbered(i) });
}

// --- delivery ---------------------------------------------------------------------------------

test('send delivers a message to a receiver in another process, marked with the sender', async (t) => {
  const node = await startNode(t);
  const sender = await node.peer(1);
  const receiver = await node.bind(2);
  const sent = await sender.send(2, { type: 7, payload: Buffer.from('hello') });
  t.true(sent.ok);
  const m = await receiver.receive({ timeout: 5000 });
  t.is(m.kind, 'message');
  t.is(m.source, 1);
  t.is(m.sourceGeneration, sender.address.generation);
  t.is(m.type, 7);
  t.is(m.requestId, 0n);
  t.is(m.bits, 0);
  t.is(m.payload.toString(), 'hello');
});

test('payloads of 0 bytes and of exactly maxPayload arrive byte-exact across processes', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(2);
  t.is(receiver.maxPayload, 64 * 1024);
  const sender = await node.peer(1);
  const big = randomBytes(receiver.maxPayload);
  t.true((await sender.send(2, { payload: new Uint8Array(0) })).ok);
  t.true((await sender.send(2, { type: 1, payload: big })).ok);
  const empty = await receiver.receive({ timeout: 5000 });
  t.is(empty.payload.byteLength, 0);
  const full = await receiver.receive({ timeout: 5000 });
  t.is(full.type, 1);
  t.is(full.payload.byteLength, big.byteLength);
  t.true(Buffer.from(full.payload).equals(big));

  // And the other way round: this process sends, the peer receives.
  const back = randomBytes(receiver.maxPayload);
  await receiver.send(1, { payload: back });
  const got = okValue(t, await sender.receive({ timeout: 5000 }));
  t.true(Buffer.from(got.payload).equals(back));
  t.is(got.source, 2);
  t.is(got.sourceGeneration, receiver.generation);
});

test('message types -2^31 and 2^31-1 round-trip unchanged', async (t) => {
  const node = await startNode(t);
  const peer = await node.peer(1);
  const local = await node.bind(2);
  for (const type of [INT32_MIN, INT32_MAX, -1, 0]) {
    t.true((await peer.send(2, { type })).ok);
    t.is((await local.receive({ timeout: 5000 })).type, type);
    await local.send(1, { type });
    t.is(okValue(t, await peer.receive({ timeout: 5000 })).type, type);
  }
});

test('a message may be sent to the sending endpoint itself', async (t) => {
  const node = await startNode(t);
  const ep = await node.bind(3);
  await ep.send(3, { type: 5, payload: numbered(1) });
  await ep.send({ endpoint: 3, generation: ep.generation }, { payload: numbered(2) });
  const first = await ep.receive({ timeout: 5000 });
  t.is(first.source, 3);
  t.is(first.sourceGeneration, ep.generation);
  t.is(first.type, 5);
  t.is(numberOf(first.payload), 1);
  t.is(numberOf((await ep.receive({ timeout: 5000 })).payload), 2);
});

// --- argument and address errors ---------------------------------------------------------------

test('a payload one byte over maxPayload fails with EMSGSIZE and nothing is delivered', async (t) => {
  const node = await startNode(t);
  const sender = await node.bind(1);
  const receiver = await node.bind(2);
  const err = await rejects(
    t,
    sender.send(2, { payload: Buffer.alloc(sender.maxPayload + 1) }),
    'EMSGSIZE',
  );
  t.is(err?.endpoint, 1);
  t.is(err?.peer, 2);
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
});

test('send rejects a bad destination endpoint with EINVAL', async (t) => {
  const node = await startNode(t);
  const sender = await node.bind(1);
  const receiver = await node.bind(2);
  const bad: unknown[] = [
    1.5,
    -1,
    Number.NaN,
    '2',
    null,
    0xffff_ffff,
    2 ** 32,
    { endpoint: -2 },
    { endpoint: 2, generation: -1 },
    { endpoint: 2, generation: 0.5 },
  ];
  for (const dst of bad) {
    const err = await t.throwsAsync(sender.send(dst as number, { payload: numbered(0) }), {
      instanceOf: DvkError,
    });
    t.is(err?.code, 'EINVAL', `destination ${JSON.stringify(dst)}`);
  }
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
});

test('send rejects a type outside the signed 32-bit range with EINVAL', async (t) => {
  const node = await startNode(t);
  const sender = await node.bind(1);
  const receiver = await node.bind(2);
  for (const type of [INT32_MAX + 1, INT32_MIN - 1, 2 ** 32, 1.5, Number.NaN, '1']) {
    const err = await t.throwsAsync(sender.send(2, { type: type as number }), {
      instanceOf: DvkError,
    });
    t.is(err?.code, 'EINVAL', `type ${String(type)}`);
  }
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
});

test('send rejects a payload that is not a Uint8Array, or a non-object message, with EINVAL', async (t) => {
  const node = await startNode(t);
  const sender = await node.bind(1);
  const receiver = await node.bind(2);
  for (const payload of ['text', [1, 2, 3], 42, new ArrayBuffer(4), { length: 1 }]) {
    const err = await t.throwsAsync(sender.send(2, { payload: payload as Uint8Array }), {
      instanceOf: DvkError,
    });
    t.is(err?.code, 'EINVAL', `payload ${Object.prototype.toString.call(payload)}`);
  }
  for (const message of [null, 'hello', 7]) {
    const err = await t.throwsAsync(sender.send(2, message as never), { instanceOf: DvkError });
    t.is(err?.code, 'EINVAL', `message ${String(message)}`);
  }
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
});

test('a negative or non-numeric timeout fails with EINVAL on send and receive', async (t) => {
  const node = await startNode(t);
  const sender = await node.bind(1);
  const receiver = await node.bind(2);
  for (const timeout of [-1, -0.5, Number.NaN, Number.NEGATIVE_INFINITY, '10']) {
    const options = { timeout: timeout as number };
    const s = await t.throwsAsync(sender.send(2, { payload: numbered(0) }, options), {
      instanceOf: DvkError,
    });
    t.is(s?.code, 'EINVAL', `send timeout ${String(timeout)}`);
    const r = await t.throwsAsync(receiver.receive(options), { instanceOf: DvkError });
    t.is(r?.code, 'EINVAL', `receive timeout ${String(timeout)}`);
  }
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
});

test('receive rejects a bad `from` with EINVAL', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(2);
  const bad: unknown[] = [
    -1,
    1.5,
    'one',
    0xffff_ffff,
    Number.NaN,
    { endpoint: 1.5 },
    { endpoint: 1, generation: -1 },
    { endpoint: 1, generation: 2 ** 32 },
  ];
  for (const from of bad) {
    const err = await t.throwsAsync(receiver.receive({ from: from as number, timeout: 0 }), {
      instanceOf: DvkError,
    });
    t.is(err?.code, 'EINVAL', `from ${JSON.stringify(from)}`);
  }
});

test('sending to an unbound endpoint fails with ENOENT naming both ends', async (t) => {
  const node = await startNode(t);
  const sender = await node.bind(1);
  const err = await rejects(t, sender.send(9, { payload: numbered(0) }), 'ENOENT');
  t.is(err?.endpoint, 1);
  t.is(err?.peer, 9);
  t.is(err?.call, 'send');
  await rejects(t, sender.send({ endpoint: 9, generation: 1 }, {}), 'ENOENT');
});

test('a send addressed to a gone generation fails with ENOENT and never reaches the newcomer', async (t) => {
  const node = await startNode(t);
  const sender = await node.bind(2);
  const first = await node.peer(1);
  const old = first.address.generation;
  await first.close();
  await unbound(node, 1);
  const second = await node.peer(1);
  const current = second.address.generation;
  t.not(current, old);

  const err = await rejects(
    t,
    sender.send({ endpoint: 1, generation: old }, { payload: numbered(1) }),
    'ENOENT',
  );
  t.is(err?.peer, 1);
  const nothing = await second.receive({ timeout: 0 });
  t.false(nothing.ok);
  t.is(nothing.ok ? undefined : nothing.error.code, 'EAGAIN');

  await sender.send({ endpoint: 1, generation: current }, { payload: numbered(2) });
  const got = okValue(t, await second.receive({ timeout: 5000 }));
  t.is(numberOf(got.payload), 2);
  t.is(got.source, 2);
});

// --- ordering ---------------------------------------------------------------------------------

test('2000 sends from one process arrive in send order', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(2);
  const sender = await node.peer(1);
  const total = 2000;
  const sends: Promise<Outcome<null>>[] = [];
  for (let i = 0; i < total; i++) sends.push(sender.send(2, { payload: numbered(i) }));
  const got: number[] = [];
  for (let i = 0; i < total; i++) {
    const m = await receiver.receive({ timeout: 10_000 });
    t.is(m.source, 1);
    got.push(numberOf(m.payload));
  }
  const outcomes = await Promise.all(sends);
  t.deepEqual(
    outcomes.filter((o) => !o.ok),
    [],
  );
  t.deepEqual(
    got,
    Array.from({ length: total }, (_, i) => i),
  );
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
});

test('two sender processes sending at once each arrive in their own send order', async (t) => {
  const node = await startNode(t, { queueLength: 8 });
  const receiver = await node.bind(3);
  const a = await node.peer(1);
  const b = await node.peer(2);
  const per = 600;
  const sends: Promise<Outcome<null>>[] = [];
  for (let i = 0; i < per; i++) {
    sends.push(a.send(3, { type: 1, payload: numbered(i) }));
    sends.push(b.send(3, { type: 2, payload: numbered(i) }));
  }
  const bySource = new Map<number, number[]>([
    [1, []],
    [2, []],
  ]);
  for (let i = 0; i < 2 * per; i++) {
    const m = await receiver.receive({ timeout: 10_000 });
    t.is(m.type, m.source, 'type tags the sender');
    bySource.get(m.source)?.push(numberOf(m.payload));
  }
  t.deepEqual(
    (await Promise.all(sends)).filter((o) => !o.ok),
    [],
  );
  const expected = Array.from({ length: per }, (_, i) => i);
  t.deepEqual(bySource.get(1), expected);
  t.deepEqual(bySource.get(2), expected);
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
});

// --- backpressure -------------------------------------------------------------------------------

test('a full queue makes send wait until the receiver takes one, keeping order', async (t) => {
  const node = await startNode(t, { queueLength: 4 });
  const sender = await node.bind(1);
  const receiver = await node.bind(2);
  await fill(sender, 2, 4);
  const fifth = sender.send(2, { payload: numbered(4) });
  const state = watch(fifth);
  await sleep(150);
  t.false(state.settled, 'the fifth send must wait while the queue is full');
  t.is((await node.endpointStatus(2))?.blockedSenders, 1);
  t.is((await node.endpointStatus(2))?.queued, 4);

  t.is(numberOf((await receiver.receive({ timeout: 5000 })).payload), 0);
  await t.notThrowsAsync(fifth);
  t.is((await node.endpointStatus(2))?.blockedSenders, 0);
  t.deepEqual(await drain(t, receiver), [1, 2, 3, 4]);
});

test('a send that times out on a full queue fails with ETIMEDOUT and is never delivered', async (t) => {
  const node = await startNode(t, { queueLength: 4 });
  const sender = await node.bind(1);
  const receiver = await node.bind(2);
  await fill(sender, 2, 4);
  const err = await rejects(
    t,
    sender.send(2, { payload: numbered(4) }, { timeout: 50 }),
    'ETIMEDOUT',
  );
  t.is(err?.peer, 2);
  t.is((await node.endpointStatus(2))?.blockedSenders, 0);
  t.deepEqual(await drain(t, receiver), [0, 1, 2, 3]);
  // Room again: the timed-out message must not slip in now.
  await sleep(50);
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
  // And the sender can still send afterwards.
  await sender.send(2, { payload: numbered(5) });
  t.deepEqual(await drain(t, receiver), [5]);
});

test('a non-blocking send to a full queue fails with EAGAIN and is never delivered', async (t) => {
  const node = await startNode(t, { queueLength: 4 });
  const sender = await node.bind(1);
  const receiver = await node.bind(2);
  await fill(sender, 2, 4);
  const err = await rejects(t, sender.send(2, { payload: numbered(4) }, { timeout: 0 }), 'EAGAIN');
  t.is(err?.peer, 2);
  t.is((await node.endpointStatus(2))?.blockedSenders, 0);
  t.deepEqual(await drain(t, receiver), [0, 1, 2, 3]);
  // With room, a non-blocking send succeeds.
  await sender.send(2, { payload: numbered(6) }, { timeout: 0 });
  t.deepEqual(await drain(t, receiver), [6]);
});

test('a non-blocking send from another process: EAGAIN on a full queue, delivered with room', async (t) => {
  const node = await startNode(t, { queueLength: 4 });
  const receiver = await node.bind(2);
  const sender = await node.peer(1);
  for (let i = 0; i < 4; i++) t.true((await sender.send(2, { payload: numbered(i) })).ok);
  t.like(await sender.send(2, { payload: numbered(4) }, { timeout: 0 }), {
    ok: false,
    error: { code: 'EAGAIN' },
  });
  t.is((await node.endpointStatus(2))?.blockedSenders, 0);
  t.deepEqual(await drain(t, receiver), [0, 1, 2, 3]);
  t.true((await sender.send(2, { payload: numbered(5) }, { timeout: 0 })).ok);
  t.deepEqual(await drain(t, receiver), [5], 'the refused message never arrives');
});

test('aborting a send held on a full queue fails it with ECANCELED and it is never delivered', async (t) => {
  const node = await startNode(t, { queueLength: 4 });
  const sender = await node.bind(1);
  const receiver = await node.bind(2);
  await fill(sender, 2, 4);
  const controller = new AbortController();
  const held = sender.send(2, { payload: numbered(4) }, { signal: controller.signal });
  await blockedSenders(node, 2, 1);
  controller.abort();
  await rejects(t, held, 'ECANCELED');
  t.is((await node.endpointStatus(2))?.blockedSenders, 0);
  t.deepEqual(await drain(t, receiver), [0, 1, 2, 3]);
  await sleep(50);
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
  // An already-aborted signal cancels before anything is sent.
  await rejects(
    t,
    sender.send(2, { payload: numbered(9) }, { signal: AbortSignal.abort() }),
    'ECANCELED',
  );
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
});

test('a send held at a receiver that is killed fails with ESRCH', async (t) => {
  const node = await startNode(t, { queueLength: 4 });
  const receiver = await node.peer(1);
  const sender = await node.bind(2);
  await fill(sender, 1, 4);
  const held = sender.send(1, { payload: numbered(4) });
  await blockedSenders(node, 1, 1);
  await receiver.kill();
  const err = await rejects(t, held, 'ESRCH');
  t.is(err?.endpoint, 2);
  t.is(err?.peer, 1);
  // The sender's endpoint survives the peer's death.
  await rejects(t, sender.send(1, { payload: numbered(5) }), 'ENOENT');
  await node.release();
  await node.assertEmpty(t);
});

// --- receive ----------------------------------------------------------------------------------

test('receive with a timeout and nothing to take fails with ETIMEDOUT; later messages still arrive', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(2);
  const sender = await node.bind(1);
  const err = await rejects(t, receiver.receive({ timeout: 50 }), 'ETIMEDOUT');
  t.is(err?.endpoint, 2);
  t.is((await node.endpointStatus(2))?.waitingReceives, 0);
  await sender.send(2, { payload: numbered(3) });
  t.deepEqual(await drain(t, receiver), [3]);
});

test('receive with timeout 0 and nothing queued fails at once with EAGAIN', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(2);
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
  t.is((await node.endpointStatus(2))?.waitingReceives, 0);
});

test('receive with an already-aborted signal fails with ECANCELED and leaves the queue alone', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(2);
  const sender = await node.bind(1);
  await sender.send(2, { payload: numbered(1) });
  await rejects(t, receiver.receive({ signal: AbortSignal.abort() }), 'ECANCELED');
  t.deepEqual(await drain(t, receiver), [1]);
});

test('aborting a waiting receive fails it with ECANCELED and does not eat the next message', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(2);
  const sender = await node.peer(1);
  const controller = new AbortController();
  const waiting = receiver.receive({ signal: controller.signal });
  await waitingReceives(node, 2, 1);
  controller.abort();
  await rejects(t, waiting, 'ECANCELED');
  t.is((await node.endpointStatus(2))?.waitingReceives, 0);
  t.true((await sender.send(2, { payload: numbered(8) })).ok);
  const m = await receiver.receive({ timeout: 0 });
  t.is(numberOf(m.payload), 8);
  t.is(m.source, 1);
});

test('a receive waiting before the message is sent gets it', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(2);
  const sender = await node.peer(1);
  const waiting = receiver.receive({ timeout: 10_000 });
  await waitingReceives(node, 2, 1);
  t.true((await sender.send(2, { type: 3, payload: numbered(11) })).ok);
  const m = await waiting;
  t.is(m.source, 1);
  t.is(m.sourceGeneration, sender.address.generation);
  t.is(m.type, 3);
  t.is(numberOf(m.payload), 11);
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
});

test('concurrent receives on one endpoint are served in call order', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(2);
  const sender = await node.peer(1);
  const receives = [0, 1, 2, 3].map(() => receiver.receive({ timeout: 10_000 }));
  await waitingReceives(node, 2, 4);
  for (let i = 0; i < 4; i++) t.true((await sender.send(2, { payload: numbered(i) })).ok);
  const got = await Promise.all(receives);
  t.deepEqual(
    got.map((m) => numberOf(m.payload)),
    [0, 1, 2, 3],
  );
});

test('receive({from}) takes only that source; others stay queued and come later in order', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(3);
  const a = await node.bind(1);
  const b = await node.bind(2);
  await a.send(3, { payload: numbered(10) });
  await b.send(3, { payload: numbered(20) });
  await a.send(3, { payload: numbered(11) });
  await b.send(3, { payload: numbered(21) });
  await a.send(3, { payload: numbered(12) });

  const fromB = [await receiver.receive({ from: 2, timeout: 0 })];
  fromB.push(
    await receiver.receive({ from: { endpoint: 2, generation: b.generation }, timeout: 0 }),
  );
  t.deepEqual(
    fromB.map((m) => [m.source, numberOf(m.payload)]),
    [
      [2, 20],
      [2, 21],
    ],
  );
  const err = await rejects(t, receiver.receive({ from: 2, timeout: 0 }), 'EAGAIN');
  t.is(err?.peer, 2);
  // Nothing from 4 queued: a filtered wait times out although other messages are there.
  await rejects(t, receiver.receive({ from: 4, timeout: 50 }), 'ETIMEDOUT');
  t.deepEqual(await drain(t, receiver), [10, 11, 12]);
});

test('a waiting receive({from}) is not served by other sources', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(3);
  const a = await node.peer(1);
  const b = await node.peer(2);
  const waiting = receiver.receive({ from: 2, timeout: 10_000 });
  await waitingReceives(node, 3, 1);
  t.true((await a.send(3, { payload: numbered(1) })).ok);
  t.is((await node.endpointStatus(3))?.waitingReceives, 1);
  t.true((await b.send(3, { payload: numbered(2) })).ok);
  const m = await waiting;
  t.is(m.source, 2);
  t.is(numberOf(m.payload), 2);
  t.deepEqual(await drain(t, receiver), [1]);
});

test('receive({from}) with a generation matches only that incarnation of the source', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(3);
  const old = await node.bind(1);
  const oldGen = old.generation;
  await old.send(3, { payload: numbered(1) });
  await old.close();
  await unbound(node, 1);
  const current = await node.bind(1);
  t.not(current.generation, oldGen);
  await current.send(3, { payload: numbered(2) });

  // A generation nobody has can never send: the receive fails instead of waiting.
  await rejects(
    t,
    receiver.receive({ from: { endpoint: 1, generation: current.generation + 1 }, timeout: 0 }),
    'ENOENT',
  );
  const m2 = await receiver.receive({
    from: { endpoint: 1, generation: current.generation },
    timeout: 0,
  });
  t.is(numberOf(m2.payload), 2);
  t.is(m2.sourceGeneration, current.generation);
  await rejects(
    t,
    receiver.receive({ from: { endpoint: 1, generation: current.generation }, timeout: 0 }),
    'EAGAIN',
  );
  // The old incarnation's message is still there, for its generation or for any.
  const m1 = await receiver.receive({ from: { endpoint: 1, generation: oldGen }, timeout: 0 });
  t.is(numberOf(m1.payload), 1);
  t.is(m1.sourceGeneration, oldGen);
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
  // Now that the old incarnation has nothing left here, waiting for it fails at once.
  await rejects(
    t,
    receiver.receive({ from: { endpoint: 1, generation: oldGen }, timeout: 60_000 }),
    'ENOENT',
  );
});

// --- async iteration ----------------------------------------------------------------------------

test('for await over an endpoint yields messages in order and ends quietly when it is closed', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(2);
  const sender = await node.peer(1);
  const got: number[] = [];
  const loop = (async () => {
    for await (const m of receiver) got.push(numberOf(m.payload));
  })();
  for (let i = 0; i < 5; i++) t.true((await sender.send(2, { payload: numbered(i) })).ok);
  await node.until('five messages iterated', async () => got.length === 5);
  await waitingReceives(node, 2, 1);
  await receiver.close();
  await t.notThrowsAsync(loop);
  t.deepEqual(got, [0, 1, 2, 3, 4]);
  // A closed endpoint iterates nothing.
  const after: Message[] = [];
  for await (const m of receiver) after.push(m);
  t.deepEqual(after, []);
});

test('messages({signal}) rejects with ECANCELED when the signal aborts; the endpoint stays usable', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(2);
  const sender = await node.bind(1);
  await sender.send(2, { payload: numbered(1) });
  const controller = new AbortController();
  const iterator = receiver.messages({ signal: controller.signal });
  const first = await iterator.next();
  t.false(first.done);
  t.is(numberOf((first.value as Message).payload), 1);
  const next = iterator.next();
  await waitingReceives(node, 2, 1);
  controller.abort();
  await rejects(t, next, 'ECANCELED');
  t.is((await node.endpointStatus(2))?.waitingReceives, 0);

  await rejects(t, receiver.messages({ signal: AbortSignal.abort() }).next(), 'ECANCELED');
  await sender.send(2, { payload: numbered(2) });
  t.deepEqual(await drain(t, receiver), [2]);
});

// --- closing ----------------------------------------------------------------------------------

test('every call on a closed endpoint fails with EBADF', async (t) => {
  const node = await startNode(t);
  const peer = await node.bind(1);
  const ep = await node.bind(2);
  await peer.send(2, { payload: numbered(0) });
  const request: Message = {
    kind: 'request',
    source: 1,
    sourceGeneration: peer.generation,
    type: 0,
    requestId: 1n,
    bits: 0,
    payload: Buffer.alloc(0),
  };
  await ep.close();
  await t.notThrowsAsync(ep.close(), 'close is idempotent');
  const calls: [string, Promise<unknown>][] = [
    ['send', ep.send(1, { payload: numbered(1) })],
    ['send nonblocking', ep.send(1, {}, { timeout: 0 })],
    ['receive', ep.receive()],
    ['receive nonblocking', ep.receive({ timeout: 0 })],
    ['sendrec', ep.sendrec(1, {})],
    ['reply', ep.reply(request, {})],
    ['notify', ep.notify(1, 1)],
  ];
  for (const [name, call] of calls) {
    const err = await t.throwsAsync(call, { instanceOf: DvkError });
    t.is(err?.code, 'EBADF', name);
    t.is(err?.endpoint, 2, name);
  }
  await unbound(node, 2);
  await rejects(t, peer.receive({ timeout: 0 }), 'EAGAIN');
});

test('calls pending when the endpoint is closed fail with ECANCELED and held sends are withdrawn', async (t) => {
  const node = await startNode(t, { queueLength: 1 });
  const receiver = await node.bind(1);
  const ep = await node.bind(2);
  await ep.send(1, { payload: numbered(0) });
  const heldSend = ep.send(1, { payload: numbered(1) });
  const waiting = ep.receive();
  await blockedSenders(node, 1, 1);
  await waitingReceives(node, 2, 1);
  await ep.close();
  await rejects(t, heldSend, 'ECANCELED');
  await rejects(t, waiting, 'ECANCELED');
  await unbound(node, 2);
  t.is((await node.endpointStatus(1))?.blockedSenders, 0);
  t.deepEqual(await drain(t, receiver), [0]);
  await node.release();
  await node.assertEmpty(t);
});
