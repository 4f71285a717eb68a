/**
 * Carries IPC between this node's endpoint table and the other nodes' agents, over the links.
 * Remote calls keep the local semantics (docs/semantics.md, "Across nodes"):
 *
 * - Where endpoints live. Every agent tells every other agent of its DC which endpoints it has
 *   bound: a SNAPSHOT when a link (re)starts from nothing, then CLAIM and UNBOUND records in
 *   order. A bind here first claims the endpoint from every reachable node of its DC; a node
 *   that has it bound, or claims it at the same time with a lower node id, refuses. A bind
 *   therefore returns once every reachable node knows of it, and one endpoint is bound on one
 *   node. A node declared down is not waited for: it learns from the next SNAPSHOT.
 * - Calls. A SEND completes when the destination's agent has put the message in its queue
 *   (RESULT), so backpressure and its deadline act there, as they do locally. A SENDREC's
 *   caller waits for REPLY or RESULT; its deadline is also kept here, so a slow link cannot
 *   stretch it. Cancelling sends CANCEL: a request not yet received is withdrawn. NOTIFY
 *   never waits. Calls from another node run against shadow bindings (EndpointTable.shadow),
 *   one per remote incarnation, so every local rule (FIFO per sender, held senders,
 *   obligations, ESRCH when a party unbinds) applies unchanged. The links are exactly-once and
 *   in order, so per-sender FIFO holds across nodes too.
 * - Failure. When a node is declared down (the link's verdict), every call waiting on it ends
 *   with EHOSTUNREACH, receives waiting for one of its endpoints end with EHOSTUNREACH, what its
 *   endpoints had waiting here is withdrawn, and it is forgotten until it is back.
 */
import type { Logger } from 'pino';
import type {
  Binding,
  Done,
  EndpointTable,
  PeerCredentials,
  RemoteRoutes,
  Wait,
  Waiting,
} from '../agent/endpoints.js';
import { type Deadline, deadlineTimer } from '../deadline.js';
import { DvkError, errnoOf } from '../errors.js';
import type { Message } from '../message.js';
import { ProtocolViolation } from '../user/wire.js';
import type { Directory } from './directory.js';
import type { LinkSet } from './link-set.js';
import {
  decodeRecord,
  decodeSnapshot,
  encodeRecord,
  encodeSnapshot,
  Record,
  RecordFlags,
  type RemoteRecord,
  record,
} from './remote-wire.js';

/** Where another node has an endpoint bound. */
interface RemoteBinding {
  node: number;
  generation: number;
}

/** A call of a local endpoint waiting on another node. */
interface OutgoingCall {
  id: bigint;
  node: number;
  from: Binding;
  dst: number;
  kind: 'send' | 'sendrec';
  requestId: bigint;
  done: Done<Message | undefined>;
  timer: Deadline | undefined;
  cancelSent: boolean;
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

const finished: Waiting = { cancel() {} };

/** The value under `k`, made and stored first if there is none. */
function entry<K, V>(map: Map<K, V>, k: K, make: () => V): V {
  let v = map.get(k);
  if (v === undefined) {
    v = make();
    map.set(k, v);
  }
  return v;
}

function key(dc: number, endpoint: number): string {
  return `${dc}:${endpoint}`;
}

export class Router implements RemoteRoutes {
  /** Endpoints bound on other nodes, by dc:endpoint; more than one only after a partition. */
  private readonly records = new Map<string, RemoteBinding[]>();
  private readonly outgoing = new Map<bigint, OutgoingCall>();
  private readonly callsOf = new Map<Binding, Set<OutgoingCall>>();
  /** Calls from other nodes still waiting here, per node, by their id. */
  private readonly incoming = new Map<number, Map<bigint, Waiting>>();
  /** Shadow bindings per node, by dc:endpoint:generation. */
  private readonly shadows = new Map<number, Map<string, Binding>>();
  private readonly claims = new Map<string, Claim>();
  private readonly claimsById = new Map<bigint, Claim>();
  private nextId = 1n;
  readonly counters = { callsOut: 0, callsIn: 0, hostUnreachable: 0, badRecords: 0 };

