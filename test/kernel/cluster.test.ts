/**
 * A node whose endpoints live in dvk.ko, in a cluster with a user-backend node, inside the test
 * VM: its agent holds the module's proxy role (lib/cluster/kernel-calls.ts). Calls go both
 * ways between endpoints in the module and endpoints of the other agent, binds are claimed
 * across the cluster, and failures of the other node reach the module's callers.
 */
import { closeSync, openSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { DvkError, type Endpoint } from '../../lib/index.js';
import { DEVICE_PATH } from '../../lib/kernel/backend.js';
import { destroyWhenEmpty, numbered, numberOf } from '../helpers/backend.js';
import { type Cluster, DC, startCluster } from '../helpers/cluster.js';
import { moduleStats, until } from './stats.js';

/** n1 keeps its endpoints in dvk.ko, n2 in its agent. The module's DC goes at the end. */
async function mixedCluster(t: ExecutionContext): Promise<Cluster> {
  // Registered first, so it runs last: once the agents are gone, the DC empties out.
  t.teardown(async () => {
    const admin = openSync(DEVICE_PATH, 'r+');
    try {
      await destroyWhenEmpty(admin, DC.id).catch(() => {});
    } finally {
      closeSync(admin);
    }
  });
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
