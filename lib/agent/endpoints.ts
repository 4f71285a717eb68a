/**
 * The node's endpoint table and the IPC semantics of DESIGN.md, free of any I/O: sessions call
 * in with decoded calls and get completions back through callbacks. Everything here runs on the
 * agent's one event loop thread, so no operation interleaves with another.
 *
 * Rules this file implements (and the project docs state):
 * - A destination's queue is bounded by count and bytes; a sender that finds it full, or finds
 *   earlier senders still held, waits in the destination's `held` list, FIFO. That list is what
 *   keeps per-sender order: a later send never overtakes a held one. One exception, which
 *   keeps order too: a receive waiting for a particular sender takes that sender's oldest
 *   message even if others' messages fill the queue.
 * - `receive` takes pending notifications first, then queued messages, each in arrival order and
 *   each subject to the `from` filter.
 * - A sendrec's request that the server has not received yet is withdrawn when the caller gives
 *   up, so it never runs. Once received, the server still owes a reply; that reply is accepted
 *   and dropped.
 * - When a binding ends, every caller waiting on it gets ESRCH; its queued plain messages are
 *   discarded; notifications and messages it sent to others stay where they are.
 * - In a cluster, calls to endpoints bound on other nodes go to `remote` (lib/cluster/router.ts),
 *   and calls from other nodes arrive here from shadow bindings: a Binding standing for a remote
 *   endpoint incarnation, never in its DC's table, so the rules above apply to it unchanged.
 */

import type { DcStatus, EndpointStatus } from '../backend.js';
import { type Deadline, deadlineTimer } from '../deadline.js';
import { DvkError } from '../errors.js';
import {
  ENDPOINT_ANY,
  type EndpointAddress,
  type Message,
  MessageFlags,
  type MessageKind,
} from '../message.js';

export interface Limits {
  /** Largest payload in bytes. */
  maxPayload: number;
  /** Messages a queue holds before senders wait. */
  queueLength: number;
  /** Payload bytes a queue holds before senders wait (one message is always admitted). */
  queueBytes: number;
}

export interface DcConfig {
  id: number;
  name: string;
  /** Endpoint numbers run from 0 to slots - 1. */
  slots: number;
  /** If set, only processes whose uid or gid is listed may bind in this DC (root always may). */
  allow?: { uids?: number[]; gids?: number[] } | undefined;
  /** This DC's queue bounds, if not the node's. */
  queueLength?: number | undefined;
  queueBytes?: number | undefined;
}

/** Who is on the other end of a session, from SO_PEERCRED. */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export type Done<T> = (err: DvkError | null, value?: T) => void;

/** Where the table sends calls addressed to endpoints bound on other nodes. */
export interface RemoteRoutes {
  /** Whether an endpoint is bound on another node; generation 0 means any incarnation. */
  has(dc: number, endpoint: number, generation: number): boolean;
  /** Whether calls to an endpoint not bound here go to another node. */
  routes(dc: number, endpoint: number): boolean;
  send(
    from: Binding,
    dst: number,
    dstGen: number,
    type: number,
    payload: Buffer,
    wait: Wait,
    done: Done<void>,
  ): Waiting;
  sendrec(
    from: Binding,
    dst: number,
    dstGen: number,
    type: number,
    payload: Buffer,
    requestId: bigint,
    wait: Wait,
    done: Done<Message>,
  ): Waiting;
  /** Sends the bits; `done` once they are pending at the destination (or failed there). */
  notify(from: Binding, dst: number, dstGen: number, bits: number, done: Done<void>): void;
  /** A local binding ended: its calls to other nodes are withdrawn, and the other nodes told. */
  unbound(b: Binding): void;
  /** A binding's calls to other nodes are withdrawn (it moved away, or a shadow ended). */
  withdraw(b: Binding): void;
}

/** A call that is waiting; `cancel` ends it with ECANCELED if it is still waiting. */
export interface Waiting {
  cancel(): void;
}

const finished: Waiting = { cancel() {} };

interface Filter {
  endpoint: number;
  generation: number;
}

interface PendingReceive extends Waiting {
  filter: Filter;
  done: Done<Message>;
  timer: Deadline | undefined;
}

/** A message on its way into a queue, or in it. */
interface Entry {
  message: Message;
  /** Who sent it: a local binding, or a shadow of another node's endpoint. */
  sender: Binding;
  /** The sendrec this request belongs to. */
  call: PendingCall | undefined;
}

/** A sender held because the destination's queue is full. */
interface HeldSend {
  entry: Entry;
  sender: Binding;
  target: Binding;
  /** For plain sends: completes the send. sendrecs complete through their call instead. */
  done: Done<void> | undefined;
  deadline: bigint;
  timer: Deadline | undefined;
  /** The destination moved to another node: the send goes on there, and this is its call. */
  moved: Waiting | undefined;
}

class PendingCall implements Waiting {
  /** `moved`: the server moved to another node with the request; `remote` carries it on. */
  state: 'held' | 'queued' | 'received' | 'moved' | 'settled' = 'queued';
  timer: Deadline | undefined;
  held: HeldSend | undefined;
  entry: Entry | undefined;
  remote: Waiting | undefined;

