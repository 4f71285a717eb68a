/**
 * The node agent: owns this node's endpoint table and serves local processes on a Unix socket.
 * In a cluster it also keeps a link to every other node's agent and routes calls over them
 * (lib/cluster/router.ts), starts the cluster file's services for this node
 * (lib/agent/services.ts), and moves them between nodes (lib/cluster/migration.ts).
 */

import type { Stats } from 'node:fs';
import { chmod, chown, lstat, mkdir, readFile, rename, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import pino, { type Logger } from 'pino';
import type { NodeStatus } from '../backend.js';
import { type ClusterConfig, servicesOf } from '../cluster/config.js';
import type { Directory } from '../cluster/directory.js';
import { KernelCalls } from '../cluster/kernel-calls.js';
import { LinkSet } from '../cluster/link-set.js';
import { Migrations } from '../cluster/migration.js';
import { MoveFollower } from '../cluster/move-follower.js';
import { Router } from '../cluster/router.js';
import { TableCalls } from '../cluster/table-calls.js';
import { DvkError } from '../errors.js';
import { kernelStatus } from '../kernel/status.js';
import { native } from '../native.js';
import { VERSION as PACKAGE_VERSION } from '../version.js';
import { type AgentConfig, ConfigError, socketPathOf } from './config.js';
import { type Binding, EndpointTable, type PeerCredentials } from './endpoints.js';
import { ServicePlacement } from './service-placement.js';
import { ServiceInstances } from './services.js';
import { Session } from './session.js';

/** An agent's place in a cluster. */
export interface ClusterMembership {
  config: ClusterConfig;
  directory: Directory;
  /** Where to accept links (host:port), if not at this node's address in the cluster file. */
  listen?: string | undefined;
  /**
   * Where this node's endpoints live: in the agent (user) or in dvk.ko (kernel), whose proxy
   * role the agent then holds; local processes bind through /dev/dvk.
   */
  backend: 'user' | 'kernel';
}

/** How long a stopping agent waits for its links to deliver the last unbinds. */
const STOP_FLUSH_MS = 2000;

export class Agent {
  readonly table: EndpointTable;
  readonly socketPath: string;
  readonly log: Logger;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly started = process.hrtime.bigint();
  private nextSession = 1;
  private links: LinkSet | undefined;
  private router: Router | undefined;
  private calls: TableCalls | undefined;
  private kernel: KernelCalls | undefined;
  private services: ServiceInstances | undefined;
  private placement: ServicePlacement | undefined;
  private migrations: Migrations | undefined;
  private credentialsOf: (fd: number) => PeerCredentials = () => {
    throw new Error('agent not started');
  };

  constructor(
    readonly config: AgentConfig,
    log?: Logger,
    readonly cluster?: ClusterMembership,
  ) {
    this.log = log ?? pino({ level: config.log.level, base: { node: config.node.name } });
    this.table = new EndpointTable(config.limits, config.dcs);
    this.socketPath = socketPathOf(config);
    const services = cluster ? servicesOf(cluster.config, cluster.directory.self.name) : [];
    if (cluster?.backend === 'kernel' && services.length) {
      // Instances bind through the agent's socket, which on a kernel node serves status only.
      throw new ConfigError(
        `the cluster file has services for node ${cluster.directory.self.name} ` +
          `(${services.map((s) => s.name).join(', ')}), but services need the user backend ` +
          'for now: run this node with --backend user',
      );
    }
  }

  /** Listens on the socket with the configured owner-or-group permissions. */
  async start(): Promise<void> {
    const path = this.socketPath;
    // Fail at start, not at the first connection, if the addon that reads peer credentials
    // cannot load.
    const addon = native();
    this.credentialsOf = (fd) => addon.peerCredentials(fd);
    const gid = await resolveGroup(this.config.socket.group);
    // Links first: a process may bind as soon as the socket is there, and binds ask the others.
    if (this.cluster) await this.join(this.cluster);
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    await removeStaleSocket(path);
    const server = createServer((socket) => this.accept(socket));
    // Clients must never see the socket with other permissions than configured: it is created
    // owner-only under a temporary name in the same directory (so the rename stays on one file
    // system), given its group and mode, then renamed into place. The name is short so that it
    // fits sun_path wherever the socket path does (config.ts, SOCKET_PATH_MAX).
    const dir = dirname(path);
    const staging = `${dir === '/' ? '' : dir}/.dvk${process.pid}`;
    if (Buffer.byteLength(staging) > SUN_PATH_MAX) {
      // Unix socket names are truncated silently beyond sun_path; refuse rather than listen
      // somewhere else.
      throw new ConfigError(`socket path ${path}: its directory name is too long`);
    }
    // A socket left under this name by an earlier agent that had the same pid.
    if (await isSocket(staging)) await unlink(staging).catch(() => {});
    const previous = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(staging, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(previous);
    }
    try {
      if (gid !== undefined) await chown(staging, process.getuid?.() ?? 0, gid);
      await chmod(staging, this.config.socket.mode);
      await rename(staging, path);
    } catch (err) {
      server.close();
      await unlink(staging).catch(() => {});
      throw err;
    }
    server.on('error', (err) => this.log.error({ err }, 'listener error'));
    this.server = server;
    this.log.info(
      { socket: path, mode: this.config.socket.mode.toString(8), dcs: this.config.dcs.length },
      'agent listening',
    );
    // Last: instances bind through the socket, and their binds claim over the links. They
    // log when they serve and when they die; a dead one is not restarted (docs/cluster.md).
    this.placement?.startOwn();
  }

  private async join({ config, directory, listen, backend }: ClusterMembership): Promise<void> {
    const links = new LinkSet(directory, config, this.log);
    this.router = new Router(links, directory, this.log);
    if (backend === 'kernel') {
      this.kernel = new KernelCalls(this.router, this.config.dcs, this.config.limits, this.log);
      new MoveFollower(this.router, this.log);
    } else {
      this.calls = new TableCalls(this.table, this.router);
      // Any node of a service's DC may run it: instances move here too.
      this.services = new ServiceInstances(this.socketPath, this.log);
      this.placement = new ServicePlacement(
        config,
        directory.self.name,
        this.table,
        this.services,
        this.log,
      );
      this.migrations = new Migrations(this.router, this.table, this.placement, this.log);
    }
    this.links = links;
    const port = await links.start(listen);
    this.log.info(
      { cluster: config.cluster.name, node: directory.self.id, port },
      'listening for other nodes',
    );
  }

  private bind(dc: number | string, endpoint: number, peer: PeerCredentials | null) {
    if (this.kernel) {
      const why = "this node's endpoints live in dvk.ko: bind through /dev/dvk (backend 'kernel')";
      return Promise.reject(new DvkError('EOPNOTSUPP', why));
    }
    if (this.calls) {
      const calls = this.calls;
      return new Promise<Binding>((resolve) => {
        // An instance this agent started to take over an endpoint moving here binds as such.
        resolve(
          this.migrations?.incomingBind(dc, endpoint, peer) ?? calls.bind(dc, endpoint, peer),
        );
      });
    }
    return new Promise<Binding>((resolve) => resolve(this.table.bind(dc, endpoint, peer)));
  }

  private accept(socket: Socket): void {
    const id = this.nextSession++;
    let peer: PeerCredentials | null = null;
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    try {
      if (typeof fd === 'number' && fd >= 0) peer = this.credentialsOf(fd);
    } catch (err) {
      // Without credentials the DC allow lists cannot be enforced: refuse the connection.
      this.log.warn({ err, session: id }, 'cannot read peer credentials, closing');
      socket.destroy();
      return;
    }
    const log = this.log.child({ session: id, pid: peer?.pid });
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    const host = {
      table: this.table,
      bind: this.bind.bind(this),
      status: () => this.status(),
      migrate: (dc: number | string, endpoint: number, to: string) => {
        if (!this.migrations) {
          const why = 'only agents of a cluster with the user backend move services (for now)';
          return Promise.reject(new DvkError('EOPNOTSUPP', why));
        }
        return this.migrations.migrate(dc, endpoint, to);
      },
    };
    new Session(socket, host, log, peer);
  }

  async status(): Promise<NodeStatus> {
    return {
      node: {
        name: this.config.node.name,
        backend: this.kernel ? 'kernel' : 'user',
        pid: process.pid,
        uptimeSeconds: Number(process.hrtime.bigint() - this.started) / 1e9,
        version: PACKAGE_VERSION,
      },
      limits: { ...this.config.limits },
      dcs: this.kernel ? (await kernelStatus()).dcs : this.table.status(),
      ...(this.cluster && this.links && this.router
        ? { cluster: this.clusterStatus(this.cluster, this.links, this.router) }
        : {}),
    };
  }

  private clusterStatus(cluster: ClusterMembership, links: LinkSet, router: Router) {
    const calls = router.callsByNode();
    return {
      name: cluster.config.cluster.name,
      self: { id: cluster.directory.self.id, name: cluster.directory.self.name },
      links: links.status().map((l) => ({
        ...l,
        callsOut: calls.get(l.node)?.out ?? 0,
        callsIn: calls.get(l.node)?.in ?? 0,
      })),
      remoteEndpoints: router.knownRemote,
      services: this.placement?.locations(router) ?? [],
      migration: { ...this.table.migrationCounters },
    };
  }

  /**
   * Ends this node's service instances, stops accepting, closes every connection (each endpoint
   * unbinds and its waiting callers get a definite error), and removes the socket.
   */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    // Services first, while their connections still work: each exits (killed if it does not)
    // and its endpoint unbinds as for any process that ends. None outlives the agent.
    await this.services?.stopAll();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Sessions unbind on their socket's 'close', which comes after the server's own.
    const sessionsClosed = [...this.sockets].map(
      (socket) => new Promise((resolve) => socket.once('close', resolve)),
    );
    for (const socket of this.sockets) socket.destroy();
    await Promise.all([closed, ...sessionsClosed]);
    // dvk.ko's endpoints outlive the agent, but leave the cluster with it: say so, so that
    // their remote callers get ESRCH now.
    this.kernel?.leave();
    const links = this.links;
    if (links) {
      // The unbinds above told the other nodes, and failed their callers' calls here with
      // ESRCH: give the links a moment to deliver that, so those callers get a definite answer
      // now rather than EHOSTUNREACH once this node is declared down.
      const end = Date.now() + STOP_FLUSH_MS;
      while (!links.flushed && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      this.router?.close();
      links.close();
    }
    this.kernel?.close();
    // The listener was bound under its staging name, so closing it does not remove the socket.
    await unlink(this.socketPath).catch(() => {});
    this.log.info('agent stopped');
  }
}

/** The longest Unix socket path, in bytes (sun_path less its terminating NUL). */
const SUN_PATH_MAX = 107;

/** Whether `path` is a socket file; false if nothing is there. */
async function isSocket(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Removes a socket file left by a dead agent; refuses if a live agent answers on it, and never
 * removes anything that is not a socket (a mistyped path must not delete a file).
 */
async function removeStaleSocket(path: string): Promise<void> {
  let stats: Stats;
  try {
    stats = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!stats.isSocket()) {
    throw new ConfigError(`${path} exists and is not a socket; refusing to replace it`);
  }
  const alive = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new ConfigError(`another agent is already listening on ${path}`);
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/** A group name or id to a gid, from /etc/group (Node has no getgrnam). */
async function resolveGroup(group: string | number | undefined): Promise<number | undefined> {
  if (group === undefined || typeof group === 'number') return group;
  if (/^\d+$/.test(group)) return Number(group);
  const lines = (await readFile('/etc/group', 'utf8')).split('\n');
  for (const line of lines) {
    const [name, , gid] = line.split(':');
    if (name === group && gid) return Number(gid);
  }
  throw new ConfigError(`socket.group: no group named ${JSON.stringify(group)} in /etc/group`);
}
