/**
 * Live migration of a service's endpoint from one agent to another (docs/migration.md, the
 * protocol and its crash rules). Every agent runs one Migrations, which plays whichever parts
 * a move gives its node: coordinator (it was asked), source (the endpoint is here),
 * destination (it moves here), or another node of the DC (it learns the new place and sends
 * its FLUSH mark). The steps travel as MIGRATE records on the links (exactly once, in order);
 * a part this node plays for itself is posted to itself the same way.
 *
 * The destination decides: it commits only when the coordinator says so, after the source has
 * handed over the snapshot, and announces MOVED; the source never gives up on its own once the
 * snapshot left, so the two can never both serve. Queued calls never travel in the snapshot:
 * they wait at the source until the commit and then go on as calls of their senders
 * (EndpointTable.moveOut), so a rollback has nothing to bring back.
 */
import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import {
  type Binding,
  type EndpointTable,
  LOCAL_ORIGIN,
  type PeerCredentials,
} from '../agent/endpoints.js';
import type { MigrationReport } from '../backend.js';
import { DvkError, type ErrorCode, isDvkError } from '../errors.js';
import { Record, type RemoteRecord, record } from './remote-wire.js';
import type { Router } from './router.js';

/** MIGRATE records' `type`. */
export const Step = {
  /** Coordinator to destination: start the service's incoming instance. */
  PREPARE: 1,
  /** Destination to coordinator: the incoming instance holds the endpoint. */
  PREPARED: 2,
  /** Coordinator to source: freeze, snapshot, and send the state to the destination. */
  FREEZE: 3,
  /** Source to destination: a piece of the snapshot (raw payload). */
  STATE: 4,
  /** Source to destination: the snapshot is complete. */
  TRANSFERRED: 5,
  /** Destination to coordinator: restored; ready to commit. */
  READY: 6,
  /** Coordinator to destination: take the endpoint. */
  COMMIT: 7,
  /** Destination to coordinator: committed (MOVED is out). */
  DONE: 8,
  /** Anyone to the coordinator: this migration failed here. */
  FAILED: 9,
  /** Coordinator or destination to the others: roll back. */
  ABORT: 10,
  /** Destination to every node of the DC: the incarnation lives here now, with this epoch. */
  MOVED: 11,
  /** A node to the old place (and the old place on to the new): all it sent there is ahead. */
  FLUSH: 12,
  /** Source to coordinator: the destination went silent after the state left; decide. */
  QUERY: 13,
  /** Coordinator to source: `committed` true if the commit was asked for (or may have been). */
  VERDICT: 14,
} as const;
type StepCode = (typeof Step)[keyof typeof Step];

/** An instance of a service, as migration drives it (lib/agent/services.ts). */
export interface MigratableInstance {
  readonly pid: number;
  /** Resolves once the instance serves (for an incoming one, once it has restored). */
  readonly serving: Promise<number>;
  /** Settles once the process has exited. */
  readonly exited: Promise<unknown>;
  freeze(timeoutMs: number): Promise<Uint8Array>;
  resume(): Promise<void>;
  restore(bytes: Uint8Array, pieceSize: number): Promise<void>;
  exit(): Promise<unknown>;
  kill(): Promise<unknown>;
}

/** The agent's services, as migration needs them. */
export interface ServiceHost {
  /** The service the cluster file puts on this endpoint, if any. */
  serviceAt(dc: number, endpoint: number): string | undefined;
  /** The instance of a service that runs on this node, if any. */
  instanceOf(service: string): MigratableInstance | undefined;
  /** Starts an instance of `service` to take over its endpoint moving here. */
  startIncoming(service: string): MigratableInstance;
  /** That instance took over: it is the service's instance on this node from now on. */
  adopt(service: string, instance: MigratableInstance): void;
}

export interface MigrationOptions {
  /** How long the source's instance may take to finish its running handler (the drain). */
  drainMs: number;
  /** How long any other step may take before the move is rolled back. */
  stepMs: number;
}

export const defaultMigrationOptions: MigrationOptions = { drainMs: 5_000, stepMs: 10_000 };

/** The endpoint a move is about, as steps name it. */
interface Incarnation {
  dc: number;
  endpoint: number;
  generation: number;
}

