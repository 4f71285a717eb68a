/**
 * All of one node's links: a Link to every other node of the cluster, the server that accepts
 * the lower-numbered nodes' connections, and their state for `dvk status`.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { LinkStatus } from '../backend.js';
import type { ClusterConfig } from './config.js';
import type { Directory } from './directory.js';
import { Link, type LinkState, splitAddress } from './link.js';
import { LinkServer } from './link-server.js';

/** Events: 'message' (from: number, payload: Buffer); 'up' (node); 'down' (node, lost). */
export class LinkSet extends EventEmitter {
  private readonly links = new Map<number, Link>();
  private readonly server: LinkServer;

  constructor(
    private readonly directory: Directory,
    config: ClusterConfig,
    log: Logger,
    /** Where to dial each node, if not its configured address (tests put proxies there). */
    dialAddress: (node: number) => string | undefined = () => undefined,
  ) {
    super();
    const self = directory.self;
    for (const peer of directory.nodes()) {
      if (peer.id === self.id) continue;
      const address = dialAddress(peer.id);
      const link = new Link({
        self: self.id,
        peer,
        cluster: config.cluster.name,
        secret: config.cluster.secret,
        timing: config.link,
        log,
        ...(address ? { dialAddress: address } : {}),
      });
      link.on('message', (payload: Buffer) => this.emit('message', peer.id, payload));
      link.on('up', () => this.emit('up', peer.id));
      link.on('down', (lost: Buffer[]) => this.emit('down', peer.id, lost));
      this.links.set(peer.id, link);
    }
    this.server = new LinkServer(this.links, config.link.maxFrame, config.link.silenceMs, log);
  }

  /**
   * Listens on this node's address, or on `listen` (host:port; port 0 for any), and dials the
   * higher-numbered nodes. Returns the port.
   */
  async start(listen?: string): Promise<number> {
    const { host, port } = splitAddress(listen ?? this.directory.self.address);
    const bound = await this.server.listen(host, port);
    for (const link of this.links.values()) link.start();
    return bound;
  }

  /** Sends to a node: exactly once and in order, unless 'down' hands it back. */
  send(node: number, payload: Buffer): void {
    const link = this.links.get(node);
    if (!link) throw new Error(`no link to node ${node}`);
    link.send(payload);
  }

  /** The link's state to a node; undefined for this node and unknown ones. */
  state(node: number): LinkState | undefined {
    return this.links.get(node)?.state;
  }

  /** Whether every link that is up has had all it carried acknowledged. */
  get flushed(): boolean {
    return [...this.links.values()].every((l) => l.state !== 'up' || l.unackedCount === 0);
  }

  status(): Omit<LinkStatus, 'callsOut' | 'callsIn'>[] {
    return [...this.links.entries()].map(([id, link]) => {
      const peer = this.directory.node(id);
      return {
        node: id,
        name: peer?.name ?? String(id),
        address: peer?.address ?? '',
        state: link.state,
        rttMs: link.rtt ?? null,
        unacked: link.unackedCount,
        counters: { ...link.counters },
      };
    });
  }

  close(): void {
    for (const link of this.links.values()) link.close();
    this.server.close();
  }
}
