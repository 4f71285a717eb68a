/**
 * More calls in flight than the module takes from one file (DVK_ASYNC_MAX): the rest wait in
 * the backend, in call order, instead of failing.
 */
import test from 'ava';
import { openNode } from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { numbered, numberOf } from '../helpers/backend.js';
import { moduleStats, testDc } from './stats.js';

test('calls beyond DVK_ASYNC_MAX wait their turn, keep their order, and time out if they must', async (t) => {
  t.timeout(240_000);
  testDc(t, 104, 'backlog');
  const node = openNode({ backend: 'kernel' });
  const receiver = await node.bind({ dc: 104, endpoint: 1 });
  const sender = await node.bind({ dc: 104, endpoint: 2 });
  t.teardown(async () => {
    await receiver.close();
    await sender.close();
  });
  const max = native().abi.asyncMax;
  const n = max + 200;
  const receives = Array.from({ length: n }, () => receiver.receive());
  // One more, beyond the limit, with a short timeout: it gives up without ever reaching the kernel.
  const late = receiver.receive({ timeout: 50 });
  t.is(((await t.throwsAsync(late)) as { code?: string } | undefined)?.code, 'ETIMEDOUT');
  t.is(moduleStats().calls, max, 'the module holds exactly its limit');
  // As many sends, all in flight at once: the sender's calls wait their turn too.
  const sends = Array.from({ length: n }, (_, i) => sender.send(1, { payload: numbered(i) }));
  await Promise.all(sends);
  const got = await Promise.all(receives);
  t.deepEqual(
    got.map((m) => numberOf(m.payload)),
    Array.from({ length: n }, (_, i) => i),
  );
});

test('submitted sends pin at most DVK_ASYNC_BYTES_MAX of payload; the rest wait in order', async (t) => {
  t.timeout(240_000);
  testDc(t, 105, 'pinned', 1);
  const node = openNode({ backend: 'kernel' });
  const receiver = await node.bind({ dc: 105, endpoint: 1 });
  const sender = await node.bind({ dc: 105, endpoint: 2 });
  t.teardown(async () => {
    await receiver.close();
    await sender.close();
  });
  const size = sender.maxPayload;
  const n = Math.ceil((2 * 64 * 2 ** 20) / size); // twice the limit
  const sends = Array.from({ length: n }, (_, i) => sender.send(1, { payload: numbered(i, size) }));
  await new Promise((r) => setTimeout(r, 200));
  const pinned = moduleStats().bytes;
  t.log(`${n} sends of ${size} B in flight; the module holds ${(pinned / 2 ** 20).toFixed(1)} MiB`);
  t.true(pinned <= 64 * 2 ** 20 + 2 * size, 'the module pins at most the limit (and the queue)');
  for (let i = 0; i < n; i++) {
    t.is(numberOf((await receiver.receive()).payload), i);
  }
  await Promise.all(sends);
  t.is(moduleStats().bytes, 0);
});
