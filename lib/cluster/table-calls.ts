/**
 * Calls between the agent's endpoint table (user backend) and other nodes. Remote calls keep
 * the local semantics (docs/semantics.md, "Across nodes"):
 *
 * - A SEND completes when the destination's agent has put the message in its queue (RESULT),
 *   so backpressure and its deadline act there, as they do locally. A SENDREC's caller waits
 *   for REPLY or RESULT; its deadline is also kept here, so a slow link cannot stretch it.
 *   Cancelling sends CANCEL: a request not yet received is withdrawn. NOTIFY never waits.
 * - Calls from another node run against shadow bindings (EndpointTable.shadow), one per
 *   remote incarnation, so every local rule (FIFO per sender, held senders, obligations,
 *   ESRCH when a party unbinds) applies unchanged. The links are exactly-once and in order, so
 *   per-sender FIFO holds across nodes too.
 */
import { randomInt } from 'node:crypto';
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
import { Record, RecordFlags, type RemoteRecord, record } from './remote-wire.js';
import type { LocalNode, Router } from './router.js';

/** A call of a local endpoint waiting on another node. */
interface OutgoingCall {
  id: bigint;
  node: number;
  from: Binding;
  dst: number;
  kind: 'send' | 'sendrec' | 'notify';
  requestId: bigint;
  done: Done<Message | undefined>;
  timer: Deadline | undefined;
  cancelSent: boolean;
}

const finished: Waiting = { cancel() {} };

/** The value under `k`, made and stored first if there is none. */
export function entry<K, V>(map: Map<K, V>, k: K, make: () => V): V {
  let v = map.get(k);
  if (v === undefined) {
    v = make();
    map.set(k, v);
  }
  return v;
}

/** The time left until an absolute deadline, as a record carries it (0: none; at least 1). */
export function timeLeft(deadline: bigint): bigint {
  if (deadline === 0n) return 0n;
  const left = deadline - process.hrtime.bigint();
  // Already past: the other side decides at once, as a local call would.
  return left > 0n ? left : 1n;
}

export class TableCalls implements LocalNode, RemoteRoutes {
  private readonly outgoing = new Map<bigint, OutgoingCall>();
  private readonly callsOf = new Map<Binding, Set<OutgoingCall>>();
  /** Calls from other nodes still waiting here, per node, by their id. */
  private readonly incoming = new Map<number, Map<bigint, Waiting>>();
  /** Shadow bindings per node, by dc:endpoint:generation. */
  private readonly shadows = new Map<number, Map<string, Binding>>();
  private nextId = 1n;

  constructor(
    private readonly table: EndpointTable,
    private readonly router: Router,
  ) {
    table.remote = this;
    table.generationFloor = randomInt(1 << 30);
    router.attach(this);
  }

  /** Binds an endpoint here once the cluster agrees (Router.claim). Rejects with DvkError. */
  async bind(
    dcRef: number | string,
    endpoint: number,
    peer: PeerCredentials | null,
  ): Promise<Binding> {
    const dc = this.table.checkBind(dcRef, endpoint, peer);
    const generation = this.table.nextGeneration(dc, endpoint);
    const err = await this.router.claim(dc, endpoint, generation);
    if (err) throw err;
    return this.table.bind(dc, endpoint, peer, generation);
  }

  // --- LocalNode ---

  bound() {
    return this.table.bindings().map((b) => ({
      dc: b.dc.id,
      endpoint: b.endpoint,
      generation: b.generation,
      epoch: b.epoch,
    }));
  }

  isBound(dc: number, endpoint: number): boolean {
    // An incarnation moving here holds its number too: nobody else may claim it meanwhile.
    return this.table.local(dc, endpoint) !== undefined || this.table.incoming(dc, endpoint);
  }

  hasDc(dc: number): boolean {
    return this.table.dcExists(dc);
  }

  remoteBound(_node: number, dc: number, endpoint: number, generation: number): void {
    this.table.noteGeneration(dc, endpoint, generation);
  }

