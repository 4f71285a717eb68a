/**
 * The kernel backend in worker threads: the addon polls each thread's own event loop, and the
 * synchronous calls block only the worker that makes them.
 */
import { Worker } from 'node:worker_threads';
import test from 'ava';
import { openNode } from '../../lib/index.js';
import { moduleStats, testDc, until } from './stats.js';

const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  const { openNode } = await import(workerData.lib);
  const node = openNode({ backend: 'kernel' });
  const ep = await node.bind({ dc: workerData.dc, endpoint: workerData.endpoint });
  const asyncReplies = await Promise.all(
    Array.from({ length: 32 }, (_, i) => ep.sendrec(1, { type: i })),
  );
  let syncOk = 0;
  for (let i = 0; i < 200; i++) {
    const r = ep.sendrecSync(1, { type: 1000 + i, payload: Buffer.from([i & 0xff]) });
    if (r.type === 1001 + i && r.payload[0] === (i & 0xff)) syncOk++;
  }
  const pending = ep.receive();
  parentPort.postMessage({
    asyncOk: asyncReplies.every((r, i) => r.type === i + 1),
    syncOk,
    generation: ep.generation,
  });
  // Left pending on purpose: the worker's exit must close the file and undo it.
  pending.catch(() => {});
})().catch((err) => parentPort.postMessage({ error: String(err), code: err.code }));
`;

test('workers make async and sync calls on their own event loops; their exit unbinds', async (t) => {
  testDc(t, 101, 'workers');
  const node = openNode({ backend: 'kernel' });
  const server = await node.bind({ dc: 101, endpoint: 1 });
  t.teardown(() => server.close());
  const serving = (async () => {
    for await (const m of server) {
      if (m.kind === 'request') await server.reply(m, { type: m.type + 1, payload: m.payload });
    }
  })();
  await until('the server loop to wait', () => moduleStats().calls === 1);
  const before = moduleStats();
  const lib = new URL('../../lib/index.js', import.meta.url).href;
  const results = await Promise.all(
    [2, 3, 4].map(async (endpoint) => {
      const worker = new Worker(workerSource, {
        eval: true,
        workerData: { lib, dc: 101, endpoint },
      });
      const [message] = (await Promise.race([
        new Promise((resolve) => worker.once('message', (m) => resolve([m]))),
        new Promise((_, reject) => worker.once('error', reject)),
      ])) as [{ asyncOk?: boolean; syncOk?: number; error?: string }];
      await worker.terminate();
      return message;
    }),
  );
  for (const r of results) {
    t.is(r.error, undefined);
    t.true(r.asyncOk);
    t.is(r.syncOk, 200);
  }
  // The terminated workers' files are closed, their pending receives undone: nothing is left.
  await until('the workers to unbind', () => moduleStats().endpoints === before.endpoints);
  t.deepEqual(moduleStats(), before);
  await server.close();
  await serving;
});