  constructor(
    private readonly table: EndpointTable,
    private readonly links: LinkSet,
    private readonly directory: Directory,
    private readonly log: Logger,
  ) {
    table.remote = this;
    links.on('message', (node: number, payload: Buffer) => this.onMessage(node, payload));
    links.on('down', (node: number) => this.onDown(node));
    for (const node of this.directory.nodes()) {
      if (node.id !== this.self) this.sendSnapshot(node.id);
    }
  }

  private get self(): number {
    return this.directory.self.id;
  }

  // --- where endpoints live ---

  has(dc: number, endpoint: number, generation: number): boolean {
    const where = this.records.get(key(dc, endpoint))?.[0];
    return where !== undefined && (generation === 0 || where.generation === generation);
  }

  /** Whether calls to the endpoint go to another node: it is bound or placed there. */
  routes(dc: number, endpoint: number): boolean {
    if (this.records.has(key(dc, endpoint))) return true;
    const placed = this.directory.locate(dc, endpoint);
    return placed !== undefined && placed.node.id !== this.self;
  }

  /**
   * Binds an endpoint here once every reachable node of its DC agrees that nobody else has it
   * (see the top of this file). Rejects with DvkError.
   */
  async bind(
    dcRef: number | string,
    endpoint: number,
    peer: PeerCredentials | null,
  ): Promise<Binding> {
    const dc = this.table.checkBind(dcRef, endpoint, peer);
    const placed = this.directory.locate(dc, endpoint);
    if (placed && placed.node.id !== this.self) {
      throw new DvkError('EADDRNOTAVAIL', `endpoint ${endpoint} is placed on ${placed.node.name}`);
    }
    const k = key(dc, endpoint);
    if (this.claims.has(k)) throw new DvkError('EADDRINUSE', 'another process is binding it');
    const generation = this.table.nextGeneration(dc, endpoint);
    const id = this.nextId++;
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
    const claimRecord = record({ kind: Record.CLAIM, dc, src: endpoint, srcGen: generation, id });
    for (const node of peers) this.sendTo(node, claimRecord);
    this.checkClaim(claim);
    const err = await outcome;
    this.claims.delete(k);
    this.claimsById.delete(id);
    if (err) {
      this.broadcast(dc, record({ kind: Record.UNBOUND, dc, src: endpoint, srcGen: generation }));
      throw err;
    }
    return this.table.bind(dc, endpoint, peer, generation);
  }

  private checkClaim(claim: Claim): void {
    if (claim.refused) claim.settle(new DvkError('EADDRINUSE', 'bound on another node'));
    else if (claim.waiting.size === 0) claim.settle(null);
  }

