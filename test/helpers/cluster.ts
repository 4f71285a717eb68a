/**
 * A cluster of real `dvk agent` processes on loopback for one test: a cluster file in a private
 * directory, one agent per node (each with its own Unix socket for local processes), and
 * optionally a CuttingProxy in front of every node's link port. Torn down when the test ends.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { stringify } from 'yaml';
import {
  type ClusterStatus,
  type DvkNode,
  type Endpoint,
  type LinkStatus,
  type NodeStatus,
  openNode,
} from '../../lib/index.js';

export type { LinkStatus };

import { cliPath, DC } from './backend.js';
import { CuttingProxy } from './cutting-proxy.js';
import { Peer } from './peer.js';
import { until } from './until.js';

export { DC };

/** Fast verdicts for tests: a dead node is declared down after 1.5 s. */
export const TEST_LINK = { heartbeatMs: 50, silenceMs: 400, nodeDownMs: 1_500 } as const;

/** A cluster node's status: the `cluster` part is there (it is absent on a lone agent). */
export type ClusterNodeStatus = NodeStatus & { cluster?: ClusterStatus };

export interface ClusterOptions {
  /** How many nodes, n1 .. nN (default 3). */
  nodes?: number;
  /** Nodes in the file whose agents are not started (a test may start them itself). */
  absent?: string[];
  /** Link timing over TEST_LINK. */
  link?: Partial<{ heartbeatMs: number; silenceMs: number; nodeDownMs: number; maxFrame: number }>;
  limits?: { maxPayload?: number; queueLength?: number; queueBytes?: number };
  /** Placement in the test DC, by node name: { n1: ['0-9'] }. */
  placement?: Record<string, string[]>;
  /** More DCs, as the cluster file spells them. */
  dcs?: Record<string, unknown>[];
  /** A CuttingProxy in front of every node: the file names the proxy, the agent listens behind. */
  proxies?: boolean;
  /** Nodes whose endpoints live in dvk.ko (at most one per machine); the others use the agent. */
  kernel?: string[];
  /** Services the agents start, as the cluster file spells them. */
  services?: Record<string, ClusterFileService>;
  /** The agents' log level (default info). */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error';
}

/** A service of the cluster file (lib/cluster/config.ts). */
export interface ClusterFileService {
  module: string;
  dc: string;
  endpoint: number;
  node: string;
}

/** The cluster file, as written. */
export interface ClusterFile {
  cluster: { name: string; secret: string };
  link: Record<string, number>;
  limits?: Record<string, number>;
  nodes: { id: number; name: string; address: string; socket: string }[];
  dcs: Record<string, unknown>[];
  services?: Record<string, ClusterFileService>;
}

/** Ports this process has handed out, counting from its own block. */
let portsHandedOut = 0;

/**
 * A free loopback port below the kernel's ephemeral range (32768 and up on Linux): an agent
 * listens on it only after the whole cluster file is written, and a port the kernel may hand
 * to any outgoing connection meanwhile (the agents' own dials, say) would be taken by then.
 * Each test process takes ports from its own block of 100 (by pid), in turn, so that clusters
 * started at the same moment by different test files do not pick the same port.
 */
async function freePort(): Promise<number> {
  const block = 20_000 + (process.pid % 120) * 100;
  for (;;) {
    const port = block + (portsHandedOut++ % 100);
    const s = createServer();
    const free = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!free) continue;
    s.close();
    await once(s, 'close');
    return port;
  }
}

/** One node of the cluster: its agent process, its socket, and what the test bound on it. */
export class ClusterNode {
  readonly node: DvkNode;
  private child: ChildProcess | undefined;
  private output = '';
  private readonly endpoints: Endpoint[] = [];
  private readonly peers: Peer[] = [];
  /** Called with the whole output whenever the agent writes more (waitForLog's waiters). */
  private readonly watchers = new Set<() => void>();
  /** The agents' log level (startCluster's `logLevel`). */
  logLevel = 'info';

  constructor(
    readonly id: number,
    readonly name: string,
    /** Where the other agents dial this node (the proxy's port with proxies). */
    readonly address: string,
    /** Where this node's agent accepts links. */
    readonly listenPort: number,
    readonly socketPath: string,
    private readonly configPath: string,
    readonly proxy: CuttingProxy | undefined,
    /** Where this node's endpoints live: in its agent, or in dvk.ko. */
    readonly backend: 'user' | 'kernel' = 'user',
  ) {
    this.node = openNode(backend === 'kernel' ? { backend: 'kernel' } : { socketPath });
    this.agentSocket = openNode({ socketPath });
  }

  /** The agent's own socket: its status, with the cluster's links, whatever the backend. */
  private readonly agentSocket: DvkNode;

