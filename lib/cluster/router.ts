/**
 * A node's part in the cluster: which endpoints the other nodes have bound, and the claims
 * that keep an endpoint bound on one node only. Calls themselves are carried by the node's
 * LocalNode: the agent's endpoint table (table-calls.ts) or dvk.ko's proxy role
 * (kernel-calls.ts). Both speak the same records (remote-wire.ts), so nodes of either kind
 * form one cluster.
 *
 * - Where endpoints live. Every agent tells every other agent of its DC which endpoints it has
 *   bound: a SNAPSHOT when a link (re)starts from nothing, then CLAIM and UNBOUND records in
 *   order. A bind here first claims the endpoint from every reachable node of its DC; a node
 *   that has it bound, or claims it at the same time with a lower node id, refuses. A bind
 *   therefore completes once every reachable node knows of it, and one endpoint is bound on
 *   one node. A node declared down is not waited for: it learns from the next SNAPSHOT.
 * - Failure. When a node is declared down (the link's verdict), the LocalNode ends every call
 *   waiting on it with EHOSTUNREACH, its endpoints are forgotten (receives waiting for one of
 *   them end with EHOSTUNREACH), and it is sent a SNAPSHOT, the first record of the new stream.
 */
import type { Logger } from 'pino';
import { DvkError, errnoOf } from '../errors.js';
import type { ClusterNode } from './config.js';
import type { Directory } from './directory.js';
import type { LinkState } from './link.js';
import type { LinkSet } from './link-set.js';
import {
  type BoundRecord,
  decodeRecord,
  decodeSnapshot,
  encodeRecord,
  encodeSnapshot,
  Record,
  type RemoteRecord,
  record,
} from './remote-wire.js';

/** What a node's agent carries calls with; the Router tells it where endpoints are. */
export interface LocalNode {
  /** Endpoints bound on this node, for a SNAPSHOT. */
  bound(): BoundRecord[];
  /** Whether the endpoint is bound on this node. */
  isBound(dc: number, endpoint: number): boolean;
  /** Whether this node serves the DC. */
  hasDc(dc: number): boolean;
  /** Another node has bound (or is binding) an incarnation. */
  remoteBound(node: number, dc: number, endpoint: number, generation: number): void;
  /**
   * That node's incarnation is gone: unbound (ESRCH), or its node is down (EHOSTUNREACH).
   * `elsewhere` says another node still has the same incarnation number bound (two claims
   * crossed), so receives waiting for it are not ended.
   */
  remoteUnbound(
    node: number,
    dc: number,
    endpoint: number,
    generation: number,
    code: 'ESRCH' | 'EHOSTUNREACH',
    elsewhere: boolean,
  ): void;
  /** A call record from another node: SEND, SENDREC, CANCEL, NOTIFY, REPLY or RESULT. */
  call(node: number, r: RemoteRecord): void;
  /** A node is down: everything waiting on it ends with EHOSTUNREACH. */
  nodeDown(node: number): void;
  /** Calls waiting on each node, and of each node waiting here, for `dvk status`. */
  callsByNode(): Map<number, { out: number; in: number }>;
}

/** Where another node has an endpoint bound. */
export interface RemoteBinding {
  node: number;
  generation: number;
  /** The incarnation's epoch there (docs/migration.md): a record of a lower one is stale. */
  epoch: number;
}

/** Migration's steps travel as MIGRATE records; the Router hands them over (migration.ts). */
export interface MigrationRecords {
  onRecord(node: number, r: RemoteRecord): void;
  /** A node was declared down (after the Router and the LocalNode have forgotten it). */
  nodeDown(node: number): void;
}

/** A bind of this node waiting for the other nodes' consent. */
interface Claim {
  dc: number;
  endpoint: number;
  generation: number;
  /** Nodes that have not answered yet. */
  waiting: Set<number>;
  refused: boolean;
  settle: (err: DvkError | null) => void;
}

function key(dc: number, endpoint: number): string {
  return `${dc}:${endpoint}`;
}

export class Router {
  /** Endpoints bound on other nodes, by dc:endpoint; more than one only after a partition. */
  private readonly records = new Map<string, RemoteBinding[]>();
  private readonly claims = new Map<string, Claim>();
  private readonly claimsById = new Map<bigint, Claim>();
  private nextClaim = 1n;
  private local: LocalNode | undefined;
  /** Set once migration is wired up. */
  migration: MigrationRecords | undefined;
  readonly counters = { badRecords: 0 };