  constructor(
    readonly table: EndpointTable,
    readonly caller: Binding,
    readonly server: Binding,
    readonly requestId: bigint,
    readonly deadline: bigint,
    readonly done: Done<Message>,
  ) {}

  cancel(): void {
    this.table.abandon(this, new DvkError('ECANCELED'));
  }
}

/** The origin of a fenced call made by an endpoint of this node (see Binding.fences). */
export const LOCAL_ORIGIN = 0;

/** A call held back by a fence: it runs when the fence lifts, or ends if its origin fails. */
interface FencedCall {
  run(): void;
  end(err: DvkError): void;
}

/** One bound endpoint with its queues. */
export class Binding {
  readonly queue: Entry[] = [];
  queuedBytes = 0;
  readonly held: HeldSend[] = [];
  readonly receivers: PendingReceive[] = [];
  /** Pending notification bits per source incarnation, in order of first arrival. */
  readonly notifications = new Map<
    string,
    { source: number; generation: number; bits: number; sender: Binding }
  >();
  /** Requests this endpoint received and has not answered, by `source:gen:id`. */
  readonly obligations = new Map<string, PendingCall>();
  /** This endpoint's own sendrecs, by request id. */
  readonly calls = new Map<bigint, PendingCall>();
  /** Sends of this endpoint held at other endpoints. */
  readonly heldElsewhere = new Set<HeldSend>();
  readonly counters = { sent: 0, received: 0, repliesSent: 0, repliesDropped: 0, notifySent: 0 };
  /** This endpoint's sendrecs waiting on other nodes. */
  remoteCalls = 0;
  bound = true;
  /** Where the incarnation lives: 1 when bound, one more at every move to another node. */
  epoch = 1;
  /**
   * Migration, at the old node: nothing is handed to the endpoint (its instance is being
   * snapshotted); senders queue and wait as usual.
   */
  frozen = false;
  /**
   * Migration, at the new node: calls from these origins (node ids, or LOCAL_ORIGIN) wait
   * here, in order, until the origin's FLUSH mark comes through the old node, behind whatever
   * the origin had sent there (docs/migration.md, "Order per sender").
   */
  readonly fences = new Map<number, FencedCall[]>();

  constructor(
    readonly dc: Dc,
    readonly endpoint: number,
    readonly generation: number,
    readonly peer: PeerCredentials | null,
    /** For a shadow binding, the node the endpoint is bound on. */
    readonly node?: number,
  ) {}

  get address(): EndpointAddress {
    return { dc: this.dc.id, endpoint: this.endpoint, generation: this.generation };
  }
}

/** An incarnation that moved away from this node: its new node and its epoch there. */
export interface Tombstone {
  generation: number;
  node: number;
  epoch: number;
}

class Dc {
  readonly bindings = new Map<number, Binding>();
  /** Bindings of incarnations moving here: they hold the number but get no calls yet. */
  readonly incoming = new Map<number, Binding>();
  /** Incarnations that moved to another node from here, for late callers (a tombstone). */
  readonly moved = new Map<number, Tombstone>();
  /** The last generation handed out per endpoint number; survives unbinding. */
  readonly generations = new Map<number, number>();
  constructor(readonly config: DcConfig) {}
  get id(): number {
    return this.config.id;
  }
}

const anyFilter: Filter = { endpoint: ENDPOINT_ANY, generation: 0 };

function matches(filter: Filter, source: number, generation: number): boolean {
  if (filter.endpoint === ENDPOINT_ANY) return true;
  return (
    filter.endpoint === source && (filter.generation === 0 || filter.generation === generation)
  );
}

function sameSender(a: Entry, b: Entry): boolean {
  return (
    a.message.source === b.message.source &&
    a.message.sourceGeneration === b.message.sourceGeneration
  );
}

function obligationKey(source: number, generation: number, requestId: bigint): string {
  return `${source}:${generation}:${requestId}`;
}

/** The options every blocking call carries into the table. */
export interface Wait {
  nonblock: boolean;
  deadline: bigint;
}

export class EndpointTable {
  private readonly dcs = new Map<number, Dc>();
  private readonly dcByName = new Map<string, Dc>();
  /** Set in a cluster: the routes to endpoints on other nodes. */
  remote: RemoteRoutes | undefined;
  /** Incarnations that moved in and out, and late calls forwarded after them. */
  readonly migrationCounters = { movedIn: 0, movedOut: 0, forwarded: 0 };
  /**
   * Where generations of a number this table has not seen start counting (from 0 alone).
   * A cluster node starts at random: its incarnations after a restart must not repeat those
   * from before, which other nodes may still have requests from.
   */
  generationFloor = 0;

  constructor(
    readonly limits: Limits,
    dcs: DcConfig[],
  ) {
    for (const config of dcs) {
      const dc = new Dc(config);
      this.dcs.set(config.id, dc);
      this.dcByName.set(config.name, dc);
    }
  }

