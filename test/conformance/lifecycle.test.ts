/**
 * Binding lifecycle through the public API: bind, the errors bind reports, DC isolation,
 * unbinding on close and on process death (with whatever the process was blocked in), the queue
 * depths `status` reports, and an unreachable node.
 */
import test from 'ava';
import { type Message, openNode } from '../../lib/index.js';
import { DC, numbered, numberOf, OTHER_DC, startNode, type TestNode } from '../helpers/backend.js';
import { codeOf, rejects } from '../helpers/expect.js';

async function listed(node: TestNode, endpoint: number, dc: number = DC.id): Promise<boolean> {
  return (await node.endpointStatus(endpoint, dc)) !== undefined;
}

test('bind returns the DC id, the endpoint number and a generation of at least 1', async (t) => {
  const node = await startNode(t);
  const ep = await node.bind(5);
  t.is(ep.dc, DC.id);
  t.is(ep.endpoint, 5);
  t.true(Number.isInteger(ep.generation) && ep.generation >= 1);
  t.deepEqual(ep.address, { dc: DC.id, endpoint: 5, generation: ep.generation });
  const status = await node.endpointStatus(5);
  t.is(status?.generation, ep.generation);
});

test('binding a number another process holds fails with EADDRINUSE', async (t) => {
  const node = await startNode(t);
  const holder = await node.peer(3);
  const err = await rejects(t, node.node.bind({ dc: DC.name, endpoint: 3 }), 'EADDRINUSE');
  t.is(err?.endpoint, 3);
  const other = await node.peer();
  await t.throwsAsync(other.bind(node.socketPath, DC.name, 3), { message: /EADDRINUSE/ });
  t.is((await node.endpointStatus(3))?.pid, holder.pid, 'the first holder keeps the number');
});

test('bind by DC name and by DC id reach the same DC', async (t) => {
  const node = await startNode(t);
  const byName = await node.bind(7, DC.name);
  t.is(byName.dc, DC.id);
  await rejects(t, node.node.bind({ dc: DC.id, endpoint: 7 }), 'EADDRINUSE');
  const byId = await node.bind(8, DC.id);
  t.is(byId.dc, DC.id);
  await rejects(t, node.node.bind({ dc: DC.name, endpoint: 8 }), 'EADDRINUSE');
  const other = await node.bind(8, OTHER_DC.id);
  t.is(other.dc, OTHER_DC.id);
  await rejects(t, node.node.bind({ dc: OTHER_DC.name, endpoint: 8 }), 'EADDRINUSE');
});

test('a number freed by close() can be bound again, with a higher generation', async (t) => {
  const node = await startNode(t);
  const first = await node.bind(4);
  await first.close();
  const second = await node.bind(4);
  t.true(second.generation > first.generation);
  t.is((await node.endpointStatus(4))?.generation, second.generation);
  await node.release();
  await node.assertEmpty(t);
});

test('a number held by a process killed with SIGKILL can be bound again, with a higher generation', async (t) => {
  const node = await startNode(t);
  const holder = await node.peer(4);
  const old = holder.address.generation;
  t.true(old >= 1);
  await holder.kill();
  await node.until('the dead holder to unbind', async () => !(await listed(node, 4)));
  const again = await node.bind(4);
  t.is(again.dc, DC.id);
  t.true(again.generation > old);
  await node.release();
  await node.assertEmpty(t);
});

test('bind in an unknown DC fails with ENOENT, by name and by id', async (t) => {
  const node = await startNode(t);
  await rejects(t, node.node.bind({ dc: 'no-such-dc', endpoint: 1 }), 'ENOENT');
  await rejects(t, node.node.bind({ dc: 99, endpoint: 1 }), 'ENOENT');
  await node.assertEmpty(t);
});

test('bind at or beyond the DC slot count fails with EINVAL', async (t) => {
  const node = await startNode(t);
  for (const endpoint of [DC.slots, DC.slots + 1, 0xffff_fffe]) {
    const err = await rejects(t, node.node.bind({ dc: DC.name, endpoint }), 'EINVAL');
    t.is(err?.endpoint, endpoint);
  }
  const last = await node.bind(DC.slots - 1);
  t.is(last.endpoint, DC.slots - 1);
  const first = await node.bind(0);
  t.is(first.endpoint, 0);
});

test('bind with a negative, fractional or non-numeric endpoint or DC fails with EINVAL', async (t) => {
  const node = await startNode(t);
  for (const endpoint of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '3', null]) {
    await rejects(
      t,
      node.node.bind({ dc: DC.name, endpoint: endpoint as unknown as number }),
      'EINVAL',
    );
  }
  for (const dc of ['', -1, 1.5, null]) {
    await rejects(t, node.node.bind({ dc: dc as unknown as string, endpoint: 1 }), 'EINVAL');
  }
  await node.assertEmpty(t);
});

