/**
 * The quick-start demo: one node agent, a counter service and several clients, each a separate
 * process, talking through endpoints of DC "demo". It checks the service's final count against
 * what the clients did and exits non-zero if they disagree.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openNode } from '../index.js';
import { KvOp, REPORT_BIT } from './kv-protocol.js';

const CLIENTS = 4;
const CALLS = 250;
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));

const dir = await mkdtemp(join(tmpdir(), 'dvk-demo-'));
const socketPath = join(dir, 'agent.sock');
const children: ChildProcess[] = [];

function log(line: string): void {
  console.log(`[demo] ${line}`);
}

async function main(): Promise<void> {
  log(`starting the node agent on ${socketPath}`);
  const agent = spawn(
    process.execPath,
    [
      here('../cli/dvk.js'),
      'agent',
      '--socket',
      socketPath,
      '--dc',
      '7:demo',
      '--log-level',
      'warn',
    ],
    { stdio: 'inherit' },
  );
  children.push(agent);
  const node = openNode({ socketPath });
  for (let i = 0; ; i++) {
    try {
      await node.status();
      break;
    } catch (err) {
      if (i > 200) throw err;
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  log('starting the counter service on endpoint 1');
  const service = fork(here('kv-service.js'), [socketPath, 'demo', '1']);
  children.push(service);
  await once(service, 'message');

  log(`starting ${CLIENTS} client processes, ${CALLS} increments of "shared" each`);
  const clients = Array.from({ length: CLIENTS }, (_, i) =>
    fork(here('kv-client.js'), [socketPath, 'demo', String(10 + i), '1', String(CALLS)]),
  );
  children.push(...clients);
  const codes = await Promise.all(clients.map(async (c) => (await once(c, 'exit'))[0] as number));
  if (codes.some((c) => c !== 0)) throw new Error(`a client failed (exit codes ${codes})`);

  const checker = await node.bind({ dc: 'demo', endpoint: 2 });
  const reply = await checker.sendrec(1, { type: KvOp.GET, payload: Buffer.from('shared') });
  const total = Number(reply.payload.readBigInt64LE(0));
  await checker.notify(1, REPORT_BIT);

  log('node status (dvk status):');
  const status = spawn(
    process.execPath,
    [here('../cli/dvk.js'), 'status', '--socket', socketPath],
    {
      stdio: 'inherit',
    },
  );
  await once(status, 'exit');
  await checker.close();

  const expected = CLIENTS * CALLS;
  if (total !== expected) throw new Error(`"shared" is ${total}, expected ${expected}`);
  log(`"shared" = ${total}, expected ${expected}: every call arrived exactly once`);
}

try {
  await main();
} catch (err) {
  console.error(`[demo] FAILED: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  for (const child of children.reverse()) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  }
  await rm(dir, { recursive: true, force: true });
}