  /**
   * Checks that `peer` may bind `endpoint` in a DC given by id or name, and that nothing on
   * this node has it; returns the DC's id. Throws DvkError.
   */
  checkBind(dcRef: number | string, endpoint: number, peer: PeerCredentials | null): number {
    const dc = typeof dcRef === 'number' ? this.dcs.get(dcRef) : this.dcByName.get(dcRef);
    if (!dc) throw new DvkError('ENOENT', `no such DC ${JSON.stringify(dcRef)}`);
    if (!Number.isInteger(endpoint) || endpoint < 0 || endpoint >= dc.config.slots) {
      throw new DvkError('EINVAL', `endpoint ${endpoint} outside 0..${dc.config.slots - 1}`);
    }
    const allow = dc.config.allow;
    if (allow && peer?.uid !== 0) {
      if (!peer) throw new DvkError('EPERM', `DC ${dc.config.name} admits known users only`);
      const ok = allow.uids?.includes(peer.uid) || allow.gids?.includes(peer.gid);
      if (!ok) throw new DvkError('EPERM', `uid ${peer.uid} may not bind in DC ${dc.config.name}`);
    }
    if (dc.bindings.has(endpoint) || dc.incoming.has(endpoint)) {
      throw new DvkError('EADDRINUSE');
    }
    return dc.id;
  }

  /** The generation the next binding of an endpoint gets (DC by id; checked by checkBind). */
  nextGeneration(dcId: number, endpoint: number): number {
    const dc = this.dcs.get(dcId) as Dc;
    return ((dc.generations.get(endpoint) ?? this.generationFloor) % 0xffff_ffff) + 1;
  }

  /**
   * Records that another node bound `generation` of an endpoint, so that a later binding here
   * numbers past it: an incarnation stays unique across the cluster.
   */
  noteGeneration(dcId: number, endpoint: number, generation: number): void {
    const dc = this.dcs.get(dcId);
    if (dc && generation > (dc.generations.get(endpoint) ?? 0)) {
      dc.generations.set(endpoint, generation);
    }
  }

  /**
   * Binds `endpoint` in a DC given by id or name; throws DvkError. `generation` is the one a
   * cluster claim announced; by default the next one.
   */
  bind(
    dcRef: number | string,
    endpoint: number,
    peer: PeerCredentials | null,
    generation?: number,
  ): Binding {
    const dc = this.dcs.get(this.checkBind(dcRef, endpoint, peer)) as Dc;
    const gen = generation ?? this.nextGeneration(dc.id, endpoint);
    this.noteGeneration(dc.id, endpoint, gen);
    const binding = new Binding(dc, endpoint, gen, peer);
    dc.bindings.set(endpoint, binding);
    dc.moved.delete(endpoint);
    return binding;
  }

  // --- migration (docs/migration.md) ---

  /** Stops handing messages to `b`; senders queue and are held as usual. */
  freeze(b: Binding): void {
    b.frozen = true;
  }

  /** Hands messages to `b` again (a move was rolled back). */
  thaw(b: Binding): void {
    b.frozen = false;
    this.serveReceivers(b);
  }

  /**
   * A binding for an incarnation moving here from another node: it holds the number but no
   * call reaches it until `moveIn`. Throws EADDRINUSE if the number is taken here.
   */
  bindIncoming(
    dcId: number,
    endpoint: number,
    generation: number,
    peer: PeerCredentials | null,
  ): Binding {
    const dc = this.dcs.get(this.checkBind(dcId, endpoint, null)) as Dc;
    this.noteGeneration(dc.id, endpoint, generation);
    const b = new Binding(dc, endpoint, generation, peer);
    b.frozen = true;
    dc.incoming.set(endpoint, b);
    return b;
  }

  /** Whether an incarnation moving here holds the number. */
  incoming(dcId: number, endpoint: number): boolean {
    return this.dcs.get(dcId)?.incoming.has(endpoint) ?? false;
  }

  /** An incoming binding whose move failed: it goes, and nobody had called it. */
  dropIncoming(b: Binding): void {
    if (b.dc.incoming.get(b.endpoint) === b) b.dc.incoming.delete(b.endpoint);
    b.bound = false;
  }

  /**
   * The move is committed here: the incoming binding takes calls. Calls from `origins` wait
   * behind their fences until `liftFence`.
   */
  moveIn(b: Binding, origins: number[]): void {
    b.dc.incoming.delete(b.endpoint);
    b.dc.bindings.set(b.endpoint, b);
    b.dc.moved.delete(b.endpoint);
    this.migrationCounters.movedIn++;
    for (const origin of origins) b.fences.set(origin, []);
    b.frozen = false;
    this.serveReceivers(b);
  }

  /** An origin's calls sent before the move have all arrived: its held-back calls go on. */
  liftFence(b: Binding, origin: number): void {
    const waiting = b.fences.get(origin);
    if (!waiting) return;
    b.fences.delete(origin);
    for (const call of waiting.splice(0)) call.run();
  }

  /** An origin's node is down: the calls its fence held back end with `err`. */
  dropFence(b: Binding, origin: number, err: DvkError): void {
    const waiting = b.fences.get(origin);
    if (!waiting) return;
    b.fences.delete(origin);
    for (const call of waiting.splice(0)) call.end(err);
  }

