/**
 * The fixture every conformance test runs on. DVK_TEST_BACKEND picks the backend (default
 * `user`); each test gets a node of its own, so tests run concurrently without sharing state.
 * The user backend starts a real agent process (`dvk agent`) on a private socket.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import {
  type DvkNode,
  type Endpoint,
  type EndpointStatus,
  type NodeStatus,
  openNode,
} from '../../lib/index.js';
import { Peer } from './peer.js';

export const backendKind = process.env.DVK_TEST_BACKEND ?? 'user';

export const cliPath = fileURLToPath(new URL('../../lib/cli/dvk.js', import.meta.url));

export interface NodeOptions {
  queueLength?: number;
  queueBytes?: number;
  maxPayload?: number;
  /** Extra agent flags (user backend only). */
  agentArgs?: string[];
}

/** The DC tests bind in, and a second one for isolation tests. */
export const DC = { id: 1, name: 'test', slots: 64 } as const;
export const OTHER_DC = { id: 2, name: 'other', slots: 64 } as const;

export class TestNode {
  readonly node: DvkNode;
  /** Everything the agent wrote to stdout and stderr (pino JSON lines). */
  agentLog = '';
  private readonly endpoints: Endpoint[] = [];
  private readonly peers: Peer[] = [];

  constructor(
    readonly socketPath: string,
    readonly dir: string,
    readonly agent: ChildProcess,
  ) {
    this.node = openNode({ socketPath });
  }

  /** Binds an endpoint in this process; closed when the test ends. */
  async bind(endpoint: number, dc: number | string = DC.name): Promise<Endpoint> {
    const ep = await this.node.bind({ dc, endpoint });
    this.endpoints.push(ep);
    return ep;
  }

  /** Forks a peer process, bound to `endpoint` if given; killed when the test ends. */
  async peer(endpoint?: number, dc: number | string = DC.name): Promise<Peer> {
    const p = await Peer.start();
    this.peers.push(p);
    if (endpoint !== undefined) await p.bind(this.socketPath, dc, endpoint);
    return p;
  }

  status(): Promise<NodeStatus> {
    return this.node.status();
  }

  /** The status of one endpoint in the test DC, or undefined if it is not bound. */
  async endpointStatus(endpoint: number, dc: number = DC.id): Promise<EndpointStatus | undefined> {
    const status = await this.status();
    return status.dcs.find((d) => d.id === dc)?.endpoints.find((e) => e.endpoint === endpoint);
  }

  /** Polls until `check` holds; fails after `ms`. For state that another process changes. */
  async until(what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Every DC is empty: no binding, queue entry or waiter survived the test's cleanup. */
  async assertEmpty(t: ExecutionContext): Promise<void> {
    await this.until('all endpoints to unbind', async () =>
      (await this.status()).dcs.every((d) => d.endpoints.length === 0),
    ).catch(() => {});
    const status = await this.status();
    t.deepEqual(
      status.dcs.flatMap((d) => d.endpoints),
      [],
      'no endpoint may outlive its process',
    );
  }

  /** Closes this process's endpoints and kills the peers. */
  async release(): Promise<void> {
    await Promise.all(this.endpoints.map((e) => e.close()));
    await Promise.all(this.peers.map((p) => p.kill()));
  }

  async stop(): Promise<void> {
    await this.release();
    if (this.agent.exitCode === null && this.agent.signalCode === null) {
      const exited = once(this.agent, 'exit');
      this.agent.kill('SIGTERM');
      await exited;
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Starts the agent process for a user-backend node and waits until it answers. */
export async function startAgent(
  socketPath: string,
  args: string[],
): Promise<{ agent: ChildProcess; log: () => string }> {
  let log = '';
  const agent = spawn(
    process.execPath,
    [cliPath, 'agent', '--socket', socketPath, '--log-level', 'info', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  agent.stdout?.on('data', (d) => {
    log += d;
  });
  agent.stderr?.on('data', (d) => {
    log += d;
  });
  const node = openNode({ socketPath });
  const end = Date.now() + 10_000;
  for (;;) {
    if (agent.exitCode !== null) throw new Error(`agent exited (${agent.exitCode}): ${log}`);
    try {
      await node.status();
      return { agent, log: () => log };
    } catch {
      if (Date.now() > end) {
        agent.kill('SIGKILL');
        throw new Error(`agent did not come up: ${log}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** A fresh node for one test, torn down when the test ends. */
export async function startNode(t: ExecutionContext, options: NodeOptions = {}): Promise<TestNode> {
  if (backendKind !== 'user') {
    throw new Error(`DVK_TEST_BACKEND=${backendKind}: this build has only the user backend`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'dvk-test-'));
  // Peers may run as another user in permission tests; the socket's own mode is what guards.
  await chmod(dir, 0o755);
  const socketPath = join(dir, 'agent.sock');
  const args = [
    '--dc',
    `${DC.id}:${DC.name}:${DC.slots}`,
    '--dc',
    `${OTHER_DC.id}:${OTHER_DC.name}:${OTHER_DC.slots}`,
  ];
  if (options.queueLength) args.push('--queue-length', String(options.queueLength));
  if (options.queueBytes) args.push('--queue-bytes', String(options.queueBytes));
  if (options.maxPayload) args.push('--max-payload', String(options.maxPayload));
  args.push(...(options.agentArgs ?? []));
  let started: Awaited<ReturnType<typeof startAgent>>;
  try {
    started = await startAgent(socketPath, args);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const { agent, log } = started;
  const node = new TestNode(socketPath, dir, agent);
  Object.defineProperty(node, 'agentLog', { get: log });
  t.teardown(() => node.stop());
  return node;
}

/** A payload whose bytes encode `n`, so order and identity can be checked on arrival. */
export function numbered(n: number, size = 8): Buffer {
  const b = Buffer.alloc(Math.max(size, 8));
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

export function numberOf(payload: Uint8Array): number {
  return Number(Buffer.from(payload).readBigUInt64LE(0));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
