/**
 * The cluster's directory: which nodes exist, which DCs span them, and where each endpoint
 * lives. Agents ask it through the `Directory` interface; `StaticDirectory` answers from the
 * cluster file. A directory with leases and compare-and-swap (etcd) fits the same interface,
 * and migration will move an endpoint's record to another node with its epoch + 1.
 */

import { ConfigError } from '../agent/config.js';
import type { ClusterConfig, ClusterDc, ClusterNode } from './config.js';

/** Where an endpoint lives, with the epoch of that record (0 for the cluster file's). */
export interface Location {
  readonly node: ClusterNode;
  readonly epoch: number;
}

export interface Directory {
  /** The node this agent runs as. */
  readonly self: ClusterNode;
  nodes(): readonly ClusterNode[];
  node(id: number): ClusterNode | undefined;
  /** A DC by id or name. */
  dc(ref: number | string): ClusterDc | undefined;
  /** Where an endpoint is placed; undefined if no node is (then any node of its DC may bind it). */
  locate(dc: number, endpoint: number): Location | undefined;
  /** Whether this node may bind the endpoint: its DC spans this node and it is not placed elsewhere. */
  mayBindHere(dc: number, endpoint: number): boolean;
}

export class StaticDirectory implements Directory {
  readonly self: ClusterNode;
  private readonly byId = new Map<number, ClusterNode>();
  private readonly byName = new Map<string, ClusterNode>();

  constructor(
    private readonly config: ClusterConfig,
    selfName: string,
  ) {
    for (const n of config.nodes) {
      this.byId.set(n.id, n);
      this.byName.set(n.name, n);
    }
    const self = this.byName.get(selfName);
    if (!self) {
      const known = config.nodes.map((n) => n.name).join(', ');
      throw new ConfigError(`no node named ${selfName} in the cluster file (nodes: ${known})`);
    }
    this.self = self;
  }

  nodes(): readonly ClusterNode[] {
    return this.config.nodes;
  }

  node(id: number): ClusterNode | undefined {
    return this.byId.get(id);
  }

  dc(ref: number | string): ClusterDc | undefined {
    return this.config.dcs.find((d) => (typeof ref === 'number' ? d.id === ref : d.name === ref));
  }

  locate(dc: number, endpoint: number): Location | undefined {
    const d = this.dc(dc);
    if (!d) return undefined;
    for (const [nodeName, ranges] of Object.entries(d.placement)) {
      if (ranges.some((r) => endpoint >= r.lo && endpoint <= r.hi)) {
        const node = this.byName.get(nodeName);
        return node ? { node, epoch: 0 } : undefined;
      }
    }
    return undefined;
  }

  mayBindHere(dc: number, endpoint: number): boolean {
    const d = this.dc(dc);
    if (!d?.nodes.includes(this.self.name)) return false;
    const where = this.locate(dc, endpoint);
    return !where || where.node.id === this.self.id;
  }
}