  /**
   * The incarnation `b` moved to `node`, which has announced it: `b` leaves this node without
   * failing anyone. What waited for it here goes on to `node`, in order (its queue, then its
   * held senders, then pending bits), through the remote routes, which must already route
   * there; so do late calls from other nodes (a tombstone). Its own instance is finished with
   * it: calls it still had waiting end with ECANCELED.
   */
  moveOut(b: Binding, node: number): void {
    const remote = this.remote;
    if (!remote) throw new Error('moveOut needs the remote routes of a cluster');
    b.bound = false;
    b.frozen = false;
    if (b.dc.bindings.get(b.endpoint) === b) b.dc.bindings.delete(b.endpoint);
    b.dc.moved.set(b.endpoint, { generation: b.generation, node, epoch: b.epoch + 1 });
    this.migrationCounters.movedOut++;
    for (const r of b.receivers.splice(0)) {
      r.timer?.clear();
      r.done(new DvkError('ECANCELED', 'the endpoint moved to another node'));
    }
    this.withdrawOwnCalls(b);
    remote.withdraw(b);
    const onward = (entry: Entry, deadline: bigint, done: Done<void> | undefined): Waiting => {
      const m = entry.message;
      const call = entry.call;
      const wait = { nonblock: false, deadline };
      if (!call) {
        return remote.send(
          entry.sender,
          b.endpoint,
          b.generation,
          m.type,
          m.payload,
          wait,
          done ?? (() => {}),
        );
      }
      call.caller.calls.delete(call.requestId);
      call.state = 'moved';
      call.held = undefined;
      call.entry = undefined;
      call.remote = remote.sendrec(
        call.caller,
        b.endpoint,
        b.generation,
        m.type,
        m.payload,
        call.requestId,
        { nonblock: false, deadline: call.deadline },
        (err, reply) => this.settle(call, err, reply),
      );
      return call;
    };
    // Queued plain sends completed when they were queued: only their delivery is owed.
    for (const entry of b.queue.splice(0)) onward(entry, 0n, undefined);
    b.queuedBytes = 0;
    for (const held of b.held.splice(0)) {
      held.sender.heldElsewhere.delete(held);
      held.timer?.clear();
      held.moved = onward(held.entry, held.deadline, held.done);
    }
    for (const n of b.notifications.values()) {
      remote.notify(n.sender, b.endpoint, b.generation, n.bits, () => {});
    }
    b.notifications.clear();
    // Drained before the freeze; one left is a reply the old instance will never send.
    for (const call of b.obligations.values()) {
      if (call.state === 'received') {
        this.settle(call, new DvkError('ESRCH', `endpoint ${b.endpoint} moved without replying`));
      }
    }
    b.obligations.clear();
  }

  /** The incarnation that moved from here has ended on its node: late calls find nothing. */
  forgetMoved(dcId: number, endpoint: number, generation: number): void {
    const dc = this.dcs.get(dcId);
    if (dc?.moved.get(endpoint)?.generation === generation) dc.moved.delete(endpoint);
  }

  /** Where the incarnation went, if it moved away from here. */
  movedTo(dcId: number, endpoint: number): Tombstone | undefined {
    return this.dcs.get(dcId)?.moved.get(endpoint);
  }

  /** Every incarnation that moved away from here, with its DC. */
  tombstones(): (Tombstone & { dc: number; endpoint: number })[] {
    return [...this.dcs.values()].flatMap((dc) =>
      [...dc.moved].map(([endpoint, t]) => ({ ...t, dc: dc.id, endpoint })),
    );
  }

  /** A DC's id, from its id or name; undefined if this node has no such DC. */
  dcIdOf(ref: number | string): number | undefined {
    return (typeof ref === 'number' ? this.dcs.get(ref) : this.dcByName.get(ref))?.id;
  }

  dcExists(dcId: number): boolean {
    return this.dcs.has(dcId);
  }

  /** The endpoint's binding on this node, if it is bound here. */
  local(dcId: number, endpoint: number): Binding | undefined {
    return this.dcs.get(dcId)?.bindings.get(endpoint);
  }

  /** Every endpoint bound on this node. */
  bindings(): Binding[] {
    return [...this.dcs.values()].flatMap((dc) => [...dc.bindings.values()]);
  }

  /** A binding standing for an endpoint bound on another node, for its calls arriving here. */
  shadow(dcId: number, endpoint: number, generation: number, node: number): Binding {
    const dc = this.dcs.get(dcId);
    if (!dc) throw new DvkError('ENOENT', `no such DC ${dcId}`);
    this.noteGeneration(dcId, endpoint, generation);
    return new Binding(dc, endpoint, generation, null, node);
  }

  /**
   * The remote routes, if `dst` is not bound here and a local endpoint addresses another node,
   * or if a call from another node names an incarnation that moved away from here: that call
   * is forwarded to the incarnation's new node (docs/migration.md).
   */
  private remoteFor(from: Binding, dst: number, dstGen: number): RemoteRoutes | undefined {
    const remote = this.remote;
    if (!remote || from.dc.bindings.has(dst)) return undefined;
    if (from.node !== undefined) {
      const moved = from.dc.moved.get(dst);
      if (!moved || (dstGen !== 0 && dstGen !== moved.generation)) return undefined;
      this.migrationCounters.forwarded++;
      return remote;
    }
    return remote.routes(from.dc.id, dst) ? remote : undefined;
  }

