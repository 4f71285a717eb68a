/**
 * The quick-start demo: a three-node cluster on this machine (three agents, user backend, real
 * TCP between them), two key-value services and a client process on every node calling them
 * continuously. It moves the services around the nodes, then drains one node with `dvk drain`,
 * printing a line per move, and ends with a summary: calls, errors, lost, duplicated,
 * reordered, and the worst stall a client saw. Exit code 0 only if every count is zero.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { ClusterStatus, MigrationReport } from '../backend.js';
import { type DvkNode, openNode } from '../index.js';
import type { ClientReport } from './cluster-client.js';
import { KvOp, type KvState } from './kv-store.js';

const NODES = ['n1', 'n2', 'n3'] as const;
const DC = 'demo';
const SERVICES = { 'kv-a': 10, 'kv-b': 11 } as const;
/** The tour: each service visits every node; then n2 is drained. */
const TOUR: [keyof typeof SERVICES, string][] = [
  ['kv-a', 'n2'],
  ['kv-b', 'n3'],
  ['kv-a', 'n3'],
  ['kv-b', 'n2'],
  ['kv-a', 'n1'],
  ['kv-a', 'n2'],
  ['kv-b', 'n1'],
  ['kv-b', 'n2'],
];
const DRAINED = 'n2';

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const dvkCli = here('../cli/dvk.js');
const children: ChildProcess[] = [];

function log(line: string): void {
  console.log(`[demo] ${line}`);
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  return port;
}