  constructor(
    private readonly links: LinkSet,
    readonly directory: Directory,
    readonly log: Logger,
  ) {}

  /** Starts routing for `local`: it is announced to every node. */
  attach(local: LocalNode): void {
    this.local = local;
    this.links.on('message', (node: number, payload: Buffer) => this.onMessage(node, payload));
    this.links.on('down', (node: number) => this.onDown(node));
    for (const node of this.directory.nodes()) {
      if (node.id !== this.self) this.sendSnapshot(node.id);
    }
  }

  private get node(): LocalNode {
    if (!this.local) throw new Error('router not attached');
    return this.local;
  }

  get self(): number {
    return this.directory.self.id;
  }

  // --- where endpoints live ---

  /** Where the endpoint is bound on another node, if it is. */
  where(dc: number, endpoint: number): RemoteBinding | undefined {
    return this.records.get(key(dc, endpoint))?.[0];
  }

  /**
   * An incarnation moved to `node` (perhaps this one) with `epoch` (its MOVED): records of it
   * elsewhere go, with no one's calls ended, since the incarnation lives on. False if the news
   * is stale: a record of it with this epoch or a later one is known.
   */
  moved(node: number, dc: number, endpoint: number, generation: number, epoch: number): boolean {
    const k = key(dc, endpoint);
    const list = this.records.get(k) ?? [];
    if (list.some((w) => w.generation === generation && w.epoch >= epoch)) return false;
    const rest = list.filter((w) => w.generation !== generation && w.node !== node);
    // Moved here: the records of where it was go, and this node's table has it now. Moved to
    // a node declared down (the news came late, passed on): it is gone with that node.
    const there = node !== this.self && this.links.state(node) !== 'down';
    if (there) rest.push({ node, generation, epoch });
    rest.sort((a, b) => a.node - b.node);
    if (rest.length) this.records.set(k, rest);
    else this.records.delete(k);
    if (there) this.node.remoteBound(node, dc, endpoint, generation);
    return true;
  }

  /** Whether `node` has that incarnation of the endpoint bound. */
  boundAt(node: number, dc: number, endpoint: number, generation: number): boolean {
    const list = this.records.get(key(dc, endpoint)) ?? [];
    return list.some((w) => w.node === node && w.generation === generation);
  }

  /** The other node the cluster file places the endpoint on, if any. */
  placedElsewhere(dc: number, endpoint: number): ClusterNode | undefined {
    const placed = this.directory.locate(dc, endpoint);
    return placed && placed.node.id !== this.self ? placed.node : undefined;
  }

  /**
   * Why a call to an endpoint with no binding anywhere fails: its node is down (EHOSTUNREACH),
   * or it is not bound (ENOENT).
   */
  unreachable(dc: number, endpoint: number): DvkError {
    const placed = this.placedElsewhere(dc, endpoint);
    if (placed && this.links.state(placed.id) === 'down') {
      return new DvkError('EHOSTUNREACH', `node ${placed.name} is down`);
    }
    return new DvkError('ENOENT', `endpoint ${endpoint} is not bound`);
  }

  /**
   * Asks every reachable node of the DC whether this node may bind the endpoint (see the top of
   * this file); null when it may. A refused claim is withdrawn from the nodes that agreed.
   */
  async claim(
    dc: number,
    endpoint: number,
    generation: number,
    supersede = false,
  ): Promise<DvkError | null> {
    const placed = this.placedElsewhere(dc, endpoint);
    if (placed) {
      return new DvkError('EADDRNOTAVAIL', `endpoint ${endpoint} is placed on ${placed.name}`);
    }
    const k = key(dc, endpoint);
    const earlier = this.claims.get(k);
    if (earlier && !supersede) {
      return new DvkError('EADDRINUSE', 'another process is binding it');
    }
    // dvk.ko lets one bind hold a number at a time: a new claim means the earlier one gave up.
    earlier?.settle(new DvkError('EADDRINUSE', 'superseded by a later claim'));
    const id = this.nextClaim++;
    const peers = this.peersOf(dc);
    const claim: Claim = {
      dc,
      endpoint,
      generation,
      waiting: new Set(peers.filter((n) => this.links.state(n) !== 'down')),
      refused: false,
      settle: () => {},
    };
    const outcome = new Promise<DvkError | null>((resolve) => {
      claim.settle = resolve;
    });
    this.claims.set(k, claim);
    this.claimsById.set(id, claim);
    const r = record({ kind: Record.CLAIM, dc, src: endpoint, srcGen: generation, id });
    for (const node of peers) this.send(node, r);
    this.checkClaim(claim);
    const err = await outcome;
    if (this.claims.get(k) === claim) this.claims.delete(k);
    this.claimsById.delete(id);
    if (err) this.announceUnbound(dc, endpoint, generation);
    return err;
  }

