import test from 'ava';
import { DvkError, type Message } from '../../lib/index.js';
import { numbered, numberOf, startNode } from '../helpers/backend.js';
import { nothingPending, rejects, unbound, waitingReceives } from '../helpers/expect.js';

test('a notification arrives as kind notification with its bits and source', async (t) => {
  const node = await startNode(t);
  const target = await node.bind(1);
  const notifier = await node.bind(2);
  await notifier.notify(1, 0x10);
  const m = await target.receive({ timeout: 0 });
  t.is(m.kind, 'notification');
  t.is(m.bits, 0x10);
  t.is(m.source, 2);
  t.is(m.sourceGeneration, notifier.generation);
  t.is(m.type, 0);
  t.is(m.requestId, 0n);
  t.is(m.payload.length, 0);
});

test('notifications from one sender coalesce into one until received', async (t) => {
  const node = await startNode(t);
  const target = await node.bind(1);
  const notifier = await node.bind(2);
  await notifier.notify(1, 1);
  await notifier.notify(1, 2);
  await notifier.notify(1, 4);
  await notifier.notify(1, 2);
  const m = await target.receive({ timeout: 0 });
  t.is(m.kind, 'notification');
  t.is(m.bits, 7);
  await nothingPending(t, target, 'the coalesced bits were delivered once');
});

test('bits notified after a receive start a fresh mask', async (t) => {
  const node = await startNode(t);
  const target = await node.bind(1);
  const notifier = await node.bind(2);
  await notifier.notify(1, 1);
  t.is((await target.receive({ timeout: 0 })).bits, 1);
  await notifier.notify(1, 8);
  t.is((await target.receive({ timeout: 0 })).bits, 8);
  await nothingPending(t, target, 'each mask was delivered once');
});

test('the full 32-bit mask is accepted, coalesced and delivered as an unsigned number', async (t) => {
  const node = await startNode(t);
  const target = await node.bind(1);
  const notifier = await node.bind(2);
  await notifier.notify(1, 0x8000_0000);
  await notifier.notify(1, 1);
  t.is((await target.receive({ timeout: 0 })).bits, 0x8000_0001);
  await notifier.notify(1, 0xffff_ffff);
  t.is((await target.receive({ timeout: 0 })).bits, 0xffff_ffff);
});

test('bits from separate sender processes are not merged', async (t) => {
  const node = await startNode(t);
  const target = await node.bind(1);
  const a = await node.peer(2);
  const b = await node.peer(3);
  t.deepEqual(await a.call('notify', [1, 1]), { ok: true, value: null });
  t.deepEqual(await b.call('notify', [1, 2]), { ok: true, value: null });
  t.deepEqual(await a.call('notify', [1, 4]), { ok: true, value: null });
  const got = [await target.receive({ timeout: 0 }), await target.receive({ timeout: 0 })];
  await nothingPending(t, target, 'exactly one notification per sender');
  const bySource = new Map(got.map((m) => [m.source, m]));
  t.is(bySource.get(2)?.kind, 'notification');
  t.is(bySource.get(2)?.bits, 5);
  t.is(bySource.get(2)?.sourceGeneration, a.address.generation);
  t.is(bySource.get(3)?.kind, 'notification');
  t.is(bySource.get(3)?.bits, 2);
  t.is(bySource.get(3)?.sourceGeneration, b.address.generation);
});

test('notify does not block on a full queue and its notification is received first', async (t) => {
  const node = await startNode(t, { queueLength: 1 });
  const target = await node.bind(1);
  const sender = await node.bind(2);
  await sender.send(1, { type: 1, payload: numbered(1) });
  await rejects(t, sender.send(1, { payload: numbered(2) }, { timeout: 0 }), 'EAGAIN');
  await t.notThrowsAsync(sender.notify(1, 3));
  const notifier = await node.bind(3);
  await t.notThrowsAsync(notifier.notify(1, 4));
  const first = await target.receive({ timeout: 0 });
  const second = await target.receive({ timeout: 0 });
  const third = await target.receive({ timeout: 0 });
  t.deepEqual(
    [first, second].map((m) => [m.kind, m.source, m.bits]),
    [
      ['notification', 2, 3],
      ['notification', 3, 4],
    ],
    'pending notifications come first, in order of arrival',
  );
  t.is(third.kind, 'message');
  t.is(numberOf(third.payload), 1);
  await nothingPending(t, target, 'all delivered');
});

test('a notification wakes a waiting receive', async (t) => {
  const node = await startNode(t);
  const target = await node.bind(1);
  const waiting = target.receive({ timeout: 10_000 });
  await waitingReceives(node, 1);
  const notifier = await node.peer(2);
  t.true((await notifier.call('notify', [1, 0x40])).ok);
  const m = await waiting;
  t.is(m.kind, 'notification');
  t.is(m.bits, 0x40);
  t.is(m.source, 2);
  await nothingPending(t, target, 'the woken receive took the notification');
});

test('receive from one source takes only that source’s notifications', async (t) => {
  const node = await startNode(t);
  const target = await node.bind(1);
  const a = await node.bind(2);
  const b = await node.bind(3);
  await a.notify(1, 1);
  await b.notify(1, 2);
  const fromB = await target.receive({ from: 3, timeout: 0 });
  t.is(fromB.kind, 'notification');
  t.is(fromB.source, 3);
  t.is(fromB.bits, 2);
  await rejects(t, target.receive({ from: 3, timeout: 0 }), 'EAGAIN');
  await rejects(t, target.receive({ from: 4, timeout: 0 }), 'EAGAIN');
  await rejects(
    t,
    target.receive({ from: { endpoint: 2, generation: a.generation + 1 }, timeout: 0 }),
    'ENOENT',
  );
  const fromA = await target.receive({
    from: { endpoint: 2, generation: a.generation },
    timeout: 0,
  });
  t.is(fromA.source, 2);
  t.is(fromA.bits, 1);
});