  remoteUnbound(
    node: number,
    dc: number,
    endpoint: number,
    generation: number,
    code: 'ESRCH' | 'EHOSTUNREACH',
    elsewhere: boolean,
  ): void {
    // Receives first: unbinding the shadow would end them with ESRCH whatever the reason.
    if (!elsewhere) this.table.endReceivesFrom(dc, endpoint, generation, code);
    // (Two nodes with one incarnation number only after crossed claims: keep the other's.)
    this.dropShadows(dc, endpoint, generation, elsewhere ? node : undefined);
    if (!elsewhere) this.table.forgetMoved(dc, endpoint, generation);
  }

  /**
   * An incarnation is gone: its shadows go, under whichever node they came from (its own, or
   * a node that forwarded its calls after a move).
   */
  private dropShadows(dc: number, endpoint: number, generation: number, onlyNode?: number): void {
    const k = `${dc}:${endpoint}:${generation}`;
    for (const [node, shadows] of this.shadows) {
      if (onlyNode !== undefined && node !== onlyNode) continue;
      const shadow = shadows.get(k);
      if (!shadow) continue;
      shadows.delete(k);
      this.table.unbind(shadow);
    }
  }

  call(node: number, r: RemoteRecord): void {
    const asks = r.kind === Record.SEND || r.kind === Record.SENDREC || r.kind === Record.NOTIFY;
    if (asks && r.id !== 0n && !this.sourceKnown(node, r)) {
      // Its caller must not wait for an answer that never comes: refuse it, definitely.
      this.router.send(node, record({ kind: Record.RESULT, id: r.id, value: -errnoOf('ESRCH') }));
      throw new ProtocolViolation(`call from endpoint ${r.src}:${r.srcGen}, not bound there`);
    }
    switch (r.kind) {
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
      default:
        throw new ProtocolViolation(`record kind ${r.kind} is not a call`);
    }
  }

  nodeDown(node: number): void {
    for (const call of [...this.outgoing.values()]) {
      if (call.node !== node) continue;
      this.finish(call, new DvkError('EHOSTUNREACH', `node ${this.router.nameOf(node)} is down`));
    }
    for (const shadow of this.shadows.get(node)?.values() ?? []) this.table.unbind(shadow);
    this.shadows.delete(node);
    this.incoming.delete(node);
  }

  callsByNode(): Map<number, { out: number; in: number }> {
    const by = new Map<number, { out: number; in: number }>();
    const of = (n: number) => entry(by, n, () => ({ out: 0, in: 0 }));
    for (const call of this.outgoing.values()) of(call.node).out++;
    for (const [node, calls] of this.incoming) of(node).in += calls.size;
    return by;
  }

  // --- RemoteRoutes: calls from local endpoints to other nodes ---

  has(dc: number, endpoint: number, generation: number): boolean {
    const where = this.router.where(dc, endpoint);
    return where !== undefined && (generation === 0 || where.generation === generation);
  }

  routes(dc: number, endpoint: number): boolean {
    return (
      this.router.where(dc, endpoint) !== undefined ||
      this.router.placedElsewhere(dc, endpoint) !== undefined
    );
  }

