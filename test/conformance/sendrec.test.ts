import test from 'ava';
import { DvkError, type Endpoint, type Message } from '../../lib/index.js';
import { numbered, numberOf, startNode, type TestNode } from '../helpers/backend.js';
import { nothingPending, rejects, unbound } from '../helpers/expect.js';

/** Answers `count` requests with each request's own type and payload. */
async function echo(ep: Endpoint, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const m = await ep.receive({ timeout: 10_000 });
    if (m.kind === 'request') await ep.reply(m, { type: m.type, payload: m.payload });
  }
}

test('sendrec reaches a server in another process and returns its reply', async (t) => {
  const node = await startNode(t);
  const server = await node.peer(1);
  await server.serve('echo');
  const client = await node.bind(2);
  const reply = await client.sendrec(1, { type: 42, payload: Buffer.from('ping') });
  t.is(reply.type, 42);
  t.is(reply.payload.toString(), 'ping');
  t.is(reply.source, 1);
  t.is(reply.sourceGeneration, server.address.generation);
});

test('a server dying with a request received gives the caller ESRCH', async (t) => {
  const node = await startNode(t);
  const server = await node.peer(1);
  await server.serve('hold');
  const client = await node.bind(2);
  const call = client.sendrec(1, { payload: numbered(7) });
  await node.until('the server to take the request', async () => server.requests.length === 1);
  t.is(numberOf(server.requests[0]?.payload ?? Buffer.alloc(8)), 7);
  await server.kill();
  const err = await t.throwsAsync(call, { instanceOf: DvkError });
  t.is(err?.code, 'ESRCH');
  t.is(err?.endpoint, 2);
  t.is(err?.peer, 1);
  await node.release();
  await node.assertEmpty(t);
});

// --- what a request and its reply carry ---

test('a received request has kind request, a non-zero request id and the caller as source', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const call = client.sendrec(1, { type: -7, payload: Buffer.from('question') });
  const request = await server.receive({ timeout: 5000 });
  t.is(request.kind, 'request');
  t.is(typeof request.requestId, 'bigint');
  t.not(request.requestId, 0n);
  t.is(request.source, 2);
  t.is(request.sourceGeneration, client.generation);
  t.is(request.type, -7);
  t.is(request.payload.toString(), 'question');
  t.is(request.bits, 0);
  await server.reply(request);
  await call;
});

test('the reply carries the server type and payload and the request id of the request', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const call = client.sendrec(1, { type: 5, payload: Buffer.from('in') });
  const request = await server.receive({ timeout: 5000 });
  await server.reply(request, { type: 0x7fff_ffff, payload: Buffer.from('out') });
  const reply = await call;
  t.is(reply.type, 0x7fff_ffff);
  t.is(reply.payload.toString(), 'out');
  t.is(typeof reply.requestId, 'bigint');
  t.is(reply.requestId, request.requestId);
  t.is(reply.source, 1);
  t.is(reply.sourceGeneration, server.generation);
  t.not(reply.kind, 'request');
  t.not(reply.kind, 'notification');
});

test('a reply without a message body arrives as type 0 with an empty payload', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const call = client.sendrec(1, { type: 9, payload: Buffer.from('x') });
  await server.reply(await server.receive({ timeout: 5000 }));
  const reply = await call;
  t.is(reply.type, 0);
  t.is(reply.payload.length, 0);
});

test('a plain message the server sends during a sendrec does not satisfy it and stays queued', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const call = client.sendrec(1, { payload: numbered(1) });
  const request = await server.receive({ timeout: 5000 });
  await server.send(2, { type: 77, payload: numbered(2) });
  await server.reply(request, { type: 88, payload: numbered(3) });
  const reply = await call;
  t.is(reply.type, 88);
  t.is(numberOf(reply.payload), 3);
  const plain = await client.receive({ timeout: 0 });
  t.is(plain.kind, 'message');
  t.is(plain.type, 77);
  t.is(numberOf(plain.payload), 2);
  await nothingPending(t, client, 'the reply is not also queued for receive');
});