  /** Tells the DC's other nodes that an endpoint bound here without a claim (it was already). */
  announceBound(dc: number, endpoint: number, generation: number): void {
    this.broadcast(dc, record({ kind: Record.CLAIM, dc, src: endpoint, srcGen: generation }));
  }

  /** Tells the DC's other nodes that an endpoint of this node is gone. */
  announceUnbound(dc: number, endpoint: number, generation: number): void {
    this.broadcast(dc, record({ kind: Record.UNBOUND, dc, src: endpoint, srcGen: generation }));
  }

  private checkClaim(claim: Claim): void {
    if (claim.refused) claim.settle(new DvkError('EADDRINUSE', 'bound on another node'));
    else if (claim.waiting.size === 0) claim.settle(null);
  }

  private onClaim(node: number, r: RemoteRecord): void {
    const mine = this.claims.get(key(r.dc, r.src));
    const taken = this.node.isBound(r.dc, r.src) || (mine !== undefined && this.self < node);
    if (!taken) this.addRecord(node, r.dc, r.src, r.srcGen, 1);
    // Id 0: an announcement, not a question.
    if (r.id === 0n) {
      if (taken) this.log.warn({ dc: r.dc, endpoint: r.src, node }, 'bound here and there');
      return;
    }
    this.send(
      node,
      record({ kind: Record.CLAIMED, id: r.id, value: taken ? -errnoOf('EADDRINUSE') : 0 }),
    );
  }

  private onClaimed(node: number, r: RemoteRecord): void {
    const claim = this.claimsById.get(r.id);
    if (!claim?.waiting.delete(node)) return;
    if (r.value !== 0) claim.refused = true;
    this.checkClaim(claim);
  }

  private addRecord(
    node: number,
    dc: number,
    endpoint: number,
    generation: number,
    epoch: number,
  ): void {
    if (!this.node.hasDc(dc)) return;
    const slots = this.directory.dc(dc)?.slots ?? 0;
    if (endpoint >= slots || generation === 0) {
      throw new Error(`endpoint ${endpoint} generation ${generation} of DC ${dc}: out of range`);
    }
    if (this.node.isBound(dc, endpoint)) {
      this.log.warn({ dc, endpoint, node }, 'endpoint bound here and on another node');
    }
    const k = key(dc, endpoint);
    const known = this.records.get(k) ?? [];
    // A record of an incarnation from before a move it has made since (a late SNAPSHOT) is
    // stale; one from after it replaces the records of where it was.
    if (known.some((w) => w.generation === generation && w.epoch > epoch)) return;
    const list = known.filter(
      (w) => w.node !== node && !(w.generation === generation && w.epoch < epoch),
    );
    list.push({ node, generation, epoch });
    list.sort((a, b) => a.node - b.node);
    this.records.set(k, list);
    this.node.remoteBound(node, dc, endpoint, generation);
  }

  private removeRecord(
    node: number,
    dc: number,
    endpoint: number,
    generation: number,
    code: 'ESRCH' | 'EHOSTUNREACH',
  ): void {
    const k = key(dc, endpoint);
    const list = this.records.get(k) ?? [];
    const rest = list.filter((w) => w.node !== node || w.generation !== generation);
    // An UNBOUND for a claim this node refused (or never heard of) changes nothing here.
    if (rest.length === list.length) return;
    if (rest.length) this.records.set(k, rest);
    else this.records.delete(k);
    const elsewhere = rest.some((w) => w.generation === generation);
    this.node.remoteUnbound(node, dc, endpoint, generation, code, elsewhere);
  }

