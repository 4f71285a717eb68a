/**
 * Services in the cluster file (docs/cluster.md, "Services"): real agents on loopback start
 * their node's services as child processes, which other nodes call; an instance that dies is
 * reported and not restarted; stopping the agent ends its instances; the kernel backend
 * refuses services for now.
 *
 * One test at a time, like the other cluster tests: each starts its own agents.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { stringify } from 'yaml';
import { cliPath } from '../helpers/backend.js';
import { type ClusterNode, DC, startCluster } from '../helpers/cluster.js';
import { codeWhenSettled } from '../helpers/expect.js';
import { isRunning, parentOf } from '../helpers/processes.js';
import { until } from '../helpers/until.js';

const counterModule = fileURLToPath(new URL('../fixtures/counter-service.js', import.meta.url));
const CALL = { timeout: 20_000 } as const;

/** The pid bound at `endpoint` of the test DC on `node`, once it is bound. */
async function boundBy(node: ClusterNode, endpoint: number): Promise<number> {
  let pid: number | null | undefined;
  await until(
    `endpoint ${endpoint} to be bound on ${node.name}`,
    async () => {
      const status = await node.status();
      pid = status.dcs
        .find((d) => d.id === DC.id)
        ?.endpoints.find((e) => e.endpoint === endpoint)?.pid;
      return typeof pid === 'number';
    },
    20_000,
    25,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${node.log()}`);
  });
  return pid as number;
}

/** The agent's log lines (pino JSON) that parse, with `msg`. */
function logLines(node: ClusterNode, msg: string): Record<string, unknown>[] {
  return node
    .log()
    .split('\n')
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    })
    .filter((l) => l.msg === msg);
}

test.serial(
  'a service in the cluster file runs on its node, answers other nodes, and a death is logged, not restarted',
  async (t) => {
    t.timeout(90_000);
    const cluster = await startCluster(t, { nodes: 2, absent: ['n1'] });
    const [n1, n2] = cluster.names('n1', 'n2');
    // n1 runs from a file whose service module is relative: it is the file's directory's.
    const file = await cluster.writeConfig('services.yaml', {
      ...cluster.config,
      services: {
        counter: {
          module: relative(cluster.dir, counterModule),
          dc: DC.name,
          endpoint: 5,
          node: 'n1',
        },
      },
    });
    await n1.start(file);
    await cluster.linksUp();

    const pid = await boundBy(n1, 5);
    t.is(parentOf(pid), n1.agent.pid, "the instance is a child of n1's agent");
    await until('n2 to know the endpoint', async () => {
      return ((await n2.status()).cluster?.remoteEndpoints ?? 0) >= 1;
    });
    const client = await n2.bind(2);
    for (const expected of ['1', '2', '3']) {
      t.is((await client.sendrec(5, {}, CALL)).payload.toString(), expected);
    }
    // The agent's output reaches this process on its own pipe: wait for it.
    await until("n1's log to say serving", () => logLines(n1, 'service serving').length > 0);
    const serving = logLines(n1, 'service serving');
    t.is(serving.length, 1);
    t.is(serving[0]?.service, 'counter');

    process.kill(pid, 'SIGKILL');
    await until('the death to be logged', () => logLines(n1, 'service instance died').length > 0);
    const died = logLines(n1, 'service instance died')[0];
    t.is(died?.level, 50);
    t.is(died?.signal, 'SIGKILL');
    t.is(died?.service, 'counter');
    await until('endpoint 5 to unbind', async () => {
      const status = await n1.status();
      return !status.dcs.some((d) => d.endpoints.some((e) => e.endpoint === 5));
    });
    t.is(await codeWhenSettled(client.sendrec(5, {}, CALL)), 'ENOENT', 'nobody serves it now');
    t.is(logLines(n1, 'service instance started').length, 1, 'no restart');
  },
);

test.serial("stopping an agent ends its services' instances", async (t) => {
  t.timeout(90_000);
  const service = (endpoint: number, node: string) => ({
    module: counterModule,
    dc: DC.name,
    endpoint,
    node,
  });
  const cluster = await startCluster(t, {
    nodes: 2,
    services: { a: service(5, 'n1'), b: service(6, 'n1'), c: service(7, 'n2') },
  });
  const [n1, n2] = cluster.names('n1', 'n2');
  const pids = [await boundBy(n1, 5), await boundBy(n1, 6)];
  const other = await boundBy(n2, 7);
  t.not(pids[0], pids[1]);

  t.deepEqual(await n1.kill('SIGTERM'), { code: 0, signal: null });
  for (const pid of pids) t.false(isRunning(pid), `instance ${pid} is gone with its agent`);
  await until("n1's log to say both exited", () => {
    return logLines(n1, 'service instance exited').length === 2;
  });
  t.is(logLines(n1, 'service instance died').length, 0, 'asked to exit, none died');
  t.true(isRunning(other), "the other node's instance is not its business");

  // An agent that is killed cannot stop its instances: they leave when their channel closes.
  t.deepEqual(await n2.kill('SIGKILL'), { code: null, signal: 'SIGKILL' });
  await until('the orphaned instance to exit', () => !isRunning(other), 10_000);
  t.pass();
});

test.serial('an agent with the kernel backend refuses services for its node', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'dvk-services-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'cluster.yaml');
  await writeFile(
    file,
    stringify({
      cluster: { name: 'test', secret: 'a-secret-of-32-characters-length' },
      nodes: [{ id: 1, name: 'n1', address: '127.0.0.1:1', socket: join(dir, 'n1.sock') }],
      dcs: [{ ...DC, nodes: ['n1'] }],
      services: { counter: { module: counterModule, dc: DC.name, endpoint: 5, node: 'n1' } },
    }),
  );
  const child = spawn(
    process.execPath,
    [cliPath, 'agent', '--config', file, '--node', 'n1', '--backend', 'kernel'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const [code] = await once(child, 'close');
  clearTimeout(timer);
  t.is(code, 2, stderr);
  t.regex(stderr, /services need the user backend/);
  t.regex(stderr, /counter/);
});
