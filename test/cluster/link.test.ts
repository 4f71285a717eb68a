/**
 * Agent-to-agent links over real TCP on loopback: exactly-once delivery in order across cut
 * connections, authentication with the cluster secret, and the node-down verdict.
 */
import { once } from 'node:events';
import { createConnection } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import pino from 'pino';
import { Link, type LinkTiming } from '../../lib/cluster/link.js';
import { LinkServer } from '../../lib/cluster/link-server.js';
import { encodeFrame, encodeHello, FrameType } from '../../lib/cluster/link-wire.js';
import { CuttingProxy } from '../helpers/cutting-proxy.js';
import { until } from '../helpers/until.js';

const SECRET = 'a-cluster-secret-for-the-tests';
const timing: LinkTiming = {
  heartbeatMs: 50,
  silenceMs: 400,
  nodeDownMs: 1_500,
  maxFrame: 1 << 20,
};
const log = pino({ level: 'silent' });

/** Node 1 (dials) and node 2 (listens), optionally through a proxy, with their own secrets. */
async function pair(t: ExecutionContext, options: { proxy?: boolean; secretOf2?: string } = {}) {
  const n1 = { id: 1, name: 'n1', address: '127.0.0.1:1' };
  const n2 = { id: 2, name: 'n2', address: '127.0.0.1:0' };
  const b = new Link({
    self: 2,
    peer: n1,
    cluster: 'lab',
    secret: options.secretOf2 ?? SECRET,
    timing,
    log,
  });
  const server = new LinkServer(new Map([[1, b]]), timing.maxFrame, timing.silenceMs, log);
  const port = await server.listen('127.0.0.1', 0);
  n2.address = `127.0.0.1:${port}`;
  const proxy = options.proxy ? new CuttingProxy(port) : undefined;
  const dialAddress = proxy ? `127.0.0.1:${await proxy.listen()}` : undefined;
  const a = new Link({
    self: 1,
    peer: n2,
    cluster: 'lab',
    secret: SECRET,
    timing,
    log,
    ...(dialAddress ? { dialAddress } : {}),
  });
  t.teardown(() => {
    a.close();
    b.close();
    server.close();
    proxy?.close();
  });
  return { a, b, server, proxy, port };
}

/** Collects numbered messages and checks they come exactly once, in order. */
function counter(link: Link) {
  const seen = { count: 0, outOfOrder: 0 };
  link.on('message', (payload: Buffer) => {
    if (payload.readUInt32LE(0) !== seen.count) seen.outOfOrder++;
    seen.count++;
  });
  return seen;
}

function numbered(i: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(i, 0);
  return b;
}

test('20,000 messages each way arrive exactly once and in order across 15 connection cuts', async (t) => {
  t.timeout(120_000);
  const { a, b, proxy } = await pair(t, { proxy: true });
  const atB = counter(b);
  const atA = counter(a);
  a.start();
  const total = 20_000;
  // Send in bursts, so that many messages are in flight at every cut.
  let sent = 0;
  const sender = setInterval(() => {
    for (let k = 0; k < 50 && sent < total; k++, sent++) {
      a.send(numbered(sent));
      b.send(numbered(sent));
    }
  }, 5);
  // Cuts at random moments while traffic flows, a bounded number of times: a link cut faster
  // than it can retransmit what it holds cannot make progress, on any transport.
  const cutter = setInterval(() => {
    if ((proxy?.cuts ?? 0) < 15 && Math.random() < 0.5) proxy?.cut();
  }, 30);
  await until('every message to arrive', () => atB.count >= total && atA.count >= total, 100_000);
  clearInterval(sender);
  clearInterval(cutter);
  await new Promise((r) => setTimeout(r, 200)); // anything late would be a duplicate
  const lost = 2 * total - atB.count - atA.count;
  t.log(
    `cuts ${proxy?.cuts}; n1->n2 delivered ${atB.count}, n2->n1 ${atA.count}; lost ${lost}; ` +
      `duplicates dropped ${a.counters.duplicates + b.counters.duplicates}, ` +
      `retransmitted ${a.counters.retransmitted + b.counters.retransmitted}, connections ${a.counters.connections}`,
  );
  t.true((proxy?.cuts ?? 0) >= 10, 'the connection was cut many times mid-stream');
  t.is(atB.count, total, 'n1 -> n2: none lost, none duplicated');
  t.is(atA.count, total, 'n2 -> n1: none lost, none duplicated');
  t.is(atB.outOfOrder + atA.outOfOrder, 0, 'in order');
});