  /**
   * A call to `target` from an origin its fence holds back: it waits until the fence lifts,
   * then runs as `replay`; a timeout or a cancel before that ends it with `fail`.
   */
  private fenced(
    target: Binding,
    from: Binding,
    wait: Wait,
    replay: () => Waiting,
    fail: (err: DvkError) => void,
  ): Waiting | undefined {
    const waiting = target.fences.get(from.node ?? LOCAL_ORIGIN);
    if (!waiting) return undefined;
    if (wait.nonblock) {
      fail(new DvkError('EAGAIN', `endpoint ${target.endpoint} is settling after a move`));
      return finished;
    }
    let inner: Waiting | undefined;
    let ended = false;
    const call: FencedCall = {
      run: () => {
        if (ended) return;
        ended = true;
        timer?.clear();
        inner = replay();
      },
      end: (err) => {
        if (ended) return;
        ended = true;
        timer?.clear();
        const i = waiting.indexOf(call);
        if (i >= 0) waiting.splice(i, 1);
        fail(err);
      },
    };
    const timer = deadlineTimer(wait.deadline, () =>
      call.end(new DvkError('ETIMEDOUT', `endpoint ${target.endpoint} was still settling`)),
    );
    waiting.push(call);
    return { cancel: () => (inner ? inner.cancel() : call.end(new DvkError('ECANCELED'))) };
  }

  private resolve(from: Binding, endpoint: number, generation: number): Binding {
    const dst = from.dc.bindings.get(endpoint);
    if (!dst) throw new DvkError('ENOENT', `endpoint ${endpoint} is not bound`);
    if (generation !== 0 && dst.generation !== generation) {
      throw new DvkError(
        'ENOENT',
        `generation ${generation} of endpoint ${endpoint} is gone (now ${dst.generation})`,
      );
    }
    return dst;
  }

  private checkPayload(payload: Uint8Array): void {
    if (payload.length > this.limits.maxPayload) {
      throw new DvkError('EMSGSIZE', `${payload.length} bytes > limit ${this.limits.maxPayload}`);
    }
  }

  private message(
    from: Binding,
    type: number,
    flags: number,
    requestId: bigint,
    payload: Buffer,
  ): Message {
    const kind: MessageKind = flags & MessageFlags.REQUEST ? 'request' : 'message';
    return {
      kind,
      source: from.endpoint,
      sourceGeneration: from.generation,
      type,
      requestId,
      bits: 0,
      payload,
    };
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
    const remote = this.remoteFor(from, dst, dstGen);
    if (remote) return remote.send(from, dst, dstGen, type, payload, wait, done);
    let target: Binding;
    try {
      target = this.resolve(from, dst, dstGen);
      this.checkPayload(payload);
    } catch (err) {
      done(err as DvkError);
      return finished;
    }
    const fence = this.fenced(
      target,
      from,
      wait,
      () => this.send(from, dst, dstGen, type, payload, wait, done),
      done,
    );
    if (fence) return fence;
    const entry: Entry = {
      message: this.message(from, type, 0, 0n, payload),
      sender: from,
      call: undefined,
    };
    if (this.admit(target, entry)) {
      from.counters.sent++;
      done(null);
      return finished;
    }
    if (wait.nonblock) {
      done(new DvkError('EAGAIN', `queue of endpoint ${dst} is full`));
      return finished;
    }
    const held: HeldSend = {
      entry,
      sender: from,
      target,
      done,
      deadline: wait.deadline,
      timer: undefined,
      moved: undefined,
    };
    const giveUp = (reason: DvkError) => {
      if (held.moved) return held.moved.cancel();
      if (!this.unhold(target, held)) return;
      done(reason);
      // It may have been the head that blocked the senders behind it.
      this.pump(target);
    };
    this.hold(target, held, () =>
      giveUp(new DvkError('ETIMEDOUT', `queue of endpoint ${dst} stayed full`)),
    );
    return { cancel: () => giveUp(new DvkError('ECANCELED')) };
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
    const remote = this.remoteFor(from, dst, dstGen);
    if (remote) return remote.sendrec(from, dst, dstGen, type, payload, requestId, wait, done);
    let target: Binding;
    try {
      if (from.calls.has(requestId)) throw new DvkError('EINVAL', `request id ${requestId} in use`);
      target = this.resolve(from, dst, dstGen);
      this.checkPayload(payload);
    } catch (err) {
      done(err as DvkError);
      return finished;
    }
    const fence = this.fenced(
      target,
      from,
      wait,
      () => this.sendrec(from, dst, dstGen, type, payload, requestId, wait, done),
      done,
    );
    if (fence) return fence;
    const call = new PendingCall(this, from, target, requestId, wait.deadline, done);
    const entry: Entry = {
      message: this.message(from, type, MessageFlags.REQUEST, requestId, payload),
      sender: from,
      call,
    };
    call.entry = entry;
    if (!this.admit(target, entry)) {
      if (wait.nonblock) {
        done(new DvkError('EAGAIN', `queue of endpoint ${dst} is full`));
        return finished;
      }
      call.state = 'held';
      call.held = {
        entry,
        sender: from,
        target,
        done: undefined,
        deadline: 0n,
        timer: undefined,
        moved: undefined,
      };
      this.hold(target, call.held, () => {});
    }
    from.calls.set(requestId, call);
    from.counters.sent++;
    if (call.state !== 'settled') {
      call.timer = deadlineTimer(wait.deadline, () =>
        this.abandon(call, new DvkError('ETIMEDOUT', `no reply from endpoint ${dst}`)),
      );
    }
    return call;
  }

