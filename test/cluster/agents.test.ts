/**
 * IPC between agents on different nodes: real `dvk agent` processes linked over real TCP on
 * loopback (test/helpers/cluster.ts). Calls across nodes keep one node's semantics; cut
 * connections lose, duplicate and reorder nothing; a dead node fails its callers with
 * EHOSTUNREACH in bounded time and can rejoin; a wrong secret or garbage on a link port gets
 * nowhere; the CLI shows the links.
 *
 * The tests run one at a time: each starts three agents, and several at once on two CPUs
 * would stretch heartbeats towards the (deliberately short) node-down verdict.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createConnection } from 'node:net';
import test from 'ava';
import {
  encodeFrame,
  encodeHello,
  FrameType,
  LINK_HEADER,
  NONCE_BYTES,
} from '../../lib/cluster/link-wire.js';
import { DvkError, type Endpoint } from '../../lib/index.js';
import { cliPath, numbered, numberOf, sleep } from '../helpers/backend.js';
import {
  type ClusterNodeStatus,
  DC,
  type LinkStatus,
  startCluster,
  TEST_LINK,
} from '../helpers/cluster.js';
import { codeOf, rejects } from '../helpers/expect.js';
import { until } from '../helpers/until.js';

/** Answers every request on `ep` with its own type and payload, until `ep` closes. */
function echo(ep: Endpoint): void {
  (async () => {
    for await (const m of ep) {
      if (m.kind === 'request') await ep.reply(m, { type: m.type, payload: m.payload });
    }
  })().catch(() => {});
}

/** A call's outcome and when it settled: its error code (or 'ok') and Date.now(). */
function settledAt(promise: Promise<unknown>): Promise<{ code: string; at: number }> {
  return promise.then(
    () => ({ code: 'ok', at: Date.now() }),
    (err: unknown) => ({ code: err instanceof DvkError ? err.code : String(err), at: Date.now() }),
  );
}