test('a waiting receive filtered to one source is not woken by another source’s notification', async (t) => {
  const node = await startNode(t);
  const target = await node.bind(1);
  const a = await node.bind(2);
  const b = await node.bind(3);
  const results: Message[] = [];
  const waiting = target.receive({ from: 3, timeout: 10_000 }).then((m) => {
    results.push(m);
    return m;
  });
  await waitingReceives(node, 1);
  await a.notify(1, 1);
  await node.until('the notification from 2 to be pending', async () => {
    return (await node.endpointStatus(1))?.pendingNotifications === 1;
  });
  t.deepEqual(results, [], 'the filtered receive is still waiting');
  t.is((await node.endpointStatus(1))?.waitingReceives, 1);
  await b.notify(1, 2);
  const m = await waiting;
  t.is(m.source, 3);
  t.is(m.bits, 2);
  const left = await target.receive({ timeout: 0 });
  t.is(left.source, 2);
  t.is(left.bits, 1);
});

test('notify rejects bits that are not a non-zero 32-bit mask with EINVAL', async (t) => {
  const node = await startNode(t);
  const target = await node.bind(1);
  const notifier = await node.bind(2);
  for (const bits of [0, -1, 1.5, 0x1_0000_0000, Number.NaN, Number.POSITIVE_INFINITY]) {
    const err = await t.throwsAsync(
      notifier.notify(1, bits),
      { instanceOf: DvkError },
      `bits ${bits}`,
    );
    t.is(err?.code, 'EINVAL', `bits ${bits}`);
    t.is(err?.endpoint, 2);
  }
  await nothingPending(t, target, 'no bad notification got through');
});

test('notify to an unbound endpoint fails with ENOENT', async (t) => {
  const node = await startNode(t);
  const notifier = await node.bind(2);
  const err = await rejects(t, notifier.notify(9, 1), 'ENOENT');
  t.is(err?.endpoint, 2);
  t.is(err?.peer, 9);
});

test('notify to a stale generation fails with ENOENT and the newcomer gets nothing', async (t) => {
  const node = await startNode(t);
  const old = await node.bind(1);
  const stale = old.generation;
  await old.close();
  await unbound(node, 1);
  const fresh = await node.bind(1);
  const notifier = await node.bind(2);
  await rejects(t, notifier.notify({ endpoint: 1, generation: stale }, 1), 'ENOENT');
  await nothingPending(t, fresh, 'the stale notification did not reach the new binding');
  await notifier.notify({ endpoint: 1, generation: fresh.generation }, 2);
  t.is((await fresh.receive({ timeout: 0 })).bits, 2);
});

test('bits notified before the notifier was killed are still delivered', async (t) => {
  const node = await startNode(t);
  const target = await node.bind(1);
  const notifier = await node.peer(2);
  const generation = notifier.address.generation;
  t.true((await notifier.call('notify', [1, 1])).ok);
  t.true((await notifier.call('notify', [1, 0x100])).ok);
  await notifier.kill();
  await unbound(node, 2);
  const m = await target.receive({ timeout: 0 });
  t.is(m.kind, 'notification');
  t.is(m.bits, 0x101);
  t.is(m.source, 2);
  t.is(m.sourceGeneration, generation);
  await node.release();
  await node.assertEmpty(t);
});

test('notifications pending for a closed endpoint are not delivered to a new bind of its number', async (t) => {
  const node = await startNode(t);
  const target = await node.peer(1);
  const notifier = await node.bind(2);
  await notifier.notify(1, 7);
  await node.until('the notification to be pending', async () => {
    return (await node.endpointStatus(1))?.pendingNotifications === 1;
  });
  await target.close();
  await unbound(node, 1);
  const fresh = await node.bind(1);
  await nothingPending(t, fresh, 'the old binding’s notification is gone');
  await notifier.notify(1, 8);
  t.is((await fresh.receive({ timeout: 0 })).bits, 8, 'only bits sent to the new binding arrive');
});

test('a notification to a caller during its sendrec does not end the call and stays pending', async (t) => {
  const node = await startNode(t);
  const server = await node.bind(1);
  const client = await node.bind(2);
  const call = client.sendrec(1, { payload: numbered(1) });
  const request = await server.receive({ timeout: 5000 });
  await server.notify(2, 0x20);
  await server.reply(request, { type: 11 });
  const reply = await call;
  t.is(reply.type, 11);
  const m = await client.receive({ timeout: 0 });
  t.is(m.kind, 'notification');
  t.is(m.bits, 0x20);
  t.is(m.source, 1);
});

test('the message iterator yields notifications too', async (t) => {
  const node = await startNode(t);
  const target = await node.bind(1);
  const notifier = await node.bind(2);
  await notifier.send(1, { type: 9, payload: numbered(9) });
  await notifier.notify(1, 2);
  const seen: Message[] = [];
  for await (const m of target) {
    seen.push(m);
    if (seen.length === 2) break;
  }
  t.deepEqual(
    seen.map((m) => [m.kind, m.bits, m.type]),
    [
      ['notification', 2, 0],
      ['message', 0, 9],
    ],
  );
});