// --- many calls at once ---

test('200 concurrent sendrecs on one endpoint each get their own reply', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const n = 200;
  const serving = echo(server, n);
  const replies = await Promise.all(
    Array.from({ length: n }, (_, i) => client.sendrec(1, { type: i, payload: numbered(i, 32) })),
  );
  replies.forEach((reply, i) => {
    t.is(reply.type, i);
    t.is(numberOf(reply.payload), i);
  });
  t.is(new Set(replies.map((r) => r.requestId)).size, n, 'every call has its own request id');
  await serving;
});

test('replies given in reverse order still reach the call that made each request', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const n = 50;
  const completed: number[] = [];
  const calls = Array.from({ length: n }, (_, i) =>
    client.sendrec(1, { payload: numbered(i) }).then((reply) => {
      completed.push(i);
      return reply;
    }),
  );
  const requests: Message[] = [];
  while (requests.length < n) requests.push(await server.receive({ timeout: 5000 }));
  t.deepEqual(
    requests.map((r) => numberOf(r.payload)),
    Array.from({ length: n }, (_, i) => i),
    'requests from one caller arrive in call order',
  );
  for (const request of [...requests].reverse()) {
    const k = numberOf(request.payload);
    await server.reply(request, { type: 1000 + k, payload: numbered(k * 7) });
  }
  const replies = await Promise.all(calls);
  replies.forEach((reply, i) => {
    t.is(reply.type, 1000 + i);
    t.is(numberOf(reply.payload), i * 7);
    t.is(reply.requestId, requests[i]?.requestId ?? -1n);
  });
  t.deepEqual(
    completed,
    Array.from({ length: n }, (_, i) => n - 1 - i),
    'calls end in reply order',
  );
});

test('8 client processes with 100 sendrecs each all get their own replies from one server', async (t) => {
  const node = await startNode(t);
  const server = await node.peer(1);
  await server.serve('count');
  const clients = 8;
  const each = 100;
  const peers = await Promise.all(Array.from({ length: clients }, (_, c) => node.peer(10 + c)));
  const outcomes = await Promise.all(
    peers.map((peer, c) =>
      Promise.all(
        Array.from({ length: each }, (_, i) =>
          peer.sendrec(1, { payload: numbered(c * 1000 + i) }),
        ),
      ),
    ),
  );
  const counts: number[] = [];
  outcomes.forEach((results, c) => {
    results.forEach((outcome, i) => {
      if (!outcome.ok) {
        t.fail(`client ${c} call ${i}: ${outcome.error.code} ${outcome.error.message}`);
        return;
      }
      t.is(numberOf(outcome.value.payload), c * 1000 + i);
      t.is(outcome.value.source, 1);
      counts.push(outcome.value.type);
    });
  });
  counts.sort((a, b) => a - b);
  t.deepEqual(
    counts,
    Array.from({ length: clients * each }, (_, i) => i + 1),
    'the server answered every request exactly once',
  );
  // The server reports each request over its own channel, which may lag behind the replies.
  await node.until('the server to report every request', async () => {
    return server.requests.length === clients * each;
  });
  t.deepEqual(server.serveErrors, []);
});

// --- giving up: timeouts and aborts ---

test('a reply after the caller timed out is dropped and never handed to a later receive', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  // The server waits first, so it surely takes the request before the caller's timeout.
  const taking = server.receive({ timeout: 5000 });
  await node.until('the server to wait', async () => {
    return (await node.endpointStatus(1))?.waitingReceives === 1;
  });
  const call = client.sendrec(1, { payload: numbered(1) }, { timeout: 100 });
  const request = await taking;
  const err = await rejects(t, call, 'ETIMEDOUT');
  t.is(err?.endpoint, 2);
  t.is(err?.peer, 1);
  // A receive waiting while the late reply comes in must not be given it.
  const waiting = client.receive({ timeout: 5000 });
  await t.notThrowsAsync(server.reply(request, { type: 66, payload: numbered(66) }));
  await server.send(2, { type: 5, payload: numbered(5) });
  const got = await waiting;
  t.is(got.kind, 'message');
  t.is(got.type, 5);
  t.is(numberOf(got.payload), 5);
  await nothingPending(t, client, 'the late reply is not queued');
  // The endpoint still works for the next call, which gets its own reply.
  const next = client.sendrec(1, { payload: numbered(2) });
  const request2 = await server.receive({ timeout: 5000 });
  t.is(numberOf(request2.payload), 2);
  await server.reply(request2, { type: 22, payload: numbered(22) });
  const reply = await next;
  t.is(reply.type, 22);
  t.is(numberOf(reply.payload), 22);
});