  /** The caller gives up on a sendrec: withdraw the request if the server has not taken it. */
  abandon(call: PendingCall, reason: DvkError): void {
    if (call.state === 'settled') return;
    if (call.state === 'moved') {
      // Settled first: the cancel's own ECANCELED must not replace `reason`.
      this.settle(call, reason);
      call.remote?.cancel();
      return;
    }
    const server = this.withdraw(call);
    this.settle(call, reason);
    if (server) this.pump(server);
  }

  /**
   * Takes a sendrec's request back from its server if the server has not received it, without
   * admitting anyone in its place; returns the server if something was taken. A received
   * request stays in the server's obligations: its reply is accepted and dropped.
   */
  private withdraw(call: PendingCall): Binding | undefined {
    const server = call.server;
    if (call.state === 'held' && call.held && this.unhold(server, call.held)) return server;
    if (call.state === 'queued' && call.entry && this.dequeue(server, call.entry)) return server;
    return undefined;
  }

  private settle(call: PendingCall, err: DvkError | null, reply?: Message): void {
    if (call.state === 'settled') return;
    call.state = 'settled';
    call.timer?.clear();
    call.caller.calls.delete(call.requestId);
    call.done(err, reply);
  }

  receive(b: Binding, from: number, fromGen: number, wait: Wait, done: Done<Message>): Waiting {
    const filter = from === ENDPOINT_ANY ? anyFilter : { endpoint: from, generation: fromGen };
    const ready = this.take(b, filter);
    if (ready) {
      done(null, ready);
      return finished;
    }
    if (
      filter.generation !== 0 &&
      b.dc.bindings.get(from)?.generation !== fromGen &&
      !this.remote?.has(b.dc.id, from, fromGen)
    ) {
      // That incarnation is gone (or never was) and left nothing here: nothing can come.
      done(new DvkError('ENOENT', `generation ${fromGen} of endpoint ${from} is not bound`));
      return finished;
    }
    if (wait.nonblock) {
      done(new DvkError('EAGAIN', 'nothing to receive'));
      return finished;
    }
    const pending: PendingReceive = {
      filter,
      done,
      timer: undefined,
      cancel: () => {
        if (!this.dropReceiver(b, pending)) return;
        done(new DvkError('ECANCELED'));
      },
    };
    pending.timer = deadlineTimer(wait.deadline, () => {
      if (this.dropReceiver(b, pending)) done(new DvkError('ETIMEDOUT', 'nothing received'));
    });
    b.receivers.push(pending);
    return pending;
  }

  reply(
    b: Binding,
    to: number,
    toGen: number,
    requestId: bigint,
    type: number,
    payload: Buffer,
  ): void {
    this.checkPayload(payload);
    const key = obligationKey(to, toGen, requestId);
    const call = b.obligations.get(key);
    if (!call) {
      throw new DvkError('EINVAL', `no unanswered request ${requestId} from endpoint ${to}`);
    }
    b.obligations.delete(key);
    b.counters.repliesSent++;
    if (call.state !== 'received') {
      b.counters.repliesDropped++;
      return;
    }
    const reply: Message = {
      kind: 'message',
      source: b.endpoint,
      sourceGeneration: b.generation,
      type,
      requestId,
      bits: 0,
      payload,
    };
    this.settle(call, null, reply);
  }

  /**
   * ORs bits into the destination's pending notifications from this sender. Bad arguments and
   * a local destination that is not bound throw; `done` runs once the bits are pending there,
   * at once for a local destination, or when the destination's node answers.
   */
  notify(
    from: Binding,
    dst: number,
    dstGen: number,
    bits: number,
    done: Done<void> = () => {},
  ): void {
    if (!Number.isInteger(bits) || bits <= 0 || bits > 0xffff_ffff) {
      throw new DvkError('EINVAL', 'notification bits must be a non-zero 32-bit mask');
    }
    const remote = this.remoteFor(from, dst, dstGen);
    if (remote) return remote.notify(from, dst, dstGen, bits, done);
    const target = this.resolve(from, dst, dstGen);
    const wait = { nonblock: false, deadline: 0n };
    const replay = () => {
      this.notify(from, dst, dstGen, bits, done);
      return finished;
    };
    if (this.fenced(target, from, wait, replay, done)) return;
    from.counters.notifySent++;
    const key = `${from.endpoint}:${from.generation}`;
    const pending = target.notifications.get(key);
    if (pending) {
      pending.bits = (pending.bits | bits) >>> 0;
    } else {
      const n = { source: from.endpoint, generation: from.generation, bits, sender: from };
      target.notifications.set(key, n);
      this.serveReceivers(target);
    }
    done(null);
  }

