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