/** Waits until endpoint `ep` holds only `queued` messages and no held sender (bounded). */
function withdrawn(node: TestNode, ep: number, queued = 0): Promise<void> {
  return node.until(`the request to leave endpoint ${ep}`, async () => {
    const status = await node.endpointStatus(ep);
    return status?.queued === queued && status.blockedSenders === 0;
  });
}

test('a request not yet received is withdrawn when its caller times out', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  await rejects(t, client.sendrec(1, { payload: numbered(1) }, { timeout: 100 }), 'ETIMEDOUT');
  // Across nodes the withdrawal travels from the caller's node after its ETIMEDOUT: a receive
  // before it lands could still take the request (it would then run, its reply dropped).
  await withdrawn(node, 1);
  await nothingPending(t, server, 'the withdrawn request is not delivered');
});

test('a request held by a full queue is withdrawn when its caller times out', async (t) => {
  const node = await startNode(t, { queueLength: 1 });
  const server = await node.bind(1);
  const filler = await node.bind(3);
  const client = await node.bind(2);
  await filler.send(1, { payload: numbered(1) });
  await rejects(t, filler.send(1, { payload: numbered(2) }, { timeout: 0 }), 'EAGAIN');
  await rejects(t, client.sendrec(1, { payload: numbered(3) }, { timeout: 100 }), 'ETIMEDOUT');
  await withdrawn(node, 1, 1);
  const first = await server.receive({ timeout: 0 });
  t.is(first.source, 3);
  t.is(numberOf(first.payload), 1);
  await nothingPending(t, server, 'the withdrawn request does not move into the queue');
});

test('aborting a sendrec whose request is queued cancels it and withdraws the request', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const controller = new AbortController();
  const call = client.sendrec(1, { payload: numbered(1) }, { signal: controller.signal });
  await node.until('the request to be queued', async () => {
    return (await node.endpointStatus(1))?.queued === 1;
  });
  controller.abort();
  const err = await rejects(t, call, 'ECANCELED');
  t.is(err?.endpoint, 2);
  await nothingPending(t, server, 'the aborted request is withdrawn');
});

test('aborting a sendrec the server already received cancels it; the late reply is dropped', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const controller = new AbortController();
  const call = client.sendrec(1, { payload: numbered(1) }, { signal: controller.signal });
  const request = await server.receive({ timeout: 5000 });
  controller.abort();
  await rejects(t, call, 'ECANCELED');
  await t.notThrowsAsync(server.reply(request, { payload: numbered(9) }));
  await nothingPending(t, client, 'the dropped reply is not queued');
});

test('a sendrec with an already aborted signal fails with ECANCELED without reaching the server', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  await rejects(
    t,
    client.sendrec(1, { payload: numbered(1) }, { signal: AbortSignal.abort() }),
    'ECANCELED',
  );
  await nothingPending(t, server, 'nothing was sent');
  // The endpoint is unharmed.
  const call = client.sendrec(1, { payload: numbered(2) });
  const request = await server.receive({ timeout: 5000 });
  t.is(numberOf(request.payload), 2);
  await server.reply(request);
  await t.notThrowsAsync(call);
});

