/**
 * A three-node mesh of link sets on loopback: every pair connects once, in the right direction,
 * and messages flow between every pair; status shows each link.
 */
import { once } from 'node:events';
import { createServer } from 'node:net';
import test from 'ava';
import pino from 'pino';
import { parseCluster } from '../../lib/cluster/config.js';
import { StaticDirectory } from '../../lib/cluster/directory.js';
import { LinkSet } from '../../lib/cluster/link-set.js';
import { until } from '../helpers/until.js';

async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as { port: number };
  s.close();
  await once(s, 'close');
  return port;
}

test('three nodes link up pairwise and deliver between every pair', async (t) => {
  const ports = [await freePort(), await freePort(), await freePort()];
  const config = parseCluster({
    cluster: { name: 'mesh', secret: 'a-secret-for-the-mesh-test' },
    link: { heartbeatMs: 50, silenceMs: 500, nodeDownMs: 2000 },
    nodes: ports.map((port, i) => ({ id: i + 1, name: `n${i + 1}`, address: `127.0.0.1:${port}` })),
  });
  const log = pino({ level: 'silent' });
  const sets = [1, 2, 3].map((i) => new LinkSet(new StaticDirectory(config, `n${i}`), config, log));
  t.teardown(() => {
    for (const s of sets) s.close();
  });
  const received = new Map<string, number[]>();
  sets.forEach((s, i) => {
    s.on('message', (from: number, payload: Buffer) => {
      const key = `${from}->${i + 1}`;
      received.set(key, [...(received.get(key) ?? []), payload.readUInt32LE(0)]);
    });
  });
  await Promise.all(sets.map((s) => s.start()));
  for (const [i, s] of sets.entries()) {
    for (const to of [1, 2, 3]) {
      if (to === i + 1) continue;
      for (let n = 0; n < 100; n++) {
        const b = Buffer.alloc(4);
        b.writeUInt32LE(n);
        s.send(to, b);
      }
    }
  }
  await until(
    'every message',
    () => [...received.values()].reduce((a, v) => a + v.length, 0) >= 600,
    10_000,
  ).catch(() => {}); // the assertions below say what is missing
  for (const from of [1, 2, 3]) {
    for (const to of [1, 2, 3]) {
      if (from === to) continue;
      t.deepEqual(
        received.get(`${from}->${to}`),
        Array.from({ length: 100 }, (_, n) => n),
        `${from} -> ${to}`,
      );
    }
  }
  const status = sets[0]?.status() ?? [];
  t.deepEqual(
    status.map((l) => [l.name, l.state, l.counters.connections]),
    [
      ['n2', 'up', 1],
      ['n3', 'up', 1],
    ],
  );
  // Heartbeats measure each link's round trip.
  await new Promise((r) => setTimeout(r, 200));
  t.true((sets[0]?.status() ?? []).every((l) => typeof l.rttMs === 'number' && l.unacked === 0));
});