/** `promise`, or an error naming `what` after `ms`: a hang fails with a reason, not a timeout. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `dvk ...` to completion (killed after `ms`, which then shows as a signal). */
async function dvk(args: string[], ms = 15_000) {
  const child: ChildProcess = spawn(process.execPath, [cliPath, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => {
    stdout += d;
  });
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  // 'close', not 'exit': only then has all output been read.
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  return { code, signal, stdout, stderr };
}

/** Per sender, what arrived: how many, and how many were missing, repeated or out of order. */
function tally(seqs: number[], expected: number) {
  const unique = new Set(seqs);
  let outOfOrder = 0;
  for (let i = 1; i < seqs.length; i++) if ((seqs[i] ?? 0) <= (seqs[i - 1] ?? 0)) outOfOrder++;
  let lost = 0;
  for (let n = 0; n < expected; n++) if (!unique.has(n)) lost++;
  return { received: seqs.length, lost, duplicated: seqs.length - unique.size, outOfOrder };
}

// --- calls across nodes ----------------------------------------------------------------

test.serial('sendrec, send, notify and receive({ from }) across nodes', async (t) => {
  t.timeout(60_000);
  const cluster = await startCluster(t);
  const [n1, n2, n3] = cluster.names('n1', 'n2', 'n3');
  const c2 = await n2.bind(2);
  const c3 = await n3.bind(3);

  // A server process on n1 echoes; both other nodes call it right after it bound.
  const server = await n1.peer(1);
  await server.serve('echo');
  for (const [caller, from] of [
    [c2, 'n2'],
    [c3, 'n3'],
  ] as const) {
    const reply = await caller.sendrec(
      1,
      { type: 7, payload: Buffer.from(`hello from ${from}`) },
      { timeout: 10_000 },
    );
    t.is(reply.payload.toString(), `hello from ${from}`);
    t.is(reply.type, 7);
    t.is(reply.source, 1, 'the reply names the server');
    t.is(reply.sourceGeneration, server.address.generation);
  }
  // The peer reports each request over its IPC channel, which may lag the reply.
  await until('the server to report both requests', () => server.requests.length === 2);
  t.deepEqual(
    server.requests.map((r) => r.source),
    [2, 3],
    'the server saw each caller by its number',
  );

  // An endpoint in this process, bound through n1's agent, receives from the other nodes.
  const inbox = await n1.bind(4);
  await c2.send(4, { type: 3, payload: Buffer.from('a message from n2') }, { timeout: 10_000 });
  const m = await inbox.receive({ timeout: 10_000 });
  t.like(m, { kind: 'message', source: 2, sourceGeneration: c2.generation, type: 3 });
  t.is(m.payload.toString(), 'a message from n2');

  await c3.notify(4, 0xa5);
  const note = await inbox.receive({ timeout: 10_000 });
  t.like(note, { kind: 'notification', source: 3, sourceGeneration: c3.generation, bits: 0xa5 });

  // Two messages queued, n2's first: a receive from n3 takes n3's, the next one n2's.
  await c2.send(4, { payload: Buffer.from('first, from n2') }, { timeout: 10_000 });
  await c3.send(4, { payload: Buffer.from('second, from n3') }, { timeout: 10_000 });
  await until(
    'both messages to be queued at 4',
    async () => {
      const s = await n1.status();
      const ep = s.dcs.find((d) => d.id === DC.id)?.endpoints.find((e) => e.endpoint === 4);
      return ep?.queued === 2;
    },
    10_000,
  );
  const fromN3 = await inbox.receive({
    from: { endpoint: 3, generation: c3.generation },
    timeout: 10_000,
  });
  t.is(fromN3.source, 3);
  t.is(fromN3.payload.toString(), 'second, from n3');
  const rest = await inbox.receive({ timeout: 10_000 });
  t.is(rest.source, 2);
  t.is(rest.payload.toString(), 'first, from n2');
});

test.serial('per-sender order holds for 200 sends from each of two remote senders', async (t) => {
  t.timeout(60_000);
  // A short queue, so that many of the senders' messages wait for room.
  const cluster = await startCluster(t, { limits: { queueLength: 16 } });
  const [n1, n2, n3] = cluster.names('n1', 'n2', 'n3');
  t.is((await n1.status()).limits.queueLength, 16, "the cluster file's limits apply");
  const inbox = await n1.bind(1);
  const senders = [await n2.bind(2), await n3.bind(3)];
  const total = 200;
  // Issued without awaiting each: order is call order.
  const sending = Promise.all(
    senders.flatMap((s) =>
      Array.from({ length: total }, (_, i) =>
        s.send(1, { payload: numbered(i) }, { timeout: 30_000 }),
      ),
    ),
  );
  const arrived = new Map<number, number[]>([
    [2, []],
    [3, []],
  ]);
  for (let i = 0; i < 2 * total; i++) {
    const m = await inbox.receive({ timeout: 30_000 });
    arrived.get(m.source)?.push(numberOf(m.payload));
  }
  await sending;
  for (const [source, seqs] of arrived) {
    t.deepEqual(
      seqs,
      Array.from({ length: total }, (_, i) => i),
      `from ${source}: all, once, in order`,
    );
  }
});

test.serial('ENOENT, ESRCH, EADDRINUSE and EADDRNOTAVAIL across nodes', async (t) => {
  t.timeout(60_000);
  // Endpoints 16..31 live on n1.
  const cluster = await startCluster(t, { placement: { n1: ['16-31'] } });
  const [n1, n2, n3] = cluster.names('n1', 'n2', 'n3');
  const caller = await n2.bind(2);
  const message = { payload: Buffer.from('anyone?') };

  // Nothing bound: neither at a free number nor at one placed on the other node.
  await rejects(t, caller.send(40, message, { timeout: 10_000 }), 'ENOENT');
  await rejects(t, caller.send(20, message, { timeout: 10_000 }), 'ENOENT');
  await rejects(t, caller.sendrec(20, message, { timeout: 10_000 }), 'ENOENT');
  await rejects(t, caller.notify(20, 1), 'ENOENT');

  // 20 is n1's: only n1 may bind it; a stale generation of it is ENOENT from afar too.
  await rejects(t, n2.node.bind({ dc: DC.name, endpoint: 20 }), 'EADDRNOTAVAIL');
  const placed = await n1.bind(20);
  echo(placed);
  const reply = await caller.sendrec(20, message, { timeout: 10_000 });
  t.is(reply.sourceGeneration, placed.generation);
  await rejects(
    t,
    caller.sendrec({ endpoint: 20, generation: placed.generation + 1 }, message, {
      timeout: 10_000,
    }),
    'ENOENT',
  );

  // A server process that dies holding a remote caller's request fails it with ESRCH.
  const holder = await n1.peer(21);
  await holder.serve('hold');
  const held = caller.sendrec(21, message, { timeout: 30_000 });
  await until('the server to hold the request', () => holder.requests.length === 1, 10_000);
  await holder.kill();
  await rejects(t, held, 'ESRCH');

  // A free number bound on n3 is taken for the whole cluster.
  const taken = await n3.bind(5);
  await rejects(t, n1.node.bind({ dc: DC.name, endpoint: 5 }), 'EADDRINUSE');
  await rejects(t, n2.node.bind({ dc: DC.name, endpoint: 5 }), 'EADDRINUSE');
  // Once it is unbound there, another node may bind it.
  await taken.close();
  let rebound: Endpoint | undefined;
  await until(
    'endpoint 5 to be free for n1',
    async () => {
      rebound = await n1.bind(5).catch(() => undefined);
      return rebound !== undefined;
    },
    10_000,
    50,
  );
  t.truthy(rebound);
});

// --- connections cut under load ----------------------------------------------------------

test.serial('connections cut every 100 ms: no call lost, duplicated or reordered', async (t) => {
  t.timeout(240_000);
  // Cuts, not node failure, are under test: a slow node-down verdict, so that a loaded machine
  // reconnecting slowly never turns a cut into EHOSTUNREACH.
  const cluster = await startCluster(t, { proxies: true, link: { nodeDownMs: 30_000 } });
  const [n1, n2, n3] = cluster.names('n1', 'n2', 'n3');
  // The server is on n3, the highest id: both other nodes dial it, so every link carrying the
  // traffic runs through n3's proxy, and cutting there cuts them all.
  const proxy = n3.proxy as NonNullable<typeof n3.proxy>;
  const server = await n3.bind(1);
  const arrived = new Map<string, number[]>();
  const replyFailures: string[] = [];
  (async () => {
    for await (const m of server) {
      const key = `${m.kind}s from ${m.source}`;
      const seqs = arrived.get(key) ?? [];
      arrived.set(key, seqs);
      seqs.push(numberOf(m.payload));
      if (m.kind === 'request') {
        server
          .reply(m, { payload: m.payload })
          .catch((err: DvkError) => replyFailures.push(err.code));
      }
    }
  })().catch(() => {});

  const minimum = 2_000;
  const minimumCuts = 12;
  const inFlight = 8;
  const failures: string[] = [];
  let wrongReplies = 0;
  const enough = (issued: number) =>
    (issued >= minimum && proxy.cuts >= minimumCuts) || issued >= 20 * minimum;
  /** Numbered calls from `ep`, `inFlight` at a time, issued in number order. */
  const run = async (ep: Endpoint, call: 'send' | 'sendrec') => {
    let next = 0;
    const lane = async () => {
      while (!enough(next) && failures.length === 0) {
        const i = next++;
        try {
          if (call === 'send') await ep.send(1, { payload: numbered(i) }, { timeout: 60_000 });
          else {
            const reply = await ep.sendrec(1, { payload: numbered(i) }, { timeout: 60_000 });
            if (numberOf(reply.payload) !== i) wrongReplies++;
          }
        } catch (err) {
          failures.push(`${call} ${i} from ${ep.endpoint}: ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: inFlight }, lane));
    return next;
  };

  const [call1, call2, send1, send2] = [
    await n1.bind(11),
    await n2.bind(21),
    await n1.bind(12),
    await n2.bind(22),
  ];
  const cutter = setInterval(() => proxy.cut(), 100);
  const issued = await Promise.all([
    run(call1, 'sendrec'),
    run(call2, 'sendrec'),
    run(send1, 'send'),
    run(send2, 'send'),
  ]).finally(() => clearInterval(cutter));
  const [calls1 = 0, calls2 = 0, sends1 = 0, sends2 = 0] = issued;
  const expected = new Map([
    ['requests from 11', calls1],
    ['requests from 21', calls2],
    ['messages from 12', sends1],
    ['messages from 22', sends2],
  ]);
  // Sends resolve once queued; wait until the server has taken them all, then a little more:
  // anything arriving late would be a duplicate.
  const total = issued.reduce((a, b) => a + b, 0);
  await until(
    'the server to receive everything',
    () => [...arrived.values()].reduce((a, v) => a + v.length, 0) >= total,
    30_000,
  ).catch(() => {}); // the tallies below say what is missing
  await sleep(300);

  const links = (await Promise.all([n1, n2, n3].map((n) => n.links()))).flat();
  const sum = (k: keyof LinkStatus['counters']) => links.reduce((a, l) => a + l.counters[k], 0);
  t.log(
    `cuts ${proxy.cuts}; issued: sendrecs ${calls1} + ${calls2}, sends ${sends1} + ${sends2}; ` +
      `links: retransmitted ${sum('retransmitted')}, duplicates dropped ${sum('duplicates')}, ` +
      `connections ${sum('connections')}`,
  );
  t.deepEqual(failures, [], 'every call succeeded');
  for (const [key, n] of expected) {
    const counts = tally(arrived.get(key) ?? [], n);
    t.log(`${key}: ${JSON.stringify(counts)}`);
    t.deepEqual(counts, { received: n, lost: 0, duplicated: 0, outOfOrder: 0 }, key);
  }
  t.deepEqual([...arrived.keys()].sort(), [...expected.keys()].sort(), 'nothing else arrived');
  t.is(wrongReplies, 0, 'every reply answered its own request');
  t.deepEqual(replyFailures, []);
  t.true(proxy.cuts >= 10, `the links were cut during the traffic (${proxy.cuts} cuts)`);
  t.true(
    calls1 >= minimum && calls2 >= minimum && sends1 >= minimum && sends2 >= minimum,
    'each caller made its calls',
  );
});

// --- a node that dies --------------------------------------------------------------------

test.serial('a killed agent: EHOSTUNREACH within nodeDownMs, then it rejoins', async (t) => {
  t.timeout(120_000);
  const cluster = await startCluster(t);
  const [n1, n2] = cluster.names('n1', 'n2');
  // The server on n1 holds its requests: the callers on n2 wait on n1.
  const server = await n1.peer(1);
  await server.serve('hold');
  const caller = await n2.bind(2);
  const calls = Array.from({ length: 5 }, (_, i) =>
    settledAt(caller.sendrec(1, { payload: numbered(i) }, { timeout: 60_000 })),
  );
  await until('the server to hold all 5 requests', () => server.requests.length === 5, 10_000);

  const killedAt = Date.now();
  await n1.kill('SIGKILL');
  const outcomes = await Promise.all(calls);
  const waited = outcomes.map((o) => o.at - killedAt);
  t.log(`callers failed after ${waited.join(', ')} ms (nodeDownMs ${TEST_LINK.nodeDownMs})`);
  t.deepEqual(
    outcomes.map((o) => o.code),
    Array(5).fill('EHOSTUNREACH'),
  );
  const bound = TEST_LINK.nodeDownMs + 2_000;
  t.true(Math.max(...waited) <= bound, `every caller failed within ${bound} ms`);
  const link = await n2.link('n1');
  t.true(
    link?.state === 'down' || link?.state === 'connecting',
    `n2's link to n1 is ${link?.state}`,
  );

  // The node comes back empty; once linked, a new server there is reachable from n2 at once.
  await n1.start();
  await cluster.linksUp();
  const again = await n1.peer(1);
  await again.serve('echo');
  const reply = await caller.sendrec(1, { payload: numbered(42) }, { timeout: 10_000 });
  t.is(numberOf(reply.payload), 42);
  t.is(reply.sourceGeneration, again.address.generation);
});

// --- strangers on the link ports ----------------------------------------------------------

test.serial('an agent with the wrong secret never links up nor serves', async (t) => {
  t.timeout(60_000);
  // n3 is in the file but not started: an impostor runs as n3, at n3's address.
  const cluster = await startCluster(t, { absent: ['n3'] });
  const [n1, n2, n3] = cluster.names('n1', 'n2', 'n3');
  const impostorFile = await cluster.writeConfig('impostor.yaml', {
    ...cluster.config,
    cluster: { ...cluster.config.cluster, secret: 'not-the-secret-of-this-cluster' },
  });
  await n3.start(impostorFile);

  // n1 and n2 dial it again and again; no connection may ever count as up.
  const seen = new Set<string>();
  const watchUntil = Date.now() + 1_500;
  while (Date.now() < watchUntil) {
    for (const n of [n1, n2]) seen.add(`${n.name}: ${(await n.link('n3'))?.state}`);
    for (const l of await n3.links()) seen.add(`impostor: ${l.name} ${l.state}`);
    await sleep(25);
  }
  t.log(`link states seen: ${[...seen].sort().join('; ')}`);
  t.false(
    [...seen].some((s) => s.endsWith('up')),
    'no link between the impostor and the cluster was ever up',
  );
  for (const n of [n1, n2]) {
    await until(`${n.name} to log the failed authentication`, () =>
      /authentication failed/.test(n.log()),
    ).catch(() => {});
    t.regex(n.log(), /authentication failed/, `${n.name} logs why it refused n3`);
  }
  t.true((await n1.link('n2'))?.state === 'up', 'the real nodes stay linked');

  // What binds on the impostor stays unknown to the cluster.
  const ghost = await within(15_000, 'bind on the impostor', n3.bind(30));
  t.truthy(ghost);
  const caller = await n1.bind(31);
  await rejects(t, caller.sendrec(30, { payload: numbered(1) }, { timeout: 10_000 }), 'ENOENT');
  await rejects(t, caller.send(30, { payload: numbered(2) }, { timeout: 10_000 }), 'ENOENT');
});

/** A deterministic generator, so that a failing fuzz run can be replayed from its seed. */
function generator(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x1_0000_0000;
  };
}

/** Writes `pieces` to a link port one write each, then closes; resolves once closed. */
async function blast(port: number, pieces: Buffer[]): Promise<void> {
  const socket = createConnection({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  socket.resume(); // read and drop what the agent answers, so the socket can close
  // Not events.once: it would reject on the 'error' a reset emits.
  const closed = new Promise((resolve) => socket.once('close', resolve));
  try {
    await once(socket, 'connect');
    for (const piece of pieces) socket.write(piece);
    socket.end();
  } catch {
    // Refused or reset: the agent closed it, which is fine.
  }
  const timer = setTimeout(() => socket.destroy(), 2_000);
  await closed;
  clearTimeout(timer);
}

test.serial('10,000 bad link frames leave the agents serving and linked', async (t) => {
  t.timeout(240_000);
  const cluster = await startCluster(t);
  const [n1, n2, n3] = cluster.names('n1', 'n2', 'n3');
  const seed = Number(process.env.DVK_FUZZ_SEED ?? Date.now() % 1_000_000);
  t.log(`seed ${seed} (DVK_FUZZ_SEED replays it)`);
  const random = generator(seed);
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const u64 = () => (random() < 0.5 ? BigInt(int(8)) : bytes(8).readBigUInt64LE(0));
  const maxFrame = 17 * 1024 * 1024; // the default the cluster file keeps

  const hello = (node = pick([1, 2, 3, 0, 9, 65_535])) =>
    encodeFrame({
      type: FrameType.HELLO,
      seq: 0n,
      ack: 0n,
      stream: 0n,
      body: encodeHello({
        node,
        cluster: random() < 0.8 ? cluster.config.cluster.name : 'elsewhere',
        stream: u64() | 1n,
        peerStream: u64(),
        delivered: u64(),
        nonce: bytes(NONCE_BYTES),
      }),
    });
  const valid = (): Buffer => {
    const type = pick(Object.values(FrameType));
    if (type === FrameType.HELLO) return hello();
    const body =
      type === FrameType.AUTH ? bytes(32) : type === FrameType.DATA ? bytes(int(64)) : undefined;
    return encodeFrame({
      type,
      seq: u64(),
      ack: u64(),
      stream: u64(),
      ...(body ? { body } : {}),
    });
  };
  const flipped = (f: Buffer) => {
    const out = Buffer.from(f);
    for (let k = 1 + int(3); k > 0; k--) {
      const i = int(out.length);
      out[i] = (out[i] ?? 0) ^ (1 << int(8));
    }
    return out;
  };
  const huge = () => {
    const f = Buffer.concat([valid().subarray(0, LINK_HEADER), bytes(int(100))]);
    f.writeUInt32LE(pick([maxFrame - LINK_HEADER + 1, maxFrame, 0x7fff_ffff, 0xffff_ffff]), 4);
    return f;
  };
  const oddHeader = () => {
    const f = valid();
    f.writeUInt8(int(256), 3); // any type
    if (random() < 0.3) f.writeUInt8(int(4), 2); // any version
    return f;
  };
  /** One connection's frames: each plan aims at another step of the link's parsing. */
  const plans: (() => Buffer[])[] = [
    () => Array.from({ length: 1 + int(3) }, () => bytes(1 + int(300))),
    () => Array.from({ length: 1 + int(5) }, () => flipped(valid())),
    // A well-formed HELLO from a node that may dial, then anything but a valid AUTH.
    () => [
      hello(pick([1, 2])),
      ...Array.from({ length: 1 + int(8) }, () =>
        pick([valid, oddHeader, () => flipped(valid())])(),
      ),
    ],
    () => {
      const f = random() < 0.5 ? hello(pick([1, 2])) : valid();
      return [f.subarray(0, 1 + int(f.length - 1))];
    },
    () => [huge()],
    () => Array.from({ length: 1 + int(4) }, oddHeader),
  ];

  // The links the lower ids dial: only their own dials count as their connections.
  const dialling = async () => {
    const counts: string[] = [];
    for (const n of [n1, n2]) {
      for (const l of await n.links()) {
        if (l.node > n.id) counts.push(`${n.name}->${l.name} ${l.counters.connections}`);
      }
    }
    return counts.join(', ');
  };
  const before = await dialling();
  // Every connection is made up first, from the seed alone, so that a seed replays the same
  // bytes in the same pieces; eight connections at a time then deliver them.
  const ports = [n1, n2, n3].map((n) => n.listenPort);
  const goal = 10_000;
  const connections: { port: number; pieces: Buffer[] }[] = [];
  let frames = 0;
  while (frames < goal) {
    const batch = pick(plans)();
    frames += batch.length;
    let rest = Buffer.concat(batch);
    const pieces: Buffer[] = [];
    while (rest.length) {
      const n = random() < 0.7 ? rest.length : 1 + int(rest.length);
      pieces.push(rest.subarray(0, n));
      rest = rest.subarray(n);
    }
    connections.push({ port: pick(ports), pieces });
  }
  let next = 0;
  const worker = async () => {
    while (next < connections.length) {
      const c = connections[next++] as (typeof connections)[number];
      await blast(c.port, c.pieces);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  t.log(`${frames} frames over ${connections.length} connections to the three agents`);
  t.true(frames >= goal);

  for (const n of [n1, n2, n3]) t.true(n.running, `${n.name}'s agent is alive`);
  t.regex(n3.log(), /link connection refused|protocol violation/, 'the fuzz reached the parser');
  await cluster.linksUp();
  t.log(`dialled connections before the fuzz: ${before}; after: ${await dialling()}`);

  // Every node still calls every other.
  const servers = await Promise.all([n1, n2, n3].map((n, i) => n.bind(1 + i)));
  for (const s of servers) echo(s);
  for (const [i, n] of [n1, n2, n3].entries()) {
    const caller = await n.bind(10 + i);
    for (const target of [1, 2, 3].filter((e) => e !== 1 + i)) {
      const reply = await caller.sendrec(
        target,
        { payload: numbered(target) },
        { timeout: 10_000 },
      );
      t.is(reply.source, target, `${n.name} -> endpoint ${target}`);
    }
  }
});

// --- the CLI ------------------------------------------------------------------------------

test.serial('dvk status shows each link up with its round trip (JSON, table)', async (t) => {
  t.timeout(60_000);
  const cluster = await startCluster(t);
  const n1 = cluster.get('n1');
  let status: ClusterNodeStatus | undefined;
  await until(
    'dvk status --json to show every link up with a round trip',
    async () => {
      const run = await dvk(['status', '--socket', n1.socketPath, '--json']);
      if (run.code !== 0) return false;
      status = JSON.parse(run.stdout) as ClusterNodeStatus;
      const links = status.cluster?.links ?? [];
      return links.length === 2 && links.every((l) => l.state === 'up' && l.rttMs !== null);
    },
    15_000,
    200,
  ).catch(() => {});
  t.is(status?.cluster?.name, cluster.config.cluster.name);
  t.deepEqual(status?.cluster?.self, { id: 1, name: 'n1' });
  t.deepEqual(
    status?.cluster?.links
      .map((l) => [l.name, l.state, typeof l.rttMs])
      .sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    [
      ['n2', 'up', 'number'],
      ['n3', 'up', 'number'],
    ],
  );
  const table = await dvk(['status', '--socket', n1.socketPath]);
  t.is(table.code, 0, table.stderr);
  t.regex(table.stdout, /\bn2\b/);
  t.regex(table.stdout, /\bn3\b/);
});

test.serial('dvk agent with a cluster file exits 2 without a known --node', async (t) => {
  const cluster = await startCluster(t, { absent: ['n1', 'n2', 'n3'] });
  const missing = await dvk(['agent', '--config', cluster.file]);
  t.is(missing.code, 2, `without --node: ${missing.stderr}`);
  t.regex(missing.stderr, /node/);
  const unknown = await dvk(['agent', '--config', cluster.file, '--node', 'nope']);
  t.is(unknown.code, 2, `--node nope: ${unknown.stderr}`);
  t.regex(unknown.stderr, /nope/);
});

test.serial(
  'SIGTERM: a remote caller waiting gets ESRCH at once, not a node-down verdict; exit 0',
  async (t) => {
    t.timeout(60_000);
    const cluster = await startCluster(t);
    const [n1, n2] = cluster.names('n1', 'n2');
    const server = await n1.peer(1);
    await server.serve('hold');
    const caller = await n2.peer(2);
    const call = caller.sendrec(1, { payload: numbered(1) });
    await until('the server to hold the request', () => server.requests.length === 1, 10_000);
    const termAt = Date.now();
    const exit = await n1.kill('SIGTERM');
    t.deepEqual(exit, { code: 0, signal: null }, 'the agent exits 0');
    const outcome = await within(15_000, "the remote caller's sendrec", call);
    t.log(`the remote caller got ${codeOf(outcome)} ${Date.now() - termAt} ms after SIGTERM`);
    // The stopping agent unbinds its endpoints and flushes its links before it exits, so the
    // caller hears that the server went away; EHOSTUNREACH would mean it only learnt that n1 died.
    t.is(codeOf(outcome), 'ESRCH');
    t.regex(n1.log(), /shutting down/);
  },
);