test('the same endpoint number in two DCs is two distinct bindings', async (t) => {
  const node = await startNode(t);
  const a = await node.peer(5, DC.name);
  const b = await node.peer(5, OTHER_DC.name);
  t.is(a.address.dc, DC.id);
  t.is(b.address.dc, OTHER_DC.id);
  t.is((await node.endpointStatus(5, DC.id))?.pid, a.pid);
  t.is((await node.endpointStatus(5, OTHER_DC.id))?.pid, b.pid);
  await b.kill();
  await node.until(
    'DC other to drop its endpoint 5',
    async () => !(await listed(node, 5, OTHER_DC.id)),
  );
  t.is((await node.endpointStatus(5, DC.id))?.pid, a.pid, 'the other DC kept its binding');
});

test('a message sent in one DC never reaches the same number in another DC', async (t) => {
  const node = await startNode(t);
  const here = await node.peer(5, DC.name);
  const there = await node.peer(5, OTHER_DC.name);
  const sender = await node.bind(6, DC.name);
  await sender.send(5, { type: 1, payload: numbered(11) });
  const got = await here.receive({ timeout: 5000 });
  t.true(got.ok);
  if (got.ok) {
    t.is(got.value.source, 6);
    t.is(numberOf(got.value.payload), 11);
  }
  const nothing = await there.receive({ timeout: 200 });
  t.is(codeOf(nothing), 'ETIMEDOUT');
  t.is((await node.endpointStatus(5, OTHER_DC.id))?.queued, 0);
  // Endpoint 6 exists only in DC test: from DC other it is not there at all.
  const stranger = await node.bind(7, OTHER_DC.name);
  const err = await rejects(t, stranger.send(6, { payload: numbered(1) }), 'ENOENT');
  t.is(err?.peer, 6);
  await rejects(t, stranger.notify(6, 1), 'ENOENT');
});

test('close() unbinds: status no longer lists the endpoint and sends to it fail', async (t) => {
  const node = await startNode(t);
  const ep = await node.bind(9);
  const sender = await node.bind(10);
  t.true(await listed(node, 9));
  await ep.close();
  t.false(await listed(node, 9));
  await rejects(t, sender.send(9, { payload: numbered(1) }), 'ENOENT');
  await rejects(t, ep.receive({ timeout: 0 }), 'EBADF');
  await node.release();
  await node.assertEmpty(t);
});

test('SIGKILL of a process blocked in receive unbinds its endpoint', async (t) => {
  const node = await startNode(t);
  const receiver = await node.peer(8);
  const call = receiver.start('receive', []);
  await node.until(
    'the receive to wait',
    async () => (await node.endpointStatus(8))?.waitingReceives === 1,
  );
  t.is((await node.endpointStatus(8))?.pid, receiver.pid);
  await receiver.kill();
  t.is(codeOf(await call.outcome), 'PEER_EXITED');
  await node.until('the dead receiver to unbind', async () => !(await listed(node, 8)));
  const sender = await node.bind(9);
  await rejects(t, sender.send(8, { payload: numbered(1) }), 'ENOENT');
  await node.release();
  await node.assertEmpty(t);
});

test('SIGKILL of a sender held at a full queue removes it from the held senders; the queue keeps working', async (t) => {
  const node = await startNode(t, { queueLength: 1 });
  const receiver = await node.bind(1);
  const first = await node.peer(2);
  const doomed = await node.peer(3);
  const later = await node.peer(4);
  t.true((await first.send(1, { payload: numbered(1) })).ok, 'the first message fills the queue');
  const doomedSend = doomed.start('send', [1, { payload: numbered(2) }]);
  await node.until(
    'the doomed sender to be held',
    async () => (await node.endpointStatus(1))?.blockedSenders === 1,
  );
  const laterSend = later.start('send', [1, { payload: numbered(3) }]);
  await node.until(
    'the later sender to queue up behind it',
    async () => (await node.endpointStatus(1))?.blockedSenders === 2,
  );
  await doomed.kill();
  t.is(codeOf(await doomedSend.outcome), 'PEER_EXITED');
  await node.until(
    'the dead sender to leave the held list',
    async () => (await node.endpointStatus(1))?.blockedSenders === 1,
  );
  t.is((await node.endpointStatus(1))?.queued, 1);

  const m1 = await receiver.receive({ timeout: 5000 });
  t.deepEqual([m1.source, numberOf(m1.payload)], [2, 1]);
  t.is(codeOf(await laterSend.outcome), 'ok', 'the sender behind the dead one gets in');
  const m3 = await receiver.receive({ timeout: 5000 });
  t.deepEqual([m3.source, numberOf(m3.payload)], [4, 3]);
  await rejects(t, receiver.receive({ timeout: 0 }), 'EAGAIN');
  t.true((await first.send(1, { payload: numbered(4) })).ok);
  const m4 = await receiver.receive({ timeout: 5000 });
  t.deepEqual([m4.source, numberOf(m4.payload)], [2, 4]);
  const status = await node.endpointStatus(1);
  t.is(status?.blockedSenders, 0);
  t.is(status?.queued, 0);
  await node.release();
  await node.assertEmpty(t);
});