  /** The node a call to `dst` goes to; throws ENOENT or EHOSTUNREACH if it cannot go. */
  private target(from: Binding, dst: number, dstGen: number): number {
    const where = this.router.where(from.dc.id, dst);
    if (!where) throw this.router.unreachable(from.dc.id, dst);
    if (dstGen !== 0 && where.generation !== dstGen) {
      throw new DvkError(
        'ENOENT',
        `generation ${dstGen} of endpoint ${dst} is gone (now ${where.generation})`,
      );
    }
    return where.node;
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

  notify(from: Binding, dst: number, dstGen: number, bits: number, done: Done<void>): void {
    let node: number;
    try {
      node = this.target(from, dst, dstGen);
    } catch (err) {
      done(err as DvkError);
      return;
    }
    from.counters.notifySent++;
    const call = this.startCall(node, from, dst, 'notify', 0n, done as Done<Message | undefined>);
    this.router.send(
      node,
      record({
        kind: Record.NOTIFY,
        flags: from.node !== undefined ? RecordFlags.FORWARDED : 0,
        dc: from.dc.id,
        dst,
        dstGen,
        src: from.endpoint,
        srcGen: from.generation,
        value: bits | 0,
        id: call.id,
      }),
    );
  }

  unbound(b: Binding): void {
    this.withdraw(b);
    // Calls of its own that came back here through a node it had moved from.
    this.dropShadows(b.dc.id, b.endpoint, b.generation);
    this.router.announceUnbound(b.dc.id, b.endpoint, b.generation);
  }

  withdraw(b: Binding): void {
    for (const call of [...(this.callsOf.get(b) ?? [])]) {
      this.sendCancel(call);
      this.finish(call, new DvkError('ECANCELED'));
    }
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
    this.router.send(
      call.node,
      record({
        kind,
        flags:
          (wait.nonblock ? RecordFlags.NONBLOCK : 0) |
          (call.from.node !== undefined ? RecordFlags.FORWARDED : 0),
        dc: call.from.dc.id,
        dst: call.dst,
        dstGen,
        src: call.from.endpoint,
        srcGen: call.from.generation,
        type,
        id: call.id,
        requestId: call.requestId,
        timeoutNs: timeLeft(wait.deadline),
        payload,
      }),
    );
  }

  private sendCancel(call: OutgoingCall): void {
    if (call.cancelSent || !this.outgoing.has(call.id)) return;
    call.cancelSent = true;
    this.router.send(call.node, record({ kind: Record.CANCEL, id: call.id }));
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
    else if (call.kind === 'send' && !err) call.from.counters.sent++;
    call.done(err, reply);
  }

  private onResult(r: RemoteRecord): void {
    const call = this.outgoing.get(r.id);
    if (!call) return;
    const err =
      r.value === 0
        ? null
        : DvkError.fromErrno(-r.value, `on node ${this.router.nameOf(call.node)}`);
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
  /**
   * Whether a call's source is bound where it should be: on the node it came from. A call
   * that node forwards after a move is vouched for by it: its sender may be anywhere, or gone
   * since (a message accepted before its sender went is still delivered).
   */
  private sourceKnown(node: number, r: RemoteRecord): boolean {
    return (
      (r.flags & RecordFlags.FORWARDED) !== 0 || this.router.boundAt(node, r.dc, r.src, r.srcGen)
    );
  }

  private shadowOf(node: number, r: RemoteRecord): Binding {
    if (!this.sourceKnown(node, r)) {
      throw new ProtocolViolation(`call from endpoint ${r.src}:${r.srcGen}, not bound there`);
    }
    const shadows = entry(this.shadows, node, () => new Map<string, Binding>());
    const k = `${r.dc}:${r.src}:${r.srcGen}`;
    let shadow = shadows.get(k);
    if (!shadow) {
      shadow = this.table.shadow(r.dc, r.src, r.srcGen, node);
      shadows.set(k, shadow);
    }
    return shadow;
  }

  private onCall(node: number, r: RemoteRecord): void {
    const shadow = this.shadowOf(node, r);
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
        this.router.send(
          node,
          record({ kind: Record.RESULT, id: r.id, value: err ? -err.errno : 0 }),
        );
        return;
      }
      this.router.send(
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

  /** Bits from another node; answered when its id asks for it (kernel nodes do not). */
  private onNotify(node: number, r: RemoteRecord): void {
    const answer = (err: DvkError | null) => {
      if (r.id === 0n) return;
      this.router.send(
        node,
        record({ kind: Record.RESULT, id: r.id, value: err ? -err.errno : 0 }),
      );
    };
    try {
      this.table.notify(this.shadowOf(node, r), r.dst, r.dstGen, r.value >>> 0, answer);
    } catch (err) {
      // The target went away while the bits travelled.
      if (!(err instanceof DvkError)) throw err;
      answer(err);
    }
  }
}
