/**
 * The fixture every conformance test runs on. DVK_TEST_BACKEND picks the backend (default
 * `user`). The user backend starts a real agent process (`dvk agent`) on a private socket for
 * each test, so tests run concurrently without sharing state. `cluster` starts two agents linked
 * as a cluster and binds even endpoint numbers on one node and odd ones on the other, so a
 * test's client and server (endpoints 1 and 2, say) talk across nodes. The kernel backend uses dvk.ko
 * (in the test VM): each test creates the DCs it binds in and destroys them at its end; DC ids
 * and names are the node's, so kernel runs are serial (ava --serial --concurrency 1). `guests`
 * runs in guest A of two QEMU guests linked as a cluster (kmod/vm/cluster): the test binds on
 * guest A's node and its peers run in guest B (GuestsTestNode).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
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
import { DEVICE_PATH } from '../../lib/kernel/backend.js';
import { native } from '../../lib/native.js';
import { type Cluster, type ClusterNode, startCluster } from './cluster.js';
import { Peer, peerHostStatus } from './peer.js';
import { until } from './until.js';

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
  protected readonly endpoints: Endpoint[] = [];
  protected readonly peers: Peer[] = [];

  /**
   * @param socketPath the agent's socket (user backend), undefined for the kernel backend
   * @param cleanup what ends the node once the test's endpoints and peers are gone
   */
  constructor(
    readonly socketPath: string | undefined,
    private readonly agentProcess: ChildProcess | undefined,
    private readonly cleanup: () => Promise<void>,
  ) {
    this.node = openNode(socketPath === undefined ? { backend: 'kernel' } : { socketPath });
  }

  /** The agent process (user backend only). */
  get agent(): ChildProcess {
    if (!this.agentProcess) throw new Error('the kernel backend has no agent process');
    return this.agentProcess;
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
  until(what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
    return until(what, check, ms);
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
    await this.cleanup();
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
  if (backendKind === 'kernel') return startKernelNode(t, options);
  if (backendKind === 'cluster') return startClusterNode(t, options);
  if (backendKind === 'guests') return startGuestsNode(t, options);
  if (backendKind !== 'user') throw new Error(`DVK_TEST_BACKEND=${backendKind}: unknown backend`);
  return startUserNode(t, options);
}

/** A user-backend node: its agent's socket and private directory are known. */
export class UserTestNode extends TestNode {
  declare readonly socketPath: string;

  constructor(
    socketPath: string,
    readonly dir: string,
    agent: ChildProcess,
    cleanup: () => Promise<void>,
  ) {
    super(socketPath, agent, cleanup);
  }
}

/** A node with its own agent process, whatever DVK_TEST_BACKEND says (agent tests). */
export async function startUserNode(
  t: ExecutionContext,
  options: NodeOptions = {},
): Promise<UserTestNode> {
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
  const node = new UserTestNode(socketPath, dir, agent, async () => {
    if (agent.exitCode === null && agent.signalCode === null) {
      const exited = once(agent, 'exit');
      agent.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });
  Object.defineProperty(node, 'agentLog', { get: log });
  t.teardown(() => node.stop());
  return node;
}

/** A kernel-backend node: the test's DCs in dvk.ko, with the test's queue bounds. */
async function startKernelNode(t: ExecutionContext, options: NodeOptions): Promise<TestNode> {
  if (options.maxPayload || options.agentArgs) {
    throw new Error('maxPayload and agentArgs configure the agent: not for the kernel backend');
  }
  const addon = native();
  const admin = openSync(DEVICE_PATH, 'r+');
  const dcs = [DC, OTHER_DC];
  for (const dc of dcs) {
    // A failed test may leave its DCs behind; they go once its endpoints are closed.
    try {
      addon.dcDestroy(admin, dc.id);
    } catch {}
    addon.dcCreate(
      admin,
      dc.id,
      dc.slots,
      dc.name,
      options.queueLength ?? 0,
      options.queueBytes ?? 0,
    );
  }
  const node = new TestNode(undefined, undefined, async () => {
    // Peers are dead and local endpoints closed, so the DCs empty out as their files close.
    for (const dc of dcs) await destroyWhenEmpty(admin, dc.id);
    closeSync(admin);
  });
  t.teardown(() => node.stop());
  return node;
}

/** Destroys a DC in dvk.ko once its endpoints' files are closed (EBUSY until then). */
export async function destroyWhenEmpty(admin: number, id: number): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    try {
      native().dcDestroy(admin, id);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== 'EBUSY' || Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
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

/**
 * Two nodes of a cluster seen as one: even endpoint numbers bind on n1, odd ones on n2, and the
 * status is both agents' endpoints together.
 */
class ClusterTestNode extends TestNode {
  constructor(private readonly cluster: Cluster) {
    const [n1] = cluster.nodes as [ClusterNode, ClusterNode];
    super(n1.socketPath, n1.agent, async () => {});
  }

  private nodeOf(endpoint: number): ClusterNode {
    return this.cluster.nodes[endpoint % 2] as ClusterNode;
  }

  override async bind(endpoint: number, dc: number | string = DC.name): Promise<Endpoint> {
    const ep = await this.nodeOf(endpoint).node.bind({ dc, endpoint });
    this.endpoints.push(ep);
    return ep;
  }

  override async peer(endpoint?: number, dc: number | string = DC.name): Promise<Peer> {
    const p = await Peer.start();
    this.peers.push(p);
    if (endpoint !== undefined) await p.bind(this.nodeOf(endpoint).socketPath, dc, endpoint);
    return p;
  }

  override async status(): Promise<NodeStatus> {
    return mergeStatus(await Promise.all(this.cluster.nodes.map((n) => n.status())));
  }
}

/** Several nodes' status as one: the first's, with the others' endpoints in its DCs. */
function mergeStatus([first, ...rest]: NodeStatus[]): NodeStatus {
  const status = first as NodeStatus;
  for (const other of rest) {
    for (const dc of status.dcs) {
      dc.endpoints.push(...(other.dcs.find((d) => d.id === dc.id)?.endpoints ?? []));
      dc.endpoints.sort((a, b) => a.endpoint - b.endpoint);
    }
  }
  return status;
}

async function startClusterNode(t: ExecutionContext, options: NodeOptions): Promise<TestNode> {
  if (options.agentArgs) throw new Error('agentArgs configure a lone agent: not for a cluster');
  const limits = {
    ...(options.queueLength ? { queueLength: options.queueLength } : {}),
    ...(options.queueBytes ? { queueBytes: options.queueBytes } : {}),
    ...(options.maxPayload ? { maxPayload: options.maxPayload } : {}),
  };
  const cluster = await startCluster(t, {
    nodes: 2,
    // No test here is about node failure: slow verdicts, so that a loaded machine (many
    // clusters at once) never declares a node down.
    link: { heartbeatMs: 200, silenceMs: 5_000, nodeDownMs: 20_000 },
    limits,
    dcs: [{ ...OTHER_DC, nodes: ['n1', 'n2'] }],
  });
  const node = new ClusterTestNode(cluster);
  // Registered after the cluster's own teardown, so it runs first (ava runs them in reverse).
  t.teardown(() => node.release());
  return node;
}

/**
 * DVK_TEST_BACKEND=guests, in guest A of kmod/vm/cluster: two QEMU guests, each a node of one
 * cluster whose agents run for the whole suite (kmod/tests/cluster-guest.sh). The test's own
 * endpoints bind on guest A's node: through the agent at DVK_GUESTS_SOCKET, or dvk.ko when it
 * is unset. Its peers run in guest B, forked by the peer host at DVK_GUESTS_PEERS, and bind on
 * guest B's node through the same socket path there (or its dvk.ko). The status is both nodes'.
 * The DCs are the cluster file's (DC and OTHER_DC), made by the agents.
 */
export class GuestsTestNode extends TestNode {
  constructor(
    socketPath: string | undefined,
    /** host:port of the peer host in guest B. */
    readonly peerHost: string,
    /** The DC standing in for DC, for a test that asked for its own queue length. */
    private readonly queueDc?: { id: number; name: string },
  ) {
    super(socketPath, undefined, async () => {});
  }

  /** DC itself, or the DC with the queue length the test asked for. */
  private dcOf(dc: number | string): number | string {
    if (!this.queueDc || (dc !== DC.name && dc !== DC.id)) return dc;
    return typeof dc === 'number' ? this.queueDc.id : this.queueDc.name;
  }

  override bind(endpoint: number, dc: number | string = DC.name): Promise<Endpoint> {
    return super.bind(endpoint, this.dcOf(dc));
  }

  override async peer(endpoint?: number, dc: number | string = DC.name): Promise<Peer> {
    const p = await Peer.start({ host: this.peerHost });
    this.peers.push(p);
    if (endpoint !== undefined) await p.bind(this.socketPath, this.dcOf(dc), endpoint);
    return p;
  }

  override endpointStatus(endpoint: number, dc: number = DC.id) {
    return super.endpointStatus(endpoint, this.dcOf(dc) as number);
  }

  override async status(): Promise<NodeStatus> {
    return mergeStatus(
      await Promise.all([this.node.status(), peerHostStatus(this.peerHost, this.socketPath)]),
    );
  }
}

/**
 * DCs of the guests' cluster file (kmod/vm/cluster) with their own queue length: a test that
 * asks for one binds there instead of in DC.
 */
export const GUEST_QUEUE_DCS: Record<number, { id: number; name: string }> = {
  1: { id: 201, name: 'test-q1' },
  2: { id: 202, name: 'test-q2' },
  4: { id: 204, name: 'test-q4' },
  8: { id: 208, name: 'test-q8' },
};

async function startGuestsNode(t: ExecutionContext, options: NodeOptions): Promise<TestNode> {
  const { queueLength, ...others } = options;
  const queueDc = queueLength === undefined ? undefined : GUEST_QUEUE_DCS[queueLength];
  const set = Object.entries(others).filter(([, v]) => v !== undefined);
  if (set.length || (queueLength !== undefined && !queueDc)) {
    throw new Error(
      `DVK_TEST_BACKEND=guests: startNode(t, ${JSON.stringify(options)}): the guests' agents ` +
        'run for the whole suite; only the queue lengths of GUEST_QUEUE_DCS are there',
    );
  }
  const peerHost = process.env.DVK_GUESTS_PEERS;
  if (!peerHost) throw new Error('DVK_TEST_BACKEND=guests needs DVK_GUESTS_PEERS (host:port)');
  const node = new GuestsTestNode(process.env.DVK_GUESTS_SOCKET || undefined, peerHost, queueDc);
  // The nodes outlive the tests: wait until what the previous test bound is gone on both.
  let left: string[] = [];
  await node
    .until(
      'both guests to have no endpoint bound before the test',
      async () => {
        const status = await node.status();
        left = status.dcs.flatMap((d) => d.endpoints.map((e) => `${d.name}:${e.endpoint}`));
        return left.length === 0;
      },
      10_000,
    )
    .catch((err: Error) => {
      throw new Error(`${err.message}; still bound: ${left.join(', ')}`);
    });
  t.teardown(() => node.stop());
  return node;
}