test('SIGKILL of a caller in sendrec: the server still owes the reply, and replying clears it', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.peer(2);
  const call = client.sendrec(1, { type: 5, payload: numbered(5) });
  const request = await server.receive({ timeout: 5000 });
  t.is(request.kind, 'request');
  t.is((await node.endpointStatus(1))?.unansweredRequests, 1);
  t.is((await node.endpointStatus(2))?.pendingCalls, 1);
  await client.kill();
  t.is(codeOf(await call), 'PEER_EXITED');
  await node.until('the dead caller to unbind', async () => !(await listed(node, 2)));
  t.is((await node.endpointStatus(1))?.unansweredRequests, 1, 'the obligation outlives the caller');
  await server.reply(request, { payload: numbered(6) });
  const status = await node.endpointStatus(1);
  t.is(status?.unansweredRequests, 0);
  t.is(status?.counters.repliesDropped, 1);
  await node.release();
  await node.assertEmpty(t);
});

test('SIGKILL of a caller whose request is still queued withdraws the request', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.peer(2);
  const call = client.sendrec(1, { payload: numbered(5) });
  await node.until(
    'the request to be queued',
    async () => (await node.endpointStatus(1))?.queued === 1,
  );
  await client.kill();
  t.is(codeOf(await call), 'PEER_EXITED');
  await node.until('the request to be withdrawn', async () => !(await listed(node, 2)));
  t.is((await node.endpointStatus(1))?.queued, 0);
  await rejects(t, server.receive({ timeout: 0 }), 'EAGAIN');
  t.is((await node.endpointStatus(1))?.unansweredRequests, 0);
  await node.release();
  await node.assertEmpty(t);
});

test('status reports queued messages and their bytes, and the send and receive counters', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(1);
  const sender = await node.bind(2);
  for (const size of [10, 20, 30]) await sender.send(1, { payload: Buffer.alloc(size, 1) });
  let status = await node.endpointStatus(1);
  t.is(status?.queued, 3);
  t.is(status?.queuedBytes, 60);
  t.is(status?.waitingReceives, 0);
  t.is((await node.endpointStatus(2))?.counters.sent, 3);
  const m = await receiver.receive({ timeout: 5000 });
  t.is(m.payload.length, 10);
  status = await node.endpointStatus(1);
  t.is(status?.queued, 2);
  t.is(status?.queuedBytes, 50);
  t.is(status?.counters.received, 1);
});

test('status reports a waiting receive until it is cancelled', async (t) => {
  const node = await startNode(t);
  const receiver = await node.bind(1);
  const controller = new AbortController();
  const pending = receiver.receive({ signal: controller.signal });
  await node.until(
    'the receive to wait',
    async () => (await node.endpointStatus(1))?.waitingReceives === 1,
  );
  controller.abort();
  await rejects(t, pending, 'ECANCELED');
  t.is((await node.endpointStatus(1))?.waitingReceives, 0);
});

test('status reports the pending call and the unanswered request of a sendrec', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const call = client.sendrec(1, { type: 3, payload: numbered(3) });
  await node.until(
    'the request to be queued',
    async () => (await node.endpointStatus(1))?.queued === 1,
  );
  t.is((await node.endpointStatus(2))?.pendingCalls, 1);
  t.is((await node.endpointStatus(1))?.unansweredRequests, 0);
  const request: Message = await server.receive({ timeout: 5000 });
  let s = await node.endpointStatus(1);
  t.is(s?.queued, 0);
  t.is(s?.unansweredRequests, 1);
  t.is((await node.endpointStatus(2))?.pendingCalls, 1);
  await server.reply(request, { type: 4 });
  const reply = await call;
  t.is(reply.type, 4);
  s = await node.endpointStatus(1);
  t.is(s?.unansweredRequests, 0);
  t.is(s?.counters.repliesSent, 1);
  t.is((await node.endpointStatus(2))?.pendingCalls, 0);
});

test('status reports the pid of the process that bound each endpoint', async (t) => {
  const node = await startNode(t);
  const peer = await node.peer(3);
  await node.bind(4);
  t.is((await node.endpointStatus(3))?.pid, peer.pid);
  t.is((await node.endpointStatus(4))?.pid, process.pid);
  t.not(peer.pid, process.pid);
});

test('bind and status fail with EHOSTUNREACH when no agent listens at the socket path', async (t) => {
  const node = openNode({ socketPath: '/nonexistent/x.sock' });
  await rejects(t, node.bind({ dc: DC.name, endpoint: 1 }), 'EHOSTUNREACH');
  await rejects(t, node.status(), 'EHOSTUNREACH');
});