  private onClaim(node: number, r: RemoteRecord): void {
    const mine = this.claims.get(key(r.dc, r.src));
    const taken =
      this.table.local(r.dc, r.src) !== undefined || (mine !== undefined && this.self < node);
    if (!taken) this.addRecord(node, r.dc, r.src, r.srcGen);
    this.sendTo(
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

  private addRecord(node: number, dc: number, endpoint: number, generation: number): void {
    if (!this.table.dcExists(dc)) return;
    if (this.table.local(dc, endpoint)) {
      this.log.warn({ dc, endpoint, node }, 'endpoint bound here and on another node');
    }
    const k = key(dc, endpoint);
    const list = (this.records.get(k) ?? []).filter((w) => w.node !== node);
    list.push({ node, generation });
    list.sort((a, b) => a.node - b.node);
    this.records.set(k, list);
    this.table.noteGeneration(dc, endpoint, generation);
  }

  /** An incarnation on `node` is gone: forget it, and end what waited for it here. */
  private removeRecord(
    node: number,
    dc: number,
    endpoint: number,
    generation: number,
    code: 'ESRCH' | 'EHOSTUNREACH',
  ): void {
    const k = key(dc, endpoint);
    const list = this.records.get(k);
    if (list) {
      const rest = list.filter((w) => w.node !== node || w.generation !== generation);
      if (rest.length) this.records.set(k, rest);
      else this.records.delete(k);
    }
    const shadow = this.shadows.get(node)?.get(`${k}:${generation}`);
    if (shadow) {
      this.shadows.get(node)?.delete(`${k}:${generation}`);
      this.table.unbind(shadow);
    }
    this.table.endReceivesFrom(dc, endpoint, generation, code);
  }

  private onSnapshot(node: number, r: RemoteRecord): void {
    this.forget(node, 'ESRCH');
    for (const b of decodeSnapshot(r.payload)) this.addRecord(node, b.dc, b.endpoint, b.generation);
  }

  private sendSnapshot(node: number): void {
    const bound = this.table.bindings().map((b) => ({
      dc: b.dc.id,
      endpoint: b.endpoint,
      generation: b.generation,
    }));
    this.links.send(
      node,
      encodeRecord(record({ kind: Record.SNAPSHOT, payload: encodeSnapshot(bound) })),
    );
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
    // Shadows of incarnations that sent here but were never announced (none, normally).
    for (const shadow of this.shadows.get(node)?.values() ?? []) this.table.unbind(shadow);
    this.shadows.delete(node);
    this.incoming.delete(node);
  }

  // --- calls from local endpoints to other nodes ---

  /** The node a call to `dst` goes to; throws ENOENT or EHOSTUNREACH if it cannot go. */
  private target(from: Binding, dst: number, dstGen: number): number {
    const where = this.records.get(key(from.dc.id, dst))?.[0];
    if (where) {
      if (dstGen !== 0 && where.generation !== dstGen) {
        throw new DvkError(
          'ENOENT',
          `generation ${dstGen} of endpoint ${dst} is gone (now ${where.generation})`,
        );
      }
      return where.node;
    }
    const placed = this.directory.locate(from.dc.id, dst);
    if (placed && this.links.state(placed.node.id) === 'down') {
      throw new DvkError('EHOSTUNREACH', `node ${placed.node.name} is down`);
    }
    throw new DvkError('ENOENT', `endpoint ${dst} is not bound`);
  }

  private checkPayload(payload: Buffer): void {
    const max = this.table.limits.maxPayload;
    if (payload.length > max) throw new DvkError('EMSGSIZE', `${payload.length} bytes > ${max}`);
  }

  send(
    from: Binding,
    dst: number,
    dstGen: number,
    type: number,
    payload: Buffer,
    wait: Wait,
    done: Done<void>,
  ): Waiting {
    let node: number;
    try {
      node = this.target(from, dst, dstGen);
      this.checkPayload(payload);
    } catch (err) {
      done(err as DvkError);
      return finished;
    }
    const call = this.startCall(node, from, dst, 'send', 0n, done as Done<Message | undefined>);
    this.sendCall(call, Record.SEND, dstGen, type, payload, wait);
    // A send's outcome is the destination's to decide: it may have been queued already.
    return { cancel: () => this.sendCancel(call) };
  }

  sendrec(
    from: Binding,
    dst: number,
    dstGen: number,
    type: number,
    payload: Buffer,
    requestId: bigint,
    wait: Wait,
    done: Done<Message>,
  ): Waiting {
    let node: number;
    try {
      const inUse =
        from.calls.has(requestId) ||
        [...(this.callsOf.get(from) ?? [])].some((c) => c.requestId === requestId);
      if (inUse) throw new DvkError('EINVAL', `request id ${requestId} in use`);
      node = this.target(from, dst, dstGen);
      this.checkPayload(payload);
    } catch (err) {
      done(err as DvkError);
      return finished;
    }
    const call = this.startCall(
      node,
      from,
      dst,
      'sendrec',
      requestId,
      done as Done<Message | undefined>,
    );
    from.remoteCalls++;
    from.counters.sent++;
    this.sendCall(call, Record.SENDREC, dstGen, type, payload, wait);
    call.timer = deadlineTimer(wait.deadline, () =>
      this.abandon(call, new DvkError('ETIMEDOUT', `no reply from endpoint ${dst}`)),
    );
    return { cancel: () => this.abandon(call, new DvkError('ECANCELED')) };
  }

  notify(from: Binding, dst: number, dstGen: number, bits: number): void {
    const node = this.target(from, dst, dstGen);
    from.counters.notifySent++;
    this.sendTo(
      node,
      record({
        kind: Record.NOTIFY,
        dc: from.dc.id,
        dst,
        dstGen,
        src: from.endpoint,
        srcGen: from.generation,
        value: bits | 0,
      }),
    );
  }

  unbound(b: Binding): void {
    for (const call of [...(this.callsOf.get(b) ?? [])]) {
      this.sendCancel(call);
      this.finish(call, new DvkError('ECANCELED'));
    }
    this.broadcast(
      b.dc.id,
      record({ kind: Record.UNBOUND, dc: b.dc.id, src: b.endpoint, srcGen: b.generation }),
    );
  }

  private startCall(
    node: number,
    from: Binding,
    dst: number,
    kind: OutgoingCall['kind'],
    requestId: bigint,
    done: Done<Message | undefined>,
  ): OutgoingCall {
    const call: OutgoingCall = {
      id: this.nextId++,
      node,
      from,
      dst,
      kind,
      requestId,
      done,
      timer: undefined,
      cancelSent: false,
    };
    this.outgoing.set(call.id, call);
    entry(this.callsOf, from, () => new Set()).add(call);
    this.counters.callsOut++;
    return call;
  }

  private sendCall(
    call: OutgoingCall,
    kind: typeof Record.SEND | typeof Record.SENDREC,
    dstGen: number,
    type: number,
    payload: Buffer,
    wait: Wait,
  ): void {
    const left = wait.deadline === 0n ? 0n : wait.deadline - process.hrtime.bigint();
    this.sendTo(
      call.node,
      record({
        kind,
        flags: wait.nonblock ? RecordFlags.NONBLOCK : 0,
        dc: call.from.dc.id,
        dst: call.dst,
        dstGen,
        src: call.from.endpoint,
        srcGen: call.from.generation,
        type,
        id: call.id,
        requestId: call.requestId,
        // Already past: the other side decides at once, as a local call would.
        timeoutNs: wait.deadline === 0n ? 0n : left > 0n ? left : 1n,
        payload,
      }),
    );
  }

  private sendCancel(call: OutgoingCall): void {
    if (call.cancelSent || !this.outgoing.has(call.id)) return;
    call.cancelSent = true;
    this.sendTo(call.node, record({ kind: Record.CANCEL, id: call.id }));
  }

  /** The caller gives up on a sendrec: it ends now, and the request is withdrawn if it can be. */
  private abandon(call: OutgoingCall, reason: DvkError): void {
    if (!this.outgoing.has(call.id)) return;
    this.sendCancel(call);
    this.finish(call, reason);
  }

  private finish(call: OutgoingCall, err: DvkError | null, reply?: Message): void {
    if (!this.outgoing.delete(call.id)) return;
    call.timer?.clear();
    const calls = this.callsOf.get(call.from);
    calls?.delete(call);
    if (calls?.size === 0) this.callsOf.delete(call.from);
    if (call.kind === 'sendrec') call.from.remoteCalls--;
    else if (!err) call.from.counters.sent++;
    call.done(err, reply);
  }

  private onResult(r: RemoteRecord): void {
    const call = this.outgoing.get(r.id);
    if (!call) return;
    const err =
      r.value === 0 ? null : DvkError.fromErrno(-r.value, `on node ${this.nameOf(call.node)}`);
    if (!err && call.kind === 'sendrec') {
      throw new ProtocolViolation('a RESULT without an error for a SENDREC');
    }
    this.finish(call, err);
  }

  private onReply(r: RemoteRecord): void {
    const call = this.outgoing.get(r.id);
    if (call?.kind !== 'sendrec') return;
    this.finish(call, null, {
      kind: 'message',
      source: r.src,
      sourceGeneration: r.srcGen,
      type: r.type,
      requestId: call.requestId,
      bits: 0,
      payload: Buffer.from(r.payload),
    });
  }

  // --- calls from other nodes to local endpoints ---

  /** The shadow binding of a remote incarnation, which must be known bound there. */
  private shadowOf(node: number, r: RemoteRecord): Binding {
    const known = this.records
      .get(key(r.dc, r.src))
      ?.some((w) => w.node === node && w.generation === r.srcGen);
    if (!known) {
      throw new ProtocolViolation(`call from endpoint ${r.src}:${r.srcGen}, not bound there`);
    }
    const shadows = entry(this.shadows, node, () => new Map<string, Binding>());
    const k = `${key(r.dc, r.src)}:${r.srcGen}`;
    let shadow = shadows.get(k);
    if (!shadow) {
      shadow = this.table.shadow(r.dc, r.src, r.srcGen, node);
      shadows.set(k, shadow);
    }
    return shadow;
  }

  private onCall(node: number, r: RemoteRecord): void {
    const shadow = this.shadowOf(node, r);
    this.counters.callsIn++;
    const wait: Wait = {
      nonblock: (r.flags & RecordFlags.NONBLOCK) !== 0,
      deadline: r.timeoutNs === 0n ? 0n : process.hrtime.bigint() + r.timeoutNs,
    };
    // The link's buffer would otherwise stay referenced for as long as the message is queued.
    const payload = Buffer.from(r.payload);
    let settled = false;
    let pending: Map<bigint, Waiting> | undefined;
    const done = (err: DvkError | null, reply?: Message | undefined) => {
      settled = true;
      pending?.delete(r.id);
      // A shadow that ended (its endpoint unbound, or its node went down) has nobody to tell.
      if (!shadow.bound) return;
      if (err || !reply) {
        this.sendTo(node, record({ kind: Record.RESULT, id: r.id, value: err ? -err.errno : 0 }));
        return;
      }
      this.sendTo(
        node,
        record({
          kind: Record.REPLY,
          id: r.id,
          dc: r.dc,
          dst: r.src,
          dstGen: r.srcGen,
          src: reply.source,
          srcGen: reply.sourceGeneration,
          type: reply.type,
          requestId: r.requestId,
          payload: reply.payload,
        }),
      );
    };
    const waiting =
      r.kind === Record.SEND
        ? this.table.send(shadow, r.dst, r.dstGen, r.type, payload, wait, (err) => done(err))
        : this.table.sendrec(shadow, r.dst, r.dstGen, r.type, payload, r.requestId, wait, done);
    if (settled) return;
    pending = entry(this.incoming, node, () => new Map());
    pending.set(r.id, waiting);
  }

  private onNotify(node: number, r: RemoteRecord): void {
    try {
      this.table.notify(this.shadowOf(node, r), r.dst, r.dstGen, r.value >>> 0);
    } catch (err) {
      // Notifications never report back; the target went away while this one travelled.
      if (!(err instanceof DvkError)) throw err;
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
        case Record.SEND:
        case Record.SENDREC:
          return this.onCall(node, r);
        case Record.RESULT:
          return this.onResult(r);
        case Record.REPLY:
          return this.onReply(r);
        case Record.CANCEL:
          this.incoming.get(node)?.get(r.id)?.cancel();
          return;
        case Record.NOTIFY:
          return this.onNotify(node, r);
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
    for (const call of [...this.outgoing.values()]) {
      if (call.node !== node) continue;
      this.counters.hostUnreachable++;
      this.finish(call, new DvkError('EHOSTUNREACH', `node ${this.nameOf(node)} is down`));
    }
    for (const claim of this.claims.values()) {
      if (claim.waiting.delete(node)) this.checkClaim(claim);
    }
    this.forget(node, 'EHOSTUNREACH');
    // The link has started a new stream: this is the first thing the node hears on it.
    this.sendSnapshot(node);
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
    for (const node of this.peersOf(dc)) this.sendTo(node, r);
  }

  private sendTo(node: number, r: RemoteRecord): void {
    this.links.send(node, encodeRecord(r));
  }

  private nameOf(node: number): string {
    return this.directory.node(node)?.name ?? String(node);
  }

  /** Calls in flight per node, for `dvk status`. */
  callsByNode(): Map<number, { out: number; in: number }> {
    const by = new Map<number, { out: number; in: number }>();
    const of = (n: number) => entry(by, n, () => ({ out: 0, in: 0 }));
    for (const call of this.outgoing.values()) of(call.node).out++;
    for (const [node, calls] of this.incoming) of(node).in += calls.size;
    return by;
  }

  /** Remote endpoints this node knows of. */
  get knownRemote(): number {
    return this.records.size;
  }
}