test('a peer with the wrong cluster secret is refused and nothing is delivered', async (t) => {
  const { a, b } = await pair(t, { secretOf2: 'another-secret-entirely-wrong' });
  const violations: string[] = [];
  a.on('violation', (r: string) => violations.push(r));
  b.on('violation', (r: string) => violations.push(r));
  let up = false;
  a.on('up', () => {
    up = true;
  });
  b.on('up', () => {
    up = true;
  });
  const atB = counter(b);
  a.start();
  a.send(numbered(0));
  await until('a refusal', () => violations.some((v) => /authentication failed/.test(v)), 5_000);
  await new Promise((r) => setTimeout(r, 300));
  t.false(up);
  t.is(atB.count, 0);
});

test('a peer that goes away is declared down within nodeDownMs and what it never got is listed', async (t) => {
  const { a, b, server } = await pair(t);
  const atB = counter(b);
  a.start();
  await once(a, 'up');
  a.send(numbered(0));
  await until('the first message', () => atB.count === 1, 5_000);
  b.close();
  server.close();
  const gone = Date.now();
  for (let i = 1; i <= 3; i++) a.send(numbered(i));
  const [lost] = (await once(a, 'down')) as [Buffer[]];
  const took = Date.now() - gone;
  t.log(`declared down after ${took} ms (nodeDownMs ${timing.nodeDownMs})`);
  t.true(took <= timing.nodeDownMs + 4 * timing.heartbeatMs + 500);
  t.deepEqual(
    lost.map((p) => p.readUInt32LE(0)),
    [1, 2, 3],
  );
  t.is(a.state, 'down');
});

/** A deterministic generator, so a failing fuzz run can be replayed from its seed. */
function generator(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x1_0000_0000;
  };
}

test('10,000 random and mutated frames are refused and the link server keeps serving', async (t) => {
  t.timeout(120_000);
  const { a, b, server, port } = await pair(t);
  const seed = Number(process.env.DVK_FUZZ_SEED ?? Date.now() % 1_000_000);
  t.log(`seed ${seed} (DVK_FUZZ_SEED replays it)`);
  const random = generator(seed);
  const hello = encodeFrame({
    type: FrameType.HELLO,
    seq: 0n,
    ack: 0n,
    stream: 0n,
    body: encodeHello({
      node: 1,
      cluster: 'lab',
      stream: 5n,
      peerStream: 0n,
      delivered: 0n,
      nonce: Buffer.alloc(32),
    }),
  });
  let frames = 0;
  for (let c = 0; c < 250; c++) {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.on('error', () => {});
    socket.resume(); // read and drop what the server says, so the socket can close
    await once(socket, 'connect');
    const chunks: Buffer[] = [];
    for (let i = 0; i < 40; i++, frames++) {
      // Half random bytes, half a valid HELLO with one bit flipped.
      const f = Buffer.from(hello);
      if (random() < 0.5) {
        for (let k = 0; k < f.length; k++) f[k] = Math.floor(random() * 256);
      } else {
        const k = Math.floor(random() * f.length);
        f[k] = (f[k] ?? 0) ^ (1 << Math.floor(random() * 8));
      }
      chunks.push(f);
    }
    socket.end(Buffer.concat(chunks));
    await once(socket, 'close');
  }
  t.true(frames >= 10_000);
  t.true(server.refused > 0, 'malformed connections were refused');
  // The real peer still connects, authenticates and delivers.
  const atB = counter(b);
  a.start();
  a.send(numbered(0));
  await until('delivery after the fuzz', () => atB.count === 1, 10_000);
  t.is(atB.count, 1);
});

test('a stranger claiming to be the peer does not cut the live link', async (t) => {
  const { a, b, port } = await pair(t);
  const atB = counter(b);
  a.start();
  await once(a, 'up');
  const connections = a.counters.connections;
  const violations: string[] = [];
  b.on('violation', (r: string) => violations.push(r));
  const stranger = createConnection({ host: '127.0.0.1', port });
  stranger.on('error', () => {});
  stranger.resume();
  await once(stranger, 'connect');
  const hello = encodeHello({
    node: 1,
    cluster: 'lab',
    stream: 9n,
    peerStream: 0n,
    delivered: 0n,
    nonce: Buffer.alloc(32, 1),
  });
  stranger.write(encodeFrame({ type: FrameType.HELLO, seq: 0n, ack: 0n, stream: 0n, body: hello }));
  stranger.write(
    encodeFrame({ type: FrameType.AUTH, seq: 0n, ack: 0n, stream: 0n, body: Buffer.alloc(32) }),
  );
  await once(stranger, 'close');
  t.true(violations.some((v) => /authentication failed/.test(v)));
  a.send(numbered(0));
  await until('delivery over the original connection', () => atB.count === 1, 5_000);
  t.is(a.counters.connections, connections, 'the live connection was never dropped');
});
