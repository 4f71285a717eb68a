/**
 * The node agent: owns this node's endpoint table and serves local processes on a Unix socket.
 */

import type { Stats } from 'node:fs';
import { chmod, chown, lstat, mkdir, readFile, rename, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import pino, { type Logger } from 'pino';
import type { NodeStatus } from '../backend.js';
import { native } from '../native.js';
import { VERSION as PACKAGE_VERSION } from '../version.js';
import { type AgentConfig, ConfigError, socketPathOf } from './config.js';
import { EndpointTable, type PeerCredentials } from './endpoints.js';
import { Session } from './session.js';

export class Agent {
  readonly table: EndpointTable;
  readonly socketPath: string;
  readonly log: Logger;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly started = process.hrtime.bigint();
  private nextSession = 1;
  private credentialsOf: (fd: number) => PeerCredentials = () => {
    throw new Error('agent not started');
  };

  constructor(
    readonly config: AgentConfig,
    log?: Logger,
  ) {
    this.log = log ?? pino({ level: config.log.level, base: { node: config.node.name } });
    this.table = new EndpointTable(config.limits, config.dcs);
    this.socketPath = socketPathOf(config);
  }

  /** Listens on the socket with the configured owner-or-group permissions. */
  async start(): Promise<void> {
    const path = this.socketPath;
    // Fail at start, not at the first connection, if the addon that reads peer credentials
    // cannot load.
    const addon = native();
    this.credentialsOf = (fd) => addon.peerCredentials(fd);
    const gid = await resolveGroup(this.config.socket.group);
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
    new Session(socket, { table: this.table, status: () => this.status() }, log, peer);
  }

  status(): NodeStatus {
    return {
      node: {
        name: this.config.node.name,
        backend: 'user',
        pid: process.pid,
        uptimeSeconds: Number(process.hrtime.bigint() - this.started) / 1e9,
        version: PACKAGE_VERSION,
      },
      limits: { ...this.config.limits },
      dcs: this.table.status(),
    };
  }

  /**
   * Stops accepting, closes every connection (each endpoint unbinds and its waiting callers get a
   * definite error), and removes the socket.
   */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
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