  private onSnapshot(node: number, r: RemoteRecord): void {
    this.forget(node, 'ESRCH');
    for (const b of decodeSnapshot(r.payload)) {
      this.addRecord(node, b.dc, b.endpoint, b.generation, b.epoch);
    }
  }

  /**
   * Binds still being claimed are in it too: a node declared down meanwhile lost their CLAIM
   * with the old stream. If a claim then fails, its UNBOUND follows on the new stream.
   */
  private sendSnapshot(node: number): void {
    const claims = [...this.claims.values()].map((c) => ({
      dc: c.dc,
      endpoint: c.endpoint,
      generation: c.generation,
      epoch: 1,
    }));
    const payload = encodeSnapshot([...this.node.bound(), ...claims]);
    this.send(node, record({ kind: Record.SNAPSHOT, payload }));
  }

  /** Forgets every endpoint of a node, ending what waited on them with `code`. */
  private forget(node: number, code: 'ESRCH' | 'EHOSTUNREACH'): void {
    for (const [k, list] of [...this.records]) {
      for (const w of list) {
        if (w.node !== node) continue;
        const [dc, endpoint] = k.split(':').map(Number) as [number, number];
        this.removeRecord(node, dc, endpoint, w.generation, code);
      }
    }
  }

  // --- the links ---

  private onMessage(node: number, payload: Buffer): void {
    try {
      const r = decodeRecord(payload);
      switch (r.kind) {
        case Record.SNAPSHOT:
          return this.onSnapshot(node, r);
        case Record.CLAIM:
          return this.onClaim(node, r);
        case Record.CLAIMED:
          return this.onClaimed(node, r);
        case Record.UNBOUND:
          return this.removeRecord(node, r.dc, r.src, r.srcGen, 'ESRCH');
        case Record.MIGRATE:
          if (!this.migration) throw new Error('a MIGRATE record, and no migration here');
          return this.migration.onRecord(node, r);
        default:
          return this.node.call(node, r);
      }
    } catch (err) {
      // The peer authenticated, so this is a bug or a version mismatch, not an attack: the
      // record is dropped and logged; the link and everything else go on.
      this.counters.badRecords++;
      const reason = err instanceof Error ? err.message : String(err);
      this.log.error({ peer: this.nameOf(node), reason }, 'bad record from a node, dropped');
    }
  }

  private onDown(node: number): void {
    this.log.warn({ peer: this.nameOf(node) }, 'node down');
    try {
      // Its endpoints first, so that receives waiting for them end with EHOSTUNREACH.
      this.forget(node, 'EHOSTUNREACH');
      this.node.nodeDown(node);
      this.migration?.nodeDown(node);
      for (const claim of this.claims.values()) {
        if (claim.waiting.delete(node)) this.checkClaim(claim);
      }
      // The link has started a new stream: this is the first thing the node hears on it.
      this.sendSnapshot(node);
    } catch (err) {
      // A bug of ours must not take the agent down from inside a link's timer.
      this.log.error({ err, peer: this.nameOf(node) }, 'handling a node-down verdict failed');
    }
  }

  /** The links are closing: binds still being claimed fail. */
  close(): void {
    for (const claim of this.claims.values()) {
      claim.settle(new DvkError('EHOSTUNREACH', 'the agent is stopping'));
    }
  }

  /** The other nodes a DC spans. */
  private peersOf(dc: number): number[] {
    const names = this.directory.dc(dc)?.nodes ?? [];
    return this.directory
      .nodes()
      .filter((n) => n.id !== this.self && names.includes(n.name))
      .map((n) => n.id);
  }

  private broadcast(dc: number, r: RemoteRecord): void {
    for (const node of this.peersOf(dc)) this.send(node, r);
  }

  /** Sends a record to a node: exactly once, in order, unless the node goes down. */
  send(node: number, r: RemoteRecord): void {
    this.links.send(node, encodeRecord(r));
  }

  linkState(node: number): LinkState | undefined {
    return this.links.state(node);
  }

  nameOf(node: number): string {
    return this.directory.node(node)?.name ?? String(node);
  }

  /** Remote endpoints this node knows of. */
  get knownRemote(): number {
    return this.records.size;
  }

  callsByNode(): Map<number, { out: number; in: number }> {
    return this.node.callsByNode();
  }
}