test('a sendrec with no reply within its timeout fails with ETIMEDOUT', async (t) => {
  const node = await startNode(t);
  const server = await node.peer(1);
  await server.serve('hold');
  const client = await node.bind(2);
  await rejects(t, client.sendrec(1, { payload: numbered(1) }, { timeout: 150 }), 'ETIMEDOUT');
  await node.until('the server to report the request it took', async () => {
    return server.requests.length === 1;
  });
});

// --- reply exactly once ---

test('a second reply to the same request fails with EINVAL', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const call = client.sendrec(1, { payload: numbered(1) });
  const request = await server.receive({ timeout: 5000 });
  await server.reply(request, { type: 1 });
  const err = await rejects(t, server.reply(request, { type: 2 }), 'EINVAL');
  t.is(err?.endpoint, 1);
  t.is(err?.peer, 2);
  t.is((await call).type, 1, 'the caller got the first reply');
  await nothingPending(t, client, 'the second reply went nowhere');
});

test('replying to a plain message fails with EINVAL', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  await client.send(1, { payload: numbered(1) });
  const plain = await server.receive({ timeout: 5000 });
  t.is(plain.kind, 'message');
  t.is(plain.requestId, 0n);
  await rejects(t, server.reply(plain, { payload: numbered(2) }), 'EINVAL');
  await nothingPending(t, client, 'nothing reached the sender');
});

test('replying with a fabricated request fails with EINVAL and leaves the real one owed', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const call = client.sendrec(1, { payload: numbered(1) });
  const request = await server.receive({ timeout: 5000 });
  const fake: Message = { ...request, requestId: request.requestId + 1000n };
  await rejects(t, server.reply(fake, { type: 13 }), 'EINVAL');
  const forged: Message = {
    kind: 'request',
    source: 2,
    sourceGeneration: client.generation,
    type: 0,
    requestId: 424242n,
    bits: 0,
    payload: Buffer.alloc(0),
  };
  await rejects(t, server.reply(forged), 'EINVAL');
  await rejects(t, server.reply({ ...request, sourceGeneration: client.generation + 1 }), 'EINVAL');
  await server.reply(request, { type: 14 });
  t.is((await call).type, 14);
});

test('only the endpoint that received a request can reply to it', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const other = await node.bind(3);
  const client = await node.bind(2);
  const call = client.sendrec(1, { payload: numbered(1) });
  const request = await server.receive({ timeout: 5000 });
  await rejects(t, other.reply(request, { type: 3 }), 'EINVAL');
  await server.reply(request, { type: 1 });
  const reply = await call;
  t.is(reply.type, 1);
  t.is(reply.source, 1);
});

// --- peers going away ---

test('a server killed with requests queued but not received gives every caller ESRCH', async (t) => {
  const node = await startNode(t);
  const server = await node.peer(1);
  const clients = await Promise.all([2, 3, 4].map((n) => node.bind(n)));
  const calls = clients.map((c, i) => c.sendrec(1, { payload: numbered(i) }));
  await node.until('three requests to be queued', async () => {
    return (await node.endpointStatus(1))?.queued === 3;
  });
  await server.kill();
  for (const [i, call] of calls.entries()) {
    const err = await rejects(t, call, 'ESRCH');
    t.is(err?.endpoint, 2 + i);
    t.is(err?.peer, 1);
  }
  await node.release();
  await node.assertEmpty(t);
});

test('a server closing with requests queued and received gives their callers ESRCH', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const first = client.sendrec(1, { payload: numbered(1) });
  const second = client.sendrec(1, { payload: numbered(2) });
  const taken = await server.receive({ timeout: 5000 });
  t.is(numberOf(taken.payload), 1);
  await node.until('the second request to be queued', async () => {
    return (await node.endpointStatus(1))?.queued === 1;
  });
  await server.close();
  await rejects(t, first, 'ESRCH');
  await rejects(t, second, 'ESRCH');
  await rejects(t, client.sendrec(1, { payload: numbered(3) }), 'ENOENT');
});