/** A move this node coordinates. */
interface Coordinated extends Incarnation {
  id: bigint;
  service: string;
  source: number;
  dest: number;
  /** The step whose answer is awaited. */
  awaiting: { steps: StepCode[]; settle: (err: DvkError | null, body?: Body) => void } | null;
  committing: boolean;
}

/** A move to this node. */
interface Incoming extends Incarnation {
  id: bigint;
  coordinator: number;
  source: number;
  service: string;
  instance: MigratableInstance;
  binding: Binding | undefined;
  pieces: Buffer[];
  /** The source's end mark came: the whole state is here, and the source is not needed. */
  transferred: boolean;
  epoch: number;
  phase: 'preparing' | 'prepared' | 'ready' | 'committed' | 'ended';
  timer: NodeJS.Timeout | undefined;
}

/** A move away from this node. */
interface Outgoing extends Incarnation {
  id: bigint;
  coordinator: number;
  dest: number;
  binding: Binding;
  instance: MigratableInstance;
  phase: 'freezing' | 'sent' | 'ended';
  /** FLUSH marks that came before MOVED: passed on after the move. */
  flushes: number[];
  /** Waiting for the coordinator's VERDICT: gives up (the endpoint is lost) when it fires. */
  query: NodeJS.Timeout | undefined;
  /** Resolves when the move away has ended, whichever way. */
  ended: Promise<void>;
  end: () => void;
}

/** JSON bodies of the steps (STATE's payload is raw). */
interface Body {
  dc?: number;
  endpoint?: number;
  generation?: number;
  service?: string;
  /** A node id: the source (PREPARE, MOVED), the destination (FREEZE), a FLUSH's origin. */
  node?: number;
  epoch?: number;
  stateBytes?: number;
  code?: ErrorCode;
  detail?: string;
  committed?: boolean;
  /** MOVED: the node it moved to, when the source passes the news on. */
  dest?: number;
}

const key = (i: Incarnation) => `${i.dc}:${i.endpoint}:${i.generation}`;

export class Migrations {
  private readonly coordinated = new Map<bigint, Coordinated>();
  private readonly incoming = new Map<bigint, Incoming>();
  /** Moves away from here, by incarnation. */
  private readonly outgoing = new Map<string, Outgoing>();
  /** Bindings that moved here and still have fences, with the node they came from. */
  private readonly settling = new Map<Binding, number>();
  /** How recent moves this node coordinated ended, for a source that asks (QUERY). */
  private readonly decided = new Map<bigint, boolean>();
  /** Moves rolled back, by id: a FREEZE for one that comes late is refused. */
  private readonly aborted = new Set<bigint>();
  /** Instances of moves here that were rolled back: a late bind of theirs is refused. */
  private readonly refused = new Set<number>();
  /** Ids go on from a random point, so that a restarted agent does not reuse recent ones. */
  private nextId = BigInt(randomInt(2 ** 30)) << 8n;

  constructor(
    private readonly router: Router,
    private readonly table: EndpointTable,
    private readonly services: ServiceHost,
    private readonly log: Logger,
    private readonly options: MigrationOptions = defaultMigrationOptions,
  ) {
    router.migration = this;
  }

  private get self(): number {
    return this.router.self;
  }

  // --- coordinator ---