  /** The current agent process. */
  get agent(): ChildProcess {
    if (!this.child) throw new Error(`${this.name}: no agent started`);
    return this.child;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Everything every agent of this node wrote (pino JSON lines), across restarts. */
  log(): string {
    return this.output;
  }

  /**
   * Waits until the agent logs a line whose `msg` is `msg` (and whose fields include `fields`)
   * after offset `since` of log(); that line, parsed. Reacts as the output arrives, so a test
   * can act at a step the line marks.
   */
  waitForLog(
    msg: string,
    since: number,
    ms = 20_000,
    fields: Record<string, unknown> = {},
  ): Promise<Record<string, unknown>> {
    const find = (): Record<string, unknown> | undefined => {
      const text = this.output.slice(since);
      for (const line of text.split('\n')) {
        if (!line.includes(msg)) continue;
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (entry.msg !== msg) continue;
        if (Object.entries(fields).every(([k, v]) => entry[k] === v)) return entry;
      }
      return undefined;
    };
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = find();
        if (!found) return;
        this.watchers.delete(check);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.watchers.delete(check);
        reject(new Error(`${this.name}: no log line "${msg}" within ${ms} ms\n${this.output}`));
      }, ms);
      this.watchers.add(check);
      check();
    });
  }

  /**
   * Spawns the node's agent (again, after a kill) and waits until it answers `status`.
   * `config` runs it from another cluster file (a test's variant of this one).
   */
  async start(config = this.configPath): Promise<void> {
    if (this.running) throw new Error(`${this.name}: the agent is running`);
    const args = [cliPath, 'agent', '--config', config, '--node', this.name];
    args.push('--log-level', this.logLevel);
    args.push('--backend', this.backend);
    if (this.proxy) args.push('--listen', `127.0.0.1:${this.listenPort}`);
    // The socket comes from the file; an inherited DVK_SOCKET would override it.
    const env = { ...process.env };
    delete env.DVK_SOCKET;
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.child = child;
    const more = (d: Buffer) => {
      this.output += d;
      for (const watch of [...this.watchers]) watch();
    };
    child.stdout?.on('data', more);
    child.stderr?.on('data', more);
    try {
      await until(
        `${this.name}'s agent to answer`,
        async () => {
          if (child.exitCode !== null || child.signalCode !== null) {
            throw new Error(`${this.name}'s agent exited (${child.exitCode}): ${this.output}`);
          }
          return this.agentSocket.status().then(
            () => true,
            () => false,
          );
        },
        60_000,
        20,
      );
    } catch (err) {
      child.kill('SIGKILL');
      throw new Error(`${(err as Error).message}\n${this.output}`);
    }
  }

  /** Signals the agent and waits until it has exited; its exit code and signal. */
  async kill(
    signal: NodeJS.Signals = 'SIGKILL',
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const child = this.agent;
    if (this.running) {
      const exited = once(child, 'exit');
      child.kill(signal);
      await exited;
    }
    return { code: child.exitCode, signal: child.signalCode };
  }

  status(): Promise<ClusterNodeStatus> {
    return this.agentSocket.status() as Promise<ClusterNodeStatus>;
  }

  /** This node's links (empty if its status has none). */
  async links(): Promise<LinkStatus[]> {
    return (await this.status()).cluster?.links ?? [];
  }

  /** This node's link to the node named `peer`. */
  async link(peer: string): Promise<LinkStatus | undefined> {
    return (await this.links()).find((l) => l.name === peer);
  }

  /** Binds an endpoint in the test process, through this node's agent; closed at teardown. */
  async bind(endpoint: number, dc: number | string = DC.name): Promise<Endpoint> {
    const ep = await this.node.bind({ dc, endpoint });
    this.endpoints.push(ep);
    return ep;
  }

  /** A peer process on this node, bound to `endpoint` if given; killed at teardown. */
  async peer(endpoint?: number, dc: number | string = DC.name): Promise<Peer> {
    const p = await Peer.start();
    this.peers.push(p);
    if (endpoint !== undefined) await p.bind(this.socketPath, dc, endpoint);
    return p;
  }

  /** Closes the test's endpoints, kills its peers, then stops the agent (SIGKILL if stuck). */
  async stop(): Promise<void> {
    await Promise.all(this.endpoints.map((e) => e.close().catch(() => {})));
    await Promise.all(this.peers.map((p) => p.kill()));
    if (!this.running) return;
    const child = this.agent;
    const stuck = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await this.kill('SIGTERM');
    clearTimeout(stuck);
  }
}

export interface Cluster {
  /** The private directory: the cluster file and the agents' sockets. */
  dir: string;
  file: string;
  config: ClusterFile;
  nodes: ClusterNode[];
  /** A node by name. */
  get(name: string): ClusterNode;
  /** Nodes by name, in that order: `const [n1, n2] = cluster.names('n1', 'n2')`. */
  names<const N extends string[]>(...names: N): { [K in keyof N]: ClusterNode };
  /** Writes a variant of the cluster file next to it; its path. */
  writeConfig(fileName: string, config: ClusterFile): Promise<string>;
  /** Waits until every running node shows its links to every other running node 'up'. */
  linksUp(ms?: number): Promise<void>;
}