  /** Ends a binding: the connection closed or the process died. */
  unbind(b: Binding): void {
    if (!b.bound) return;
    b.bound = false;
    if (b.dc.bindings.get(b.endpoint) === b) b.dc.bindings.delete(b.endpoint);
    if (b.dc.incoming.get(b.endpoint) === b) b.dc.incoming.delete(b.endpoint);
    for (const origin of [...b.fences.keys()]) {
      this.dropFence(b, origin, new DvkError('ESRCH', `endpoint ${b.endpoint} unbound`));
    }
    if (b.node === undefined) this.remote?.unbound(b);
    else this.remote?.withdraw(b);
    for (const r of b.receivers.splice(0)) r.timer?.clear();
    const withdrawnFrom = this.withdrawOwnCalls(b, false);
    const gone = (what: string) => new DvkError('ESRCH', `endpoint ${b.endpoint} ${what}`);
    for (const held of b.held.splice(0)) {
      held.sender.heldElsewhere.delete(held);
      held.timer?.clear();
      if (held.entry.call) this.settle(held.entry.call, gone('unbound with the request held'));
      else held.done?.(gone('unbound while the send was held'));
    }
    for (const entry of b.queue.splice(0)) {
      if (entry.call) this.settle(entry.call, gone('unbound with the request queued'));
    }
    b.queuedBytes = 0;
    for (const call of b.obligations.values()) {
      if (call.state === 'received') this.settle(call, gone('unbound without replying'));
    }
    b.obligations.clear();
    b.notifications.clear();
    this.endReceivesFrom(b.dc.id, b.endpoint, b.generation);
    for (const target of withdrawnFrom) this.pump(target);
  }

  /**
   * Ends with ECANCELED the calls `b` has waiting at other endpoints of this node. Everything
   * is taken back first, and only then are those queues refilled from their held senders
   * (unless `pump` is false: the caller does it, returned the queues): refilling earlier
   * could admit a later send of this very endpoint after an earlier one was cancelled.
   */
  private withdrawOwnCalls(b: Binding, pump = true): Set<Binding> {
    const withdrawnFrom = new Set<Binding>();
    for (const call of [...b.calls.values()]) {
      const server = this.withdraw(call);
      if (server) withdrawnFrom.add(server);
      this.settle(call, new DvkError('ECANCELED'));
    }
    for (const held of [...b.heldElsewhere]) {
      if (this.unhold(held.target, held)) withdrawnFrom.add(held.target);
      held.done?.(new DvkError('ECANCELED'));
    }
    if (pump) for (const target of withdrawnFrom) this.pump(target);
    return withdrawnFrom;
  }

  /**
   * Receives that wait for exactly this incarnation can never be served once it is gone (they
   * would have taken anything it had sent): they end with ESRCH, or `code` (EHOSTUNREACH when
   * its node went down). Receives naming only the number keep waiting, since a new incarnation
   * may bind it.
   */
  endReceivesFrom(
    dcId: number,
    endpoint: number,
    generation: number,
    code: 'ESRCH' | 'EHOSTUNREACH' = 'ESRCH',
  ): void {
    const dc = this.dcs.get(dcId);
    if (!dc) return;
    for (const other of dc.bindings.values()) {
      for (const r of [...other.receivers]) {
        const f = r.filter;
        if (f.endpoint !== endpoint || f.generation !== generation) continue;
        this.dropReceiver(other, r);
        r.done(new DvkError(code, `endpoint ${endpoint} unbound`));
      }
    }
  }

  /**
   * Puts an entry in the queue, or straight into a waiting receive, if it may go now. A receive
   * waiting for this sender takes the entry even when the queue is full of others' messages:
   * otherwise `receive({ from })` could wait forever behind messages nobody takes.
   */
  private admit(target: Binding, entry: Entry): boolean {
    const { source, sourceGeneration } = entry.message;
    const wanted =
      !target.frozen && target.receivers.some((r) => matches(r.filter, source, sourceGeneration));
    if (wanted && !target.held.some((h) => sameSender(h.entry, entry))) {
      this.enqueue(target, entry);
      return true;
    }
    if (target.held.length > 0 || !this.hasRoom(target, entry)) return false;
    this.enqueue(target, entry);
    return true;
  }

  private hasRoom(b: Binding, entry: Entry): boolean {
    if (b.queue.length === 0) return true;
    const length = b.dc.config.queueLength ?? this.limits.queueLength;
    const bytes = b.dc.config.queueBytes ?? this.limits.queueBytes;
    return b.queue.length < length && b.queuedBytes + entry.message.payload.length <= bytes;
  }