  /** Moves an endpoint's service to the node named `to`; resolves once committed there. */
  async migrate(dcRef: number | string, endpoint: number, to: string): Promise<MigrationReport> {
    const dc = this.table.dcIdOf(dcRef);
    if (dc === undefined) throw new DvkError('ENOENT', `no such DC ${JSON.stringify(dcRef)}`);
    const dest = this.router.directory.nodes().find((n) => n.name === to)?.id;
    if (dest === undefined) throw new DvkError('EINVAL', `no node named ${to}`);
    const local = this.table.local(dc, endpoint);
    const remote = this.router.where(dc, endpoint);
    const source = local ? this.self : remote?.node;
    const generation = local?.generation ?? remote?.generation;
    if (source === undefined || generation === undefined) {
      throw new DvkError('ENOENT', `endpoint ${endpoint} is not bound`);
    }
    if (source === dest) throw new DvkError('EINVAL', `endpoint ${endpoint} is on ${to} already`);
    if (!this.router.directory.dc(dc)?.nodes.includes(to)) {
      throw new DvkError('EINVAL', `${to} is not a node of DC ${dc}`);
    }
    const service = this.services.serviceAt(dc, endpoint);
    if (!service) {
      throw new DvkError(
        'EOPNOTSUPP',
        `no service of the cluster file serves endpoint ${endpoint}`,
      );
    }
    for (const m of this.coordinated.values()) {
      if (m.dc === dc && m.endpoint === endpoint) {
        throw new DvkError('EBUSY', `endpoint ${endpoint} is moving already`);
      }
    }
    const id = (BigInt(this.self) << 40n) | this.nextId++;
    const m: Coordinated = {
      id,
      dc,
      endpoint,
      generation,
      service,
      source,
      dest,
      awaiting: null,
      committing: false,
    };
    this.coordinated.set(id, m);
    const incarnation = { dc, endpoint, generation };
    const start = performance.now();
    const marks: number[] = [];
    const names = { from: this.router.nameOf(source), to };
    try {
      this.log.debug({ dc, endpoint, ...names }, 'move: asking the destination to prepare');
      this.post(dest, id, Step.PREPARE, { ...incarnation, service, node: source });
      await this.answer(m, [Step.PREPARED], this.options.stepMs);
      marks.push(performance.now());
      this.post(source, id, Step.FREEZE, { ...incarnation, node: dest });
      const ready = await this.answer(m, [Step.READY], this.options.drainMs + this.options.stepMs);
      marks.push(performance.now());
      m.committing = true;
      this.log.debug({ dc, endpoint, ...names }, 'move: asking the destination to commit');
      this.post(dest, id, Step.COMMIT, {});
      const done = await this.answer(m, [Step.DONE], this.options.stepMs);
      this.remember(id, true);
      const end = performance.now();
      const [prepared = start, restored = start] = marks;
      return {
        ...incarnation,
        service,
        from: this.router.nameOf(source),
        to,
        epoch: done.epoch ?? 0,
        stateBytes: ready.stateBytes ?? 0,
        ms: {
          prepare: prepared - start,
          transfer: restored - prepared,
          commit: end - restored,
          total: end - start,
        },
      };
    } catch (err) {
      // Before the commit was asked for, nothing has changed anywhere once both roll back.
      // After it, the destination has decided, and MOVED tells whoever needs to know.
      // Once the commit was asked for, it may have happened: a source that asks is told so.
      this.remember(id, m.committing);
      if (!m.committing) {
        this.post(source, id, Step.ABORT, {});
        this.post(dest, id, Step.ABORT, {});
      }
      throw err;
    } finally {
      this.coordinated.delete(id);
    }
  }

  private remember(id: bigint, committed: boolean): void {
    this.decided.set(id, committed);
    if (this.decided.size > 1024) this.decided.delete(this.decided.keys().next().value as bigint);
  }

  /**
   * A source whose destination went silent after the state left asks whether the commit was
   * asked for. Until then this answer settles it: a move not committing yet never will.
   */
  private onQuery(node: number, id: bigint): void {
    const committed = this.decided.get(id) ?? this.coordinatedCommit(id);
    this.post(node, id, Step.VERDICT, { committed });
  }