test('a caller killed mid-sendrec: the reply still resolves and the server serves others', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const doomed = await node.peer(2);
  const pending = doomed.sendrec(1, { payload: numbered(1) });
  const request = await server.receive({ timeout: 5000 });
  t.is(request.source, 2);
  await doomed.kill();
  t.false((await pending).ok);
  await unbound(node, 2);
  await t.notThrowsAsync(server.reply(request, { payload: numbered(10) }));
  await nothingPending(t, server, 'nothing is left over from the dead caller');
  const other = await node.peer(3);
  const call = other.sendrec(1, { type: 3, payload: numbered(3) });
  const next = await server.receive({ timeout: 5000 });
  t.is(next.source, 3);
  await server.reply(next, { type: 30, payload: numbered(30) });
  const outcome = await call;
  t.true(outcome.ok);
  if (outcome.ok) {
    t.is(outcome.value.type, 30);
    t.is(numberOf(outcome.value.payload), 30);
  }
  await node.release();
  await node.assertEmpty(t);
});

test('a request whose caller died before the server took it is never delivered', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const doomed = await node.peer(2);
  void doomed.sendrec(1, { payload: numbered(1) });
  await node.until('the request to be queued', async () => {
    return (await node.endpointStatus(1))?.queued === 1;
  });
  await doomed.kill();
  await unbound(node, 2);
  await nothingPending(t, server, 'the dead caller’s request was withdrawn');
  await node.release();
  await node.assertEmpty(t);
});

// --- bad destinations and arguments ---

test('a sendrec to an unbound endpoint fails with ENOENT', async (t) => {
  const node = await startNode(t);
  const client = await node.bind(2);
  const err = await rejects(t, client.sendrec(9, { payload: numbered(1) }), 'ENOENT');
  t.is(err?.endpoint, 2);
  t.is(err?.peer, 9);
});

test('a sendrec to a stale generation fails with ENOENT and does not reach the new binding', async (t) => {
  const node = await startNode(t);
  const old = await node.bind(1);
  const stale = old.address;
  await old.close();
  await unbound(node, 1);
  const fresh = await node.bind(1);
  t.not(fresh.generation, stale.generation);
  const client = await node.bind(2);
  await rejects(
    t,
    client.sendrec({ endpoint: 1, generation: stale.generation }, { payload: numbered(1) }),
    'ENOENT',
  );
  await nothingPending(t, fresh, 'the newcomer got nothing');
  // The current generation is reachable.
  const call = client.sendrec(
    { endpoint: 1, generation: fresh.generation },
    { payload: numbered(2) },
  );
  const request = await fresh.receive({ timeout: 5000 });
  t.is(numberOf(request.payload), 2);
  await fresh.reply(request);
  await t.notThrowsAsync(call);
});

test('a sendrec with timeout 0 fails with EINVAL without reaching the server', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  await rejects(t, client.sendrec(1, { payload: numbered(1) }, { timeout: 0 }), 'EINVAL');
  await nothingPending(t, server, 'nothing was sent');
});

test('a request payload over the limit fails with EMSGSIZE', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const big = Buffer.alloc(client.maxPayload + 1);
  await rejects(t, client.sendrec(1, { payload: big }), 'EMSGSIZE');
  await nothingPending(t, server, 'nothing was sent');
  // Exactly the limit is fine.
  const call = client.sendrec(1, { payload: Buffer.alloc(client.maxPayload, 0xab) });
  const request = await server.receive({ timeout: 5000 });
  t.is(request.payload.length, client.maxPayload);
  await server.reply(request, { payload: request.payload });
  t.is((await call).payload.length, client.maxPayload);
});

test('a reply payload over the limit fails with EMSGSIZE and the request stays owed', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const call = client.sendrec(1, { payload: numbered(1) });
  const request = await server.receive({ timeout: 5000 });
  await rejects(
    t,
    server.reply(request, { payload: Buffer.alloc(server.maxPayload + 1) }),
    'EMSGSIZE',
  );
  await server.reply(request, { type: 2, payload: numbered(2) });
  const reply = await call;
  t.is(reply.type, 2);
  t.is(numberOf(reply.payload), 2);
});