  private enqueue(b: Binding, entry: Entry): void {
    const message = entry.message;
    const idx = b.frozen
      ? -1
      : b.receivers.findIndex((r) => matches(r.filter, message.source, message.sourceGeneration));
    if (idx >= 0) {
      const [receiver] = b.receivers.splice(idx, 1) as [PendingReceive];
      receiver.timer?.clear();
      this.handOver(b, entry);
      receiver.done(null, message);
      return;
    }
    if (entry.call) entry.call.state = 'queued';
    b.queue.push(entry);
    b.queuedBytes += message.payload.length;
  }

  /** Records what a delivered entry obliges the receiver to do. */
  private handOver(b: Binding, entry: Entry): void {
    b.counters.received++;
    const call = entry.call;
    if (!call) return;
    call.state = 'received';
    b.obligations.set(
      obligationKey(call.caller.endpoint, call.caller.generation, call.requestId),
      call,
    );
  }

  /** Removes a queued entry without refilling the queue; false if it was not queued. */
  private dequeue(b: Binding, entry: Entry): boolean {
    const idx = b.queue.indexOf(entry);
    if (idx < 0) return false;
    b.queue.splice(idx, 1);
    b.queuedBytes -= entry.message.payload.length;
    return true;
  }

  private hold(target: Binding, held: HeldSend, onTimeout: () => void): void {
    target.held.push(held);
    held.sender.heldElsewhere.add(held);
    held.timer = deadlineTimer(held.deadline, onTimeout);
  }

  /**
   * Removes a held send without admitting the senders behind it (the caller pumps); false if
   * it was no longer held.
   */
  private unhold(target: Binding, held: HeldSend): boolean {
    const idx = target.held.indexOf(held);
    if (idx < 0) return false;
    target.held.splice(idx, 1);
    held.sender.heldElsewhere.delete(held);
    held.timer?.clear();
    return true;
  }

  /** Admits held senders, in order, while the queue has room and the endpoint is bound. */
  private pump(b: Binding): void {
    while (b.bound && b.held.length > 0) {
      const head = b.held[0] as HeldSend;
      if (!this.hasRoom(b, head.entry)) return;
      b.held.shift();
      head.sender.heldElsewhere.delete(head);
      head.timer?.clear();
      this.enqueue(b, head.entry);
      head.done?.(null);
    }
  }

  /** The next notification or message for a filter, removed from its queue. */
  private take(b: Binding, filter: Filter): Message | undefined {
    if (b.frozen) return undefined;
    for (const [key, n] of b.notifications) {
      if (!matches(filter, n.source, n.generation)) continue;
      b.notifications.delete(key);
      return {
        kind: 'notification',
        source: n.source,
        sourceGeneration: n.generation,
        type: 0,
        requestId: 0n,
        bits: n.bits,
        payload: Buffer.alloc(0),
      };
    }
    const idx = b.queue.findIndex((e) =>
      matches(filter, e.message.source, e.message.sourceGeneration),
    );
    if (idx >= 0) {
      const [entry] = b.queue.splice(idx, 1) as [Entry];
      b.queuedBytes -= entry.message.payload.length;
      this.handOver(b, entry);
      this.pump(b);
      return entry.message;
    }
    // Nothing queued from the wanted sender, but it may be held behind a queue full of others.
    // Its first held entry is the oldest it has outstanding, so taking it keeps its order.
    const h = b.held.findIndex((e) =>
      matches(filter, e.entry.message.source, e.entry.message.sourceGeneration),
    );
    if (h < 0) return undefined;
    const [held] = b.held.splice(h, 1) as [HeldSend];
    held.sender.heldElsewhere.delete(held);
    held.timer?.clear();
    this.handOver(b, held.entry);
    held.done?.(null);
    if (h === 0) this.pump(b);
    return held.entry.message;
  }

  /** Gives pending notifications to waiting receives. */
  private serveReceivers(b: Binding): void {
    for (let i = 0; i < b.receivers.length; ) {
      const r = b.receivers[i] as PendingReceive;
      const message = this.take(b, r.filter);
      if (!message) {
        i++;
        continue;
      }
      b.receivers.splice(i, 1);
      r.timer?.clear();
      r.done(null, message);
    }
  }

  private dropReceiver(b: Binding, r: PendingReceive): boolean {
    const idx = b.receivers.indexOf(r);
    if (idx < 0) return false;
    b.receivers.splice(idx, 1);
    r.timer?.clear();
    return true;
  }

  status(): DcStatus[] {
    return [...this.dcs.values()].map((dc) => ({
      id: dc.id,
      name: dc.config.name,
      slots: dc.config.slots,
      endpoints: [...dc.bindings.values()]
        .sort((a, b) => a.endpoint - b.endpoint)
        .map((b): EndpointStatus => endpointStatus(b)),
    }));
  }
}

function endpointStatus(b: Binding): EndpointStatus {
  return {
    endpoint: b.endpoint,
    generation: b.generation,
    queued: b.queue.length,
    queuedBytes: b.queuedBytes,
    blockedSenders: b.held.length,
    pendingNotifications: b.notifications.size,
    waitingReceives: b.receivers.length,
    unansweredRequests: b.obligations.size,
    pendingCalls: b.calls.size + b.remoteCalls,
    pid: b.peer?.pid ?? null,
    counters: { ...b.counters },
  };
}
