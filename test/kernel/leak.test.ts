/**
 * 100,000 calls leave no growth in the module's object counts or in this process's memory
 * beyond noise.
 */
import test from 'ava';
import { openNode } from '../../lib/index.js';
import { moduleStats, testDc } from './stats.js';

test('100,000 calls leave the module counters and RSS where they were', async (t) => {
  t.timeout(240_000);
  testDc(t, 103, 'leaks');
  const node = openNode({ backend: 'kernel' });
  const a = await node.bind({ dc: 103, endpoint: 1 });
  const b = await node.bind({ dc: 103, endpoint: 2 });
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const payload = Buffer.alloc(256, 7);
  const round = async (n: number) => {
    for (let i = 0; i < n; i++) {
      // Synchronous forms (ioctls on this thread) and submitted ones (the event loop path).
      await a.send(2, { type: i, payload }, { timeout: 0 });
      const m = b.receiveSync({ timeout: 0 });
      if (m.type !== i) throw new Error(`message ${i} came as ${m.type}`);
      await a.notify(2, 1);
      await b.receive();
    }
  };
  await round(5_000); // warm-up: JIT, allocator and slab caches settle
  global.gc?.();
  const before = { stats: moduleStats(), rss: process.memoryUsage().rss };
  await round(25_000); // 4 calls each: 100,000 calls
  global.gc?.();
  const after = { stats: moduleStats(), rss: process.memoryUsage().rss };
  t.deepEqual(after.stats, before.stats);
  const growth = after.rss - before.rss;
  t.log(`RSS ${(before.rss / 2 ** 20).toFixed(1)} -> ${(after.rss / 2 ** 20).toFixed(1)} MiB`);
  t.true(growth < 16 * 2 ** 20, `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB`);
});