async function until(what: string, ready: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ready().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function clusterOf(node: DvkNode): Promise<ClusterStatus | undefined> {
  return (await node.status()).cluster;
}

async function main(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'dvk-demo-'));
  try {
    return await run(dir);
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

async function run(dir: string): Promise<number> {
  const socket = (n: string) => join(dir, `${n}.sock`);
  const file = join(dir, 'cluster.yaml');
  const nodes = await Promise.all(
    NODES.map(async (name, i) => ({
      id: i + 1,
      name,
      address: `127.0.0.1:${await freePort()}`,
      socket: socket(name),
    })),
  );
  const services = Object.fromEntries(
    Object.entries(SERVICES).map(([name, endpoint]) => [
      name,
      { module: here('kv-store.js'), dc: DC, endpoint, node: 'n1' },
    ]),
  );
  await writeFile(
    file,
    stringify({
      cluster: { name: 'demo', secret: 'the demo cluster, on one machine' },
      link: { heartbeatMs: 100, silenceMs: 1000, nodeDownMs: 3000 },
      limits: { maxPayload: 65536, queueLength: 64, queueBytes: 1048576 },
      nodes,
      dcs: [{ id: 7, name: DC, nodes: [...NODES] }],
      services,
    }),
  );

  log(`starting three node agents (${NODES.join(', ')}) linked over TCP on 127.0.0.1`);
  for (const name of NODES) {
    const args = [dvkCli, 'agent', '--config', file, '--node', name, '--backend', 'user'];
    const agent = spawn(process.execPath, [...args, '--log-level', 'warn'], { stdio: 'inherit' });
    children.push(agent);
  }
  const api = Object.fromEntries(NODES.map((n) => [n, openNode({ socketPath: socket(n) })]));
  const n1 = api.n1 as DvkNode;
  await until('the agents and their links', async () => {
    for (const node of Object.values(api)) {
      const links = (await clusterOf(node))?.links ?? [];
      if (links.length !== NODES.length - 1 || links.some((l) => l.state !== 'up')) return false;
    }
    return true;
  });
  await until('the services', async () =>
    ((await clusterOf(n1))?.services ?? []).every((s) => s.node === 'n1'),
  );
  log(`services ${Object.keys(SERVICES).join(' and ')} serve on n1 (DC ${DC})`);

  const latest = new Map<string, ClientReport>();
  const clients = NODES.map((name, i) => {
    const endpoints = Object.values(SERVICES).map(String);
    const client = fork(here('cluster-client.js'), [socket(name), DC, `c${i + 1}`, ...endpoints]);
    children.push(client);
    client.on('message', (m: { progress?: ClientReport; final?: ClientReport }) => {
      const r = m.final ?? m.progress;
      if (r) latest.set(r.name, r);
    });
    return client;
  });
  log(`a client on every node calls both services in a loop`);
  await new Promise((r) => setTimeout(r, 500));

  const calls = () => [...latest.values()].reduce((n, r) => n + r.calls, 0);
  const describe = (r: MigrationReport) =>
    `${r.service} ${r.from} -> ${r.to} in ${r.ms.total.toFixed(0)} ms ` +
    `(freeze and hand-over ${r.ms.transfer.toFixed(1)} ms, state ${r.stateBytes} B); ` +
    `${calls()} calls so far`;
  for (const [i, [service, to]] of TOUR.entries()) {
    const report = await n1.migrate({ dc: DC, endpoint: SERVICES[service] }, { to });
    log(`move ${i + 1}/${TOUR.length}: ${describe(report)}`);
    await new Promise((r) => setTimeout(r, 300));
  }

  log(`draining ${DRAINED} for maintenance: dvk drain ${DRAINED}`);
  const drain = spawn(process.execPath, [dvkCli, 'drain', DRAINED, '--socket', socket('n1')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  drain.stdout.on('data', (d: Buffer) => {
    for (const line of d.toString().trimEnd().split('\n')) log(`  ${line}`);
  });
  const [drainCode] = (await once(drain, 'exit')) as [number | null];
  const where = (await clusterOf(n1))?.services ?? [];
  log(`after the drain: ${where.map((s) => `${s.name} on ${s.node}`).join(', ')}`);
  await new Promise((r) => setTimeout(r, 500));

  for (const client of clients) client.send('stop');
  await Promise.all(clients.map((c) => once(c, 'exit')));
  const reports = [...latest.values()];

  const probe = await n1.bind({ dc: DC, endpoint: 99 });
  const states: KvState[] = [];
  for (const endpoint of Object.values(SERVICES)) {
    const reply = await probe.sendrec(endpoint, { type: KvOp.STATS }, { timeout: 10_000 });
    states.push(JSON.parse(reply.payload.toString()) as KvState);
  }
  await probe.close();

  const applied = new Map<string, number>();
  for (const s of states) for (const [k, v] of Object.entries(s.values)) applied.set(k, v);
  let lost = 0;
  for (const r of reports) {
    for (const [key, acked] of Object.entries(r.acked)) {
      lost += Math.max(0, acked - (applied.get(key) ?? 0));
    }
  }
  const summary = {
    migrations: states.reduce((n, s) => n + s.moves, 0),
    calls: reports.reduce((n, r) => n + r.calls, 0),
    errors: reports.reduce((n, r) => n + r.errors.length, 0),
    lost,
    duplicated: states.reduce((n, s) => n + s.duplicated, 0),
    reordered: states.reduce((n, s) => n + s.reordered, 0),
    worstStallMs: Math.max(...reports.map((r) => r.worstStallMs)),
  };
  for (const r of reports) for (const e of r.errors.slice(0, 5)) log(`error at ${r.name}: ${e}`);
  log(
    `summary: ${summary.migrations} migrations, ${summary.calls} calls, ` +
      `${summary.errors} errors, ${summary.lost} lost, ${summary.duplicated} duplicated, ` +
      `${summary.reordered} reordered; worst stall ${summary.worstStallMs.toFixed(1)} ms`,
  );
  const clean =
    drainCode === 0 &&
    summary.errors === 0 &&
    summary.lost === 0 &&
    summary.duplicated === 0 &&
    summary.reordered === 0 &&
    where.every((s) => s.node !== DRAINED);
  log(clean ? 'OK: every call answered exactly once, in order' : 'FAILED: see above');

  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode === null ? once(c, 'exit') : undefined)));
  return clean ? 0 : 1;
}

process.exitCode = await main().catch((err: unknown) => {
  console.error(`[demo] failed: ${err instanceof Error ? err.message : String(err)}`);
  return 1;
});
