import test from 'ava';
import { numbered, numberOf, startNode } from '../helpers/backend.js';

test('receive({ from }) takes a sender held behind a queue full of other senders', async (t) => {
  const node = await startNode(t, { queueLength: 2 });
  const server = await node.bind(1);
  const filler = await node.bind(2);
  await filler.send(1, { payload: numbered(1) });
  await filler.send(1, { payload: numbered(2) });
  const late = await node.peer(3);
  const first = late.send(1, { payload: numbered(30) });
  const second = late.send(1, { payload: numbered(31) });
  await node.until(
    'both sends to be held',
    async () => (await node.endpointStatus(1))?.blockedSenders === 2,
  );
  const a = await server.receive({ from: 3, timeout: 2000 });
  const b = await server.receive({ from: 3, timeout: 2000 });
  t.deepEqual([numberOf(a.payload), numberOf(b.payload)], [30, 31]);
  t.true((await first).ok);
  t.true((await second).ok);
  const rest = [await server.receive({ timeout: 0 }), await server.receive({ timeout: 0 })];
  t.deepEqual(
    rest.map((m) => numberOf(m.payload)),
    [1, 2],
  );
});

test("a waiting receive({ from }) gets that sender's message although the queue is full", async (t) => {
  const node = await startNode(t, { queueLength: 1 });
  const server = await node.bind(1);
  const filler = await node.bind(2);
  await filler.send(1, { payload: numbered(1) });
  const waiting = server.receive({ from: 3, timeout: 2000 });
  const sender = await node.peer(3);
  t.true((await sender.send(1, { payload: numbered(3) }, { timeout: 2000 })).ok);
  t.is(numberOf((await waiting).payload), 3);
  t.is((await node.endpointStatus(1))?.queued, 1, 'the filler message is still queued');
});