/** Whether each of `nodes` shows its link to each of the others 'up'. */
export async function linksUp(nodes: ClusterNode[]): Promise<boolean> {
  for (const n of nodes) {
    const links = await n.links().catch(() => []);
    for (const other of nodes) {
      if (other === n) continue;
      if (links.find((l) => l.name === other.name)?.state !== 'up') return false;
    }
  }
  return true;
}

/** Waits until `node`'s link to `peer` is in one of `states`; that link. */
export async function waitLink(
  node: ClusterNode,
  peer: string,
  states: LinkStatus['state'][],
  ms = 20_000,
): Promise<LinkStatus> {
  let link: LinkStatus | undefined;
  await until(
    `${node.name}'s link to ${peer} to be ${states.join(' or ')}`,
    async () => {
      link = await node.link(peer).catch(() => undefined);
      return !!link && states.includes(link.state);
    },
    ms,
    25,
  );
  return link as LinkStatus;
}

/** Starts a cluster of agents on loopback and waits until all of them are linked. */
export async function startCluster(
  t: ExecutionContext,
  options: ClusterOptions = {},
): Promise<Cluster> {
  const count = options.nodes ?? 3;
  const dir = await mkdtemp(join(tmpdir(), 'dvk-cluster-'));
  // Peers may run as another user in permission tests; the sockets' own modes guard them.
  await chmod(dir, 0o755);
  const nodes: ClusterNode[] = [];
  const proxies: CuttingProxy[] = [];
  // Registered first, so a cluster that fails to come up is torn down too.
  t.teardown(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    for (const p of proxies) p.close();
    await rm(dir, { recursive: true, force: true });
  });

  const names = Array.from({ length: count }, (_, i) => `n${i + 1}`);
  const specs = [];
  for (const [i, name] of names.entries()) {
    const listenPort = await freePort();
    let port = listenPort;
    let proxy: CuttingProxy | undefined;
    if (options.proxies) {
      proxy = new CuttingProxy(listenPort);
      proxies.push(proxy);
      port = await proxy.listen();
    }
    const address = `127.0.0.1:${port}`;
    specs.push({ id: i + 1, name, address, listenPort, socket: join(dir, `${name}.sock`), proxy });
  }
  const config: ClusterFile = {
    // A fresh secret per cluster: agents of another test can never join this one.
    cluster: { name: 'test', secret: randomBytes(16).toString('hex') },
    link: { ...TEST_LINK, ...options.link },
    ...(options.limits ? { limits: options.limits } : {}),
    nodes: specs.map(({ id, name, address, socket }) => ({ id, name, address, socket })),
    dcs: [
      {
        ...DC,
        nodes: names,
        ...(options.placement ? { placement: options.placement } : {}),
      },
      ...(options.dcs ?? []),
    ],
    ...(options.services ? { services: options.services } : {}),
  };
  const writeConfig = async (fileName: string, c: ClusterFile) => {
    const path = join(dir, fileName);
    await writeFile(path, stringify(c));
    return path;
  };
  const file = await writeConfig('cluster.yaml', config);
  for (const s of specs) {
    const backend = options.kernel?.includes(s.name) ? 'kernel' : 'user';
    const node = new ClusterNode(
      s.id,
      s.name,
      s.address,
      s.listenPort,
      s.socket,
      file,
      s.proxy,
      backend,
    );
    if (options.logLevel) node.logLevel = options.logLevel;
    nodes.push(node);
  }

  const absent = new Set(options.absent ?? []);
  await Promise.all(nodes.filter((n) => !absent.has(n.name)).map((n) => n.start()));
  const cluster: Cluster = {
    dir,
    file,
    config,
    nodes,
    get(name) {
      const n = nodes.find((x) => x.name === name);
      if (!n) throw new Error(`no node ${name}`);
      return n;
    },
    names(...wanted) {
      return wanted.map((name) => this.get(name)) as never;
    },
    writeConfig,
    async linksUp(ms = 20_000) {
      const running = nodes.filter((n) => n.running);
      await until(
        'every link between running nodes to be up',
        () => linksUp(running),
        ms,
        25,
      ).catch(async (err: Error) => {
        // Say which links are not up, and what the agents logged.
        const seen = await Promise.all(
          running.map(async (n) => {
            const links = await n.links().catch((e: Error) => e.message);
            const states = Array.isArray(links) ? links.map((l) => `${l.name} ${l.state}`) : links;
            return `${n.name}: ${states}`;
          }),
        );
        throw new Error(
          `${err.message}\n${seen.join('\n')}\n${running.map((n) => n.log()).join('')}`,
        );
      });
    },
  };
  await cluster.linksUp();
  return cluster;
}