  /** Waits for the answer to the step just posted; a FAILED, a timeout or node-down rejects. */
  private answer(m: Coordinated, steps: StepCode[], timeoutMs: number): Promise<Body> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          settle(new DvkError('ETIMEDOUT', `step ${steps.join('/')} took over ${timeoutMs} ms`)),
        timeoutMs,
      );
      const settle = (err: DvkError | null, body: Body = {}) => {
        clearTimeout(timer);
        m.awaiting = null;
        if (err) reject(err);
        else resolve(body);
      };
      m.awaiting = { steps, settle };
    });
  }

  private onAnswer(node: number, id: bigint, step: StepCode, body: Body): void {
    const m = this.coordinated.get(id);
    if (!m?.awaiting || (node !== m.source && node !== m.dest)) return;
    if (step === Step.FAILED) {
      m.awaiting.settle(
        new DvkError(body.code ?? 'EPROTO', `${this.router.nameOf(node)}: ${body.detail ?? ''}`),
      );
    } else if (m.awaiting.steps.includes(step)) {
      m.awaiting.settle(null, body);
    }
  }

  // --- destination ---

  private async onPrepare(node: number, id: bigint, b: Body): Promise<void> {
    const i = incarnationOf(b);
    const service = b.service ?? '';
    const fail = (err: unknown) => this.post(node, id, Step.FAILED, failure(err));
    if (this.services.serviceAt(i.dc, i.endpoint) !== service || b.node === undefined) {
      return fail(
        new DvkError('EINVAL', `service ${service} does not serve endpoint ${i.endpoint}`),
      );
    }
    // Moving back here right after it left: the last move's MOVED may still be on its way.
    const leaving = this.outgoing.get(key(i));
    if (leaving) {
      const timer = new Promise((r) => setTimeout(r, this.options.stepMs));
      await Promise.race([leaving.ended, timer]);
      if (this.outgoing.has(key(i))) {
        return fail(new DvkError('EBUSY', `endpoint ${i.endpoint} is still leaving this node`));
      }
    }
    let instance: MigratableInstance;
    try {
      this.table.checkBind(i.dc, i.endpoint, null);
      instance = this.services.startIncoming(service);
    } catch (err) {
      return fail(err);
    }
    const move: Incoming = {
      ...i,
      id,
      coordinator: node,
      source: b.node,
      service,
      instance,
      binding: undefined,
      pieces: [],
      transferred: false,
      epoch: 0,
      phase: 'preparing',
      timer: undefined,
    };
    this.incoming.set(id, move);
    instance.serving.catch((err: unknown) => this.abortIncoming(move, err));
    // Before the commit, an instance that dies takes the move with it, whatever the phase.
    void instance.exited.then(() =>
      this.abortIncoming(move, new DvkError('ESRCH', 'the incoming instance exited')),
    );
    // Until its instance binds; then until the snapshot is restored; then until the commit.
    this.deadline(move, this.options.stepMs);
  }

  /** The bind of an instance this node started for a move here, if that is what it is. */
  incomingBind(
    dcRef: number | string,
    endpoint: number,
    peer: PeerCredentials | null,
  ): Binding | undefined {
    if (!peer) return undefined;
    if (this.refused.has(peer.pid)) {
      throw new DvkError('ECANCELED', 'the move this instance was started for was rolled back');
    }
    for (const move of this.incoming.values()) {
      if (move.instance.pid !== peer.pid || move.phase !== 'preparing') continue;
      if (this.table.dcIdOf(dcRef) !== move.dc || endpoint !== move.endpoint) {
        throw new DvkError('EINVAL', `this instance takes over endpoint ${move.endpoint} only`);
      }
      move.binding = this.table.bindIncoming(move.dc, move.endpoint, move.generation, peer);
      move.phase = 'prepared';
      this.log.debug(
        { dc: move.dc, endpoint },
        'move here: the incoming instance holds the endpoint',
      );
      this.deadline(move, this.options.drainMs + this.options.stepMs);
      this.post(move.coordinator, move.id, Step.PREPARED, {});
      return move.binding;
    }
    return undefined;
  }

  private onState(node: number, id: bigint, piece: Buffer): void {
    const move = this.incoming.get(id);
    if (move?.phase === 'prepared' && node === move.source) move.pieces.push(Buffer.from(piece));
  }

  private onTransferred(node: number, id: bigint, b: Body): void {
    const move = this.incoming.get(id);
    if (move?.phase !== 'prepared' || node !== move.source) return;
    const state = Buffer.concat(move.pieces.splice(0));
    move.transferred = true;
    move.epoch = (b.epoch ?? 0) + 1;
    this.log.debug(
      { dc: move.dc, endpoint: move.endpoint, stateBytes: state.length },
      'move here: state received; restoring',
    );
    move.instance
      .restore(state, this.table.limits.maxPayload)
      .catch((err: unknown) => this.abortIncoming(move, err));
    move.instance.serving.then(
      () => {
        if (move.phase !== 'prepared') return;
        move.phase = 'ready';
        this.log.debug({ dc: move.dc, endpoint: move.endpoint }, 'move here: restored; ready');
        this.deadline(move, this.options.stepMs);
        this.post(move.coordinator, move.id, Step.READY, { stateBytes: state.length });
      },
      () => {},
    );
  }

  private onCommit(node: number, id: bigint): void {
    const move = this.incoming.get(id);
    if (!move || node !== move.coordinator) return;
    if (move.phase !== 'ready' || !move.binding?.bound) {
      this.post(node, id, Step.FAILED, { code: 'EPROTO', detail: `not ready (${move.phase})` });
      return;
    }
    clearTimeout(move.timer);
    move.phase = 'committed';
    this.incoming.delete(id);
    const b = move.binding;
    b.epoch = move.epoch;
    // Every node that may have calls on their way through the source waits behind its FLUSH;
    // none does if the source is down (it died after the transfer): nothing comes through it
    // any more, and no FLUSH either.
    const sourceUp = this.router.linkState(move.source) !== 'down';
    const origins = sourceUp
      ? [LOCAL_ORIGIN, ...this.peersOf(move.dc).filter((n) => n !== move.source)]
      : [];
    this.table.moveIn(b, origins);
    if (origins.length) this.settling.set(b, move.source);
    this.router.moved(this.self, move.dc, move.endpoint, move.generation, move.epoch);
    this.services.adopt(move.service, move.instance);
    const moved: Body = { ...incarnationOf(move), epoch: move.epoch, node: move.source };
    // Nodes that are down too: MOVED waits in their new stream, behind the SNAPSHOT sent at
    // their verdict (from before the commit), and tells them when they come back.
    for (const peer of this.peersOf(move.dc, true)) this.post(peer, id, Step.MOVED, moved);
    // This node's own calls that went to the source before the commit come back behind this.
    if (sourceUp) this.post(move.source, id, Step.FLUSH, { ...moved, node: this.self });
    this.post(node, id, Step.DONE, { epoch: move.epoch });
    this.log.info(
      {
        dc: move.dc,
        endpoint: move.endpoint,
        from: this.router.nameOf(move.source),
        epoch: move.epoch,
      },
      'endpoint moved here',
    );
  }

  /** Rolls back a move here that has not committed. */
  private abortIncoming(move: Incoming, why: unknown): void {
    if (move.phase === 'committed' || move.phase === 'ended') return;
    move.phase = 'ended';
    clearTimeout(move.timer);
    this.incoming.delete(move.id);
    this.refused.add(move.instance.pid);
    void move.instance.exited.then(() => this.refused.delete(move.instance.pid));
    void move.instance.kill();
    if (move.binding) this.table.dropIncoming(move.binding);
    const body = failure(why);
    this.log.warn({ dc: move.dc, endpoint: move.endpoint, ...body }, 'move here rolled back');
    this.post(move.coordinator, move.id, Step.FAILED, body);
    this.post(move.source, move.id, Step.ABORT, {});
  }

  private deadline(move: Incoming, ms: number): void {
    clearTimeout(move.timer);
    move.timer = setTimeout(
      () => this.abortIncoming(move, new DvkError('ETIMEDOUT', `${move.phase} for over ${ms} ms`)),
      ms,
    );
  }

  // --- source ---

  private async onFreeze(node: number, id: bigint, b: Body): Promise<void> {
    const i = incarnationOf(b);
    const fail = (err: unknown) => this.post(node, id, Step.FAILED, failure(err));
    const binding = this.table.local(i.dc, i.endpoint);
    const service = this.services.serviceAt(i.dc, i.endpoint);
    const instance = service ? this.services.instanceOf(service) : undefined;
    if (!binding || binding.generation !== i.generation || b.node === undefined) {
      return fail(new DvkError('ENOENT', `endpoint ${i.endpoint} is not bound here`));
    }
    if (!instance || binding.peer?.pid !== instance.pid) {
      return fail(
        new DvkError('EOPNOTSUPP', `endpoint ${i.endpoint} is not served by its service here`),
      );
    }
    if (this.outgoing.has(key(i)) || binding.frozen) {
      return fail(new DvkError('EBUSY', `endpoint ${i.endpoint} is moving already`));
    }
    if (this.aborted.has(id)) {
      return fail(new DvkError('ECANCELED', 'this move was rolled back already'));
    }
    let end = () => {};
    const ended = new Promise<void>((resolve) => {
      end = resolve;
    });
    const move: Outgoing = {
      ...i,
      id,
      coordinator: node,
      dest: b.node,
      binding,
      instance,
      phase: 'freezing',
      flushes: [],
      query: undefined,
      ended,
      end,
    };
    this.outgoing.set(key(i), move);
    let state: Uint8Array;
    try {
      // A move here that is still settling first: its held-back calls must not be left behind.
      await waitFor(
        () => binding.fences.size === 0,
        this.options.stepMs,
        new DvkError('EBUSY', 'still settling from a move here'),
      );
      if (move.phase !== 'freezing') return;
      this.log.debug({ ...i, to: this.router.nameOf(move.dest) }, 'move away: freezing');
      this.table.freeze(binding);
      state = await instance.freeze(this.options.drainMs);
      // Its last replies may still be on their way in from its socket.
      await waitFor(
        () => binding.obligations.size === 0,
        this.options.drainMs,
        new DvkError('ETIMEDOUT', 'replies still owed'),
      );
    } catch (err) {
      if (move.phase === 'freezing') {
        this.thaw(move);
        fail(err);
      }
      return;
    }
    if (move.phase !== 'freezing') return;
    move.phase = 'sent';
    const piece = this.table.limits.maxPayload;
    for (let at = 0; at < state.length; at += piece) {
      this.post(move.dest, id, Step.STATE, {}, Buffer.from(state.subarray(at, at + piece)));
    }
    this.post(move.dest, id, Step.TRANSFERRED, { epoch: binding.epoch });
    this.log.debug({ ...i, stateBytes: state.length }, 'move away: state sent');
  }

  /** The move away is over, whichever way. */
  private endOutgoing(move: Outgoing): void {
    move.phase = 'ended';
    clearTimeout(move.query);
    this.outgoing.delete(key(move));
    move.end();
  }

  /** The move away is rolled back: the endpoint serves here again. */
  private thaw(move: Outgoing): void {
    if (move.phase === 'ended') return;
    const wasFrozen = move.binding.frozen;
    this.endOutgoing(move);
    if (wasFrozen) {
      this.table.thaw(move.binding);
      move.instance.resume().catch((err: unknown) => {
        this.log.error({ err, dc: move.dc, endpoint: move.endpoint }, 'cannot resume the service');
      });
    }
    this.log.info({ dc: move.dc, endpoint: move.endpoint }, 'move away rolled back');
  }

  /**
   * The destination went silent after the state left: it may have committed, so this node
   * must not serve again unless the coordinator says the commit was never asked for.
   */
  private askCoordinator(move: Outgoing): void {
    const lost = () => this.lose(move, 'the destination went silent and no verdict came');
    if (move.coordinator === this.self) {
      this.settleQuery(move, this.decided.get(move.id) ?? this.coordinatedCommit(move.id));
      return;
    }
    if (this.router.linkState(move.coordinator) === 'down') return lost();
    this.post(move.coordinator, move.id, Step.QUERY, {});
    clearTimeout(move.query);
    move.query = setTimeout(lost, this.options.stepMs);
  }

  /**
   * Whether a move this node coordinates has asked for its commit; if not, it never will. One
   * it does not know (forgotten) may have: the source must not serve again.
   */
  private coordinatedCommit(id: bigint): boolean {
    const m = this.coordinated.get(id);
    if (!m) return true;
    if (!m.committing) {
      m.awaiting?.settle(new DvkError('EHOSTUNREACH', 'the destination went silent'));
    }
    return m.committing;
  }

  private onVerdict(node: number, id: bigint, b: Body): void {
    for (const out of [...this.outgoing.values()]) {
      if (out.id === id && node === out.coordinator && out.phase === 'sent') {
        this.settleQuery(out, b.committed !== false);
      }
    }
  }

  private settleQuery(move: Outgoing, committed: boolean): void {
    if (!committed) return this.thaw(move);
    this.lose(move, 'the move may have committed on a node that went silent');
  }

  /**
   * This node cannot know whether the move committed: the endpoint must not serve here
   * again (that could make two copies). It ends here; its callers get ESRCH at once.
   */
  private lose(move: Outgoing, why: string): void {
    if (move.phase === 'ended') return;
    this.endOutgoing(move);
    this.log.error({ dc: move.dc, endpoint: move.endpoint }, `endpoint given up here: ${why}`);
    this.table.unbind(move.binding);
    void move.instance.exit();
  }

  private onAbort(node: number, id: bigint): void {
    this.aborted.add(id);
    if (this.aborted.size > 1024) this.aborted.delete(this.aborted.values().next().value as bigint);
    const move = this.incoming.get(id);
    if (move && node === move.coordinator) {
      this.abortIncoming(move, new DvkError('ECANCELED', 'the coordinator rolled back'));
    }
    for (const out of this.outgoing.values()) {
      if (out.id === id && (node === out.coordinator || node === out.dest)) this.thaw(out);
    }
  }

  // --- every node ---

  private onMoved(from: number, id: bigint, b: Body): void {
    const i = incarnationOf(b);
    const epoch = b.epoch ?? 0;
    const node = b.dest ?? from;
    const out = this.outgoing.get(key(i));
    if (out && (out.id !== id || out.dest !== node)) {
      this.log.error({ ...i, node }, 'MOVED from a node this endpoint was not moving to');
      return;
    }
    if (!this.router.moved(node, i.dc, i.endpoint, i.generation, epoch)) return;
    const stale = this.table.local(i.dc, i.endpoint);
    if (out) {
      this.endOutgoing(out);
      this.table.moveOut(out.binding, node);
      // Passed on to the other nodes too: should the destination die right after it
      // committed, no node must keep routing to this one as if the endpoint were still here.
      for (const peer of this.peersOf(i.dc, true)) {
        if (peer !== node) this.post(peer, id, Step.MOVED, { ...b, dest: node });
      }
      void out.instance.exit();
      for (const origin of out.flushes) {
        this.post(node, id, Step.FLUSH, { ...i, epoch, node: origin });
      }
      this.log.info({ ...i, to: this.router.nameOf(node), epoch }, 'endpoint moved away');
    } else if (stale?.generation === i.generation) {
      // It moved on while this node still served it: the move stands, this copy goes.
      this.log.error({ ...i, to: this.router.nameOf(node), epoch }, 'a stale copy retired');
      this.table.moveOut(stale, node);
      const service = this.services.serviceAt(i.dc, i.endpoint);
      const instance = service ? this.services.instanceOf(service) : undefined;
      if (instance?.pid === stale.peer?.pid) void instance?.exit();
    } else if (b.node !== undefined && b.node !== this.self) {
      // Whatever this node sent to the old place is ahead of this mark.
      this.post(b.node, id, Step.FLUSH, { ...i, epoch, node: this.self });
    }
  }

  private onFlush(id: bigint, b: Body): void {
    const i = incarnationOf(b);
    const origin = b.node ?? 0;
    const here = this.table.local(i.dc, i.endpoint);
    if (here?.generation === i.generation && here.epoch === b.epoch) {
      this.table.liftFence(here, origin === this.self ? LOCAL_ORIGIN : origin);
      if (!here.fences.size) this.settling.delete(here);
      return;
    }
    const out = this.outgoing.get(key(i));
    if (out) {
      out.flushes.push(origin);
      return;
    }
    const onward = this.onwardOf(i);
    if (onward !== undefined) this.post(onward, id, Step.FLUSH, b);
  }

  /**
   * Where calls for an incarnation that moved away from here go now: the way the remote routes
   * send them (so a FLUSH mark travels behind them), or the tombstone's node.
   */
  private onwardOf(i: Incarnation): number | undefined {
    const moved = this.table.movedTo(i.dc, i.endpoint);
    if (moved?.generation !== i.generation) return undefined;
    const where = this.router.where(i.dc, i.endpoint);
    return where?.generation === i.generation ? where.node : moved.node;
  }

  nodeDown(node: number): void {
    for (const m of this.coordinated.values()) {
      // Once the source was asked to freeze, whether the move can go on without it is the
      // destination's to say (READY or FAILED): it commits if the state reached it.
      const beforeFreeze = m.awaiting?.steps.includes(Step.PREPARED) ?? false;
      if (node === m.dest || (node === m.source && beforeFreeze)) {
        m.awaiting?.settle(
          new DvkError('EHOSTUNREACH', `node ${this.router.nameOf(node)} is down`),
        );
      }
    }
    // A source down before its end mark came takes the endpoint with it; a coordinator down
    // can no longer ask for the commit (nothing it sent is delivered after the verdict).
    for (const move of [...this.incoming.values()]) {
      if ((node === move.source && !move.transferred) || node === move.coordinator) {
        this.abortIncoming(
          move,
          new DvkError('EHOSTUNREACH', `node ${this.router.nameOf(node)} is down`),
        );
      }
    }
    for (const out of [...this.outgoing.values()]) {
      if (node !== out.dest) continue;
      // Before the state left, nothing can have committed; after, only the coordinator knows.
      if (out.phase === 'freezing') this.thaw(out);
      else this.askCoordinator(out);
    }
    // The node's calls to incarnations that moved away from here come no more: tell their new
    // places, behind whatever was forwarded for it, so they stop holding its calls back.
    if (this.table.tombstones().length) {
      for (const t of this.table.tombstones()) {
        const onward = this.onwardOf(t);
        if (onward === undefined || onward === node) continue;
        this.post(onward, 0n, Step.FLUSH, { ...incarnationOf(t), epoch: t.epoch, node });
      }
    }
    // Fences: calls from a node that is down end; calls through a source that is down are
    // lost with it (their callers hear so from their own node), so nothing more is waited for.
    for (const [b, source] of [...this.settling]) {
      if (node === source) {
        for (const origin of [...b.fences.keys()]) this.table.liftFence(b, origin);
      } else {
        this.table.dropFence(b, node, new DvkError('EHOSTUNREACH', 'the calling node is down'));
      }
      if (!b.fences.size || !b.bound) this.settling.delete(b);
    }
  }

  // --- records ---

  onRecord(node: number, r: RemoteRecord): void {
    const step = r.type as StepCode;
    if (step === Step.STATE) return this.onState(node, r.id, r.payload);
    const body = JSON.parse(r.payload.toString('utf8')) as Body;
    switch (step) {
      case Step.PREPARE:
        return void this.onPrepare(node, r.id, body);
      case Step.FREEZE:
        return void this.onFreeze(node, r.id, body);
      case Step.TRANSFERRED:
        return this.onTransferred(node, r.id, body);
      case Step.COMMIT:
        return this.onCommit(node, r.id);
      case Step.ABORT:
        return this.onAbort(node, r.id);
      case Step.MOVED:
        return this.onMoved(node, r.id, body);
      case Step.FLUSH:
        return this.onFlush(r.id, body);
      case Step.QUERY:
        return this.onQuery(node, r.id);
      case Step.VERDICT:
        return this.onVerdict(node, r.id, body);
      case Step.PREPARED:
      case Step.READY:
      case Step.DONE:
      case Step.FAILED:
        return this.onAnswer(node, r.id, step, body);
      default:
        throw new Error(`unknown migration step ${r.type}`);
    }
  }

  /** Sends a step to a node; to this node itself, it is handled next, as if it came in. */
  private post(node: number, id: bigint, step: StepCode, body: Body, raw?: Buffer): void {
    const r = record({
      kind: Record.MIGRATE,
      type: step,
      id,
      payload: raw ?? Buffer.from(JSON.stringify(body)),
    });
    if (node !== this.self) return this.router.send(node, r);
    queueMicrotask(() => {
      try {
        this.onRecord(node, r);
      } catch (err) {
        this.log.error({ err, step }, 'handling a migration step failed');
      }
    });
  }

  /** The other nodes of a DC that are not down (or all of them, with `down`). */
  private peersOf(dc: number, down = false): number[] {
    const names = this.router.directory.dc(dc)?.nodes ?? [];
    return this.router.directory
      .nodes()
      .filter((n) => n.id !== this.self && names.includes(n.name))
      .map((n) => n.id)
      .filter((n) => down || this.router.linkState(n) !== 'down');
  }
}

function incarnationOf(b: Body): Incarnation {
  return { dc: b.dc ?? 0, endpoint: b.endpoint ?? 0, generation: b.generation ?? 0 };
}

function failure(err: unknown): Body {
  if (isDvkError(err)) return { code: err.code, detail: err.detail };
  return { code: 'EPROTO', detail: err instanceof Error ? err.message : String(err) };
}

/** Polls until `done` holds; after `timeoutMs`, throws `err` instead. */
async function waitFor(done: () => boolean, timeoutMs: number, err: DvkError): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!done()) {
    if (performance.now() > until) throw err;
    await new Promise((r) => setTimeout(r, 2));
  }
}
