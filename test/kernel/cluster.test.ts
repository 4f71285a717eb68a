/**
 * A node whose endpoints live in dvk.ko, in a cluster with a user-backend node, inside the test
 * VM: its agent holds the module's proxy role (lib/cluster/kernel-calls.ts). Calls go both
 * ways between endpoints in the module and endpoints of the other agent, binds are claimed
 * across the cluster, and failures of the other node reach the module's callers.
 */
import { closeSync, openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { DvkError, type Endpoint } from '../../lib/index.js';
import { DEVICE_PATH } from '../../lib/kernel/backend.js';
import { destroyWhenEmpty, numbered, numberOf } from '../helpers/backend.js';
import { type Cluster, DC, startCluster } from '../helpers/cluster.js';
import { moduleStats, until } from './stats.js';

/** The module's DC goes at the end: registered first, it runs once the agents are gone. */
function destroyDcAtEnd(t: ExecutionContext): void {
  t.teardown(async () => {
    const admin = openSync(DEVICE_PATH, 'r+');
    try {
      await destroyWhenEmpty(admin, DC.id).catch(() => {});
    } finally {
      closeSync(admin);
    }
  });
}

/** n1 keeps its endpoints in dvk.ko, n2 in its agent. */
async function mixedCluster(t: ExecutionContext): Promise<Cluster> {
  destroyDcAtEnd(t);
  return startCluster(t, { nodes: 2, kernel: ['n1'], link: { nodeDownMs: 1_500 } });
}

/** Answers every request with its own payload; records plain messages and notifications. */
function serve(ep: Endpoint, seen: string[] = []): string[] {
  (async () => {
    for await (const m of ep) {
      if (m.kind === 'request') await ep.reply(m, { type: m.type + 1, payload: m.payload });
      else
        seen.push(
          `${m.kind} from ${m.source}: ${m.kind === 'notification' ? m.bits : numberOf(m.payload)}`,
        );
    }
  })().catch(() => {});
  return seen;
}

test('calls go both ways between endpoints in dvk.ko and endpoints of another node', async (t) => {
  const cluster = await mixedCluster(t);
  const [n1, n2] = cluster.nodes as [Cluster['nodes'][0], Cluster['nodes'][0]];
  const before = moduleStats();
  const kernelServer = await n1.bind(1);
  const kernelSeen = serve(kernelServer);
  const userServer = await n2.bind(2);
  const userSeen = serve(userServer);
  const userClient = await n2.bind(3);
  const kernelClient = await n1.bind(4);

  // Bound means known everywhere: the calls right after the binds reach their servers.
  const toKernel = await userClient.sendrec(1, { type: 5, payload: numbered(7) });
  t.is(toKernel.type, 6);
  t.is(numberOf(toKernel.payload), 7);
  t.is(toKernel.source, 1);
  t.is(toKernel.sourceGeneration, kernelServer.generation);
  const toUser = await kernelClient.sendrec(2, { type: 8, payload: numbered(9) });
  t.is(toUser.type, 9);
  t.is(numberOf(toUser.payload), 9);
  t.is(toUser.sourceGeneration, userServer.generation);

  for (let i = 0; i < 50; i++) {
    await userClient.send(1, { payload: numbered(i) });
    await kernelClient.send(2, { payload: numbered(i) });
  }
  await userClient.notify(1, 0x21);
  await kernelClient.notify(2, 0x42);
  await until('every message and notification to arrive', async () => {
    return kernelSeen.length === 51 && userSeen.length === 51;
  });
  const numbers = (seen: string[], from: number) =>
    seen.filter((s) => s.startsWith(`message from ${from}:`)).map((s) => Number(s.split(': ')[1]));
  t.deepEqual(numbers(kernelSeen, 3), [...Array(50).keys()], 'in order, once each, into dvk.ko');
  t.deepEqual(numbers(userSeen, 4), [...Array(50).keys()], 'in order, once each, out of dvk.ko');
  t.true(kernelSeen.includes('notification from 3: 33'));
  t.true(userSeen.includes('notification from 4: 66'));

  // The module knows the other node's endpoints as remote ones while they are bound.
  t.is(moduleStats().remotes, before.remotes + 2);
  await userClient.close();
  await userServer.close();
  await until('the module to forget the other node’s endpoints', async () => {
    return moduleStats().remotes === before.remotes;
  });
  const err = await t.throwsAsync(kernelClient.sendrec(2, { payload: numbered(1) }));
  t.is((err as DvkError).code, 'ENOENT');
});

test('binds are claimed across the cluster, from dvk.ko and into it', async (t) => {
  const cluster = await mixedCluster(t);
  const [n1, n2] = cluster.nodes as [Cluster['nodes'][0], Cluster['nodes'][0]];
  const onUser = await n2.bind(10);
  await t.throwsAsync(n1.bind(10), { instanceOf: DvkError, message: /EADDRINUSE/ });
  const inKernel = await n1.bind(11);
  await t.throwsAsync(n2.bind(11), { instanceOf: DvkError, message: /EADDRINUSE/ });
  await inKernel.close();
  await until('n2 to learn that 11 is free', async () => {
    try {
      await (await n2.bind(11)).close();
      return true;
    } catch {
      return false;
    }
  });
  await onUser.close();
  t.pass();
});

test('a server on another node: its unbind gives ESRCH, its agent dying EHOSTUNREACH', async (t) => {
  const cluster = await mixedCluster(t);
  const [n1, n2] = cluster.nodes as [Cluster['nodes'][0], Cluster['nodes'][0]];
  const caller = await n1.bind(20);

  const quitter = await n2.peer(21);
  await quitter.serve('hold');
  const held = caller.sendrec(21, { payload: numbered(1) });
  await until('the request to reach the server', async () => quitter.requests.length === 1);
  await quitter.kill();
  t.is(((await t.throwsAsync(held)) as DvkError).code, 'ESRCH');

  const doomed = await n2.peer(22);
  await doomed.serve('hold');
  const stranded = caller.sendrec(22, { payload: numbered(2) });
  await until('the request to reach the server', async () => doomed.requests.length === 1);
  const killedAt = Date.now();
  await n2.kill('SIGKILL');
  const err = (await t.throwsAsync(stranded)) as DvkError;
  const after = Date.now() - killedAt;
  t.log(`the caller in dvk.ko got ${err.code} ${after} ms after the other agent died`);
  t.is(err.code, 'EHOSTUNREACH');
  t.true(after < 1_500 + 5_000, 'within nodeDownMs and a margin');
  await caller.close();
});

test('a service moving between user-backend nodes keeps answering a caller in dvk.ko', async (t) => {
  t.timeout(120_000);
  destroyDcAtEnd(t);
  const ledger = fileURLToPath(new URL('../fixtures/ledger-service.js', import.meta.url));
  const cluster = await startCluster(t, {
    nodes: 3,
    kernel: ['n1'],
    link: { nodeDownMs: 1_500 },
    services: { ledger: { module: ledger, dc: DC.name, endpoint: 10, node: 'n2' } },
  });
  const [n1, n2, n3] = cluster.names('n1', 'n2', 'n3');
  await cluster.linksUp();
  const caller = await n1.bind(20);
  // A Node process starting in the emulated guest: seconds, not milliseconds.
  await until(
    'the ledger to serve',
    async () => {
      const where = (await n2.status()).cluster?.services.find((s) => s.name === 'ledger');
      return where?.node === 'n2';
    },
    60_000,
    50,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n--- n2's agent:\n${n2.log()}`);
  });
  let seq = 0;
  const errors: string[] = [];
  let running = true;
  const calling = (async () => {
    while (running) {
      const n = ++seq;
      const payload = Buffer.from(JSON.stringify({ client: 'kernel', seq: n }));
      try {
        const reply = await caller.sendrec(10, { payload }, { timeout: 20_000 });
        if (JSON.parse(reply.payload.toString()).seq !== n) errors.push(`#${n}: another reply`);
      } catch (err) {
        errors.push(`#${n}: ${String(err)}`);
      }
    }
  })();
  for (const [by, to] of [
    [n2, 'n3'],
    [n3, 'n2'],
    [n2, 'n3'],
  ] as const) {
    await by.node.migrate({ dc: DC.name, endpoint: 10 }, { to });
    await new Promise((r) => setTimeout(r, 200));
  }
  // The node in dvk.ko cannot take the service yet: it says so at once.
  const refused = await t.throwsAsync(n3.node.migrate({ dc: DC.name, endpoint: 10 }, { to: 'n1' }));
  t.regex(String(refused?.message), /EOPNOTSUPP/);
  running = false;
  await calling;
  t.deepEqual(errors, []);
  const stats = await caller.sendrec(10, { type: 100 }, { timeout: 20_000 });
  const book = JSON.parse(stats.payload.toString()) as {
    requests: Record<string, number>;
    duplicates: string[];
    gaps: string[];
  };
  t.is(book.requests.kernel, seq);
  t.deepEqual([...book.duplicates, ...book.gaps], []);
  t.log(`${seq} calls from dvk.ko across 3 moves`);
});
