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
} as const;
type StepCode = (typeof Step)[keyof typeof Step];

/** An instance of a service, as migration drives it (lib/agent/services.ts). */
export interface MigratableInstance {
  readonly pid: number;
  /** Resolves once the instance serves (for an incoming one, once it has restored). */
  readonly serving: Promise<number>;
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
}

const key = (i: Incarnation) => `${i.dc}:${i.endpoint}:${i.generation}`;

export class Migrations {
  private readonly coordinated = new Map<bigint, Coordinated>();
  private readonly incoming = new Map<bigint, Incoming>();
  /** Moves away from here, by incarnation. */
  private readonly outgoing = new Map<string, Outgoing>();
  /** Bindings that moved here and still have fences, with the node they came from. */
  private readonly settling = new Map<Binding, number>();
  private nextId = 1n;

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
    try {
      this.post(dest, id, Step.PREPARE, { ...incarnation, service, node: source });
      await this.answer(m, [Step.PREPARED], this.options.stepMs);
      marks.push(performance.now());
      this.post(source, id, Step.FREEZE, { ...incarnation, node: dest });
      const ready = await this.answer(m, [Step.READY], this.options.drainMs + this.options.stepMs);
      marks.push(performance.now());
      m.committing = true;
      this.post(dest, id, Step.COMMIT, {});
      const done = await this.answer(m, [Step.DONE], this.options.stepMs);
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
      if (!m.committing) {
        this.post(source, id, Step.ABORT, {});
        this.post(dest, id, Step.ABORT, {});
      }
      throw err;
    } finally {
      this.coordinated.delete(id);
    }
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

  private onPrepare(node: number, id: bigint, b: Body): void {
    const i = incarnationOf(b);
    const service = b.service ?? '';
    const fail = (err: unknown) => this.post(node, id, Step.FAILED, failure(err));
    if (this.services.serviceAt(i.dc, i.endpoint) !== service || b.node === undefined) {
      return fail(
        new DvkError('EINVAL', `service ${service} does not serve endpoint ${i.endpoint}`),
      );
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
      epoch: 0,
      phase: 'preparing',
      timer: undefined,
    };
    this.incoming.set(id, move);
    instance.serving.catch((err: unknown) => this.abortIncoming(move, err));
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
    for (const move of this.incoming.values()) {
      if (move.instance.pid !== peer.pid || move.phase !== 'preparing') continue;
      if (this.table.dcIdOf(dcRef) !== move.dc || endpoint !== move.endpoint) {
        throw new DvkError('EINVAL', `this instance takes over endpoint ${move.endpoint} only`);
      }
      move.binding = this.table.bindIncoming(move.dc, move.endpoint, move.generation, peer);
      move.phase = 'prepared';
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
    move.epoch = (b.epoch ?? 0) + 1;
    move.instance
      .restore(state, this.table.limits.maxPayload)
      .catch((err: unknown) => this.abortIncoming(move, err));
    move.instance.serving.then(
      () => {
        if (move.phase !== 'prepared') return;
        move.phase = 'ready';
        this.deadline(move, this.options.stepMs);
        this.post(move.coordinator, move.id, Step.READY, { stateBytes: state.length });
      },
      () => {},
    );
  }

  private onCommit(node: number, id: bigint): void {
    const move = this.incoming.get(id);
    if (!move || node !== move.coordinator) return;
    if (move.phase !== 'ready' || !move.binding) {
      this.post(node, id, Step.FAILED, { code: 'EPROTO', detail: `not ready (${move.phase})` });
      return;
    }
    clearTimeout(move.timer);
    move.phase = 'committed';
    this.incoming.delete(id);
    const b = move.binding;
    b.epoch = move.epoch;
    // Every node that may have calls on their way through the source waits behind its FLUSH.
    const origins = [LOCAL_ORIGIN, ...this.peersOf(move.dc).filter((n) => n !== move.source)];
    this.table.moveIn(b, origins);
    this.settling.set(b, move.source);
    this.router.moved(this.self, move.dc, move.endpoint, move.generation, move.epoch);
    this.services.adopt(move.service, move.instance);
    const moved: Body = { ...incarnationOf(move), epoch: move.epoch, node: move.source };
    for (const peer of this.peersOf(move.dc)) this.post(peer, id, Step.MOVED, moved);
    // This node's own calls that went to the source before the commit come back behind this.
    this.post(move.source, id, Step.FLUSH, { ...moved, node: this.self });
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
    const move: Outgoing = {
      ...i,
      id,
      coordinator: node,
      dest: b.node,
      binding,
      instance,
      phase: 'freezing',
      flushes: [],
    };
    this.outgoing.set(key(i), move);
    let state: Uint8Array;
    try {
      // A move here that is still settling first: its held-back calls must not be left behind.
      await settled(binding, this.options.stepMs);
      if (move.phase !== 'freezing') return;
      this.table.freeze(binding);
      state = await instance.freeze(this.options.drainMs);
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
  }

  /** The move away is rolled back: the endpoint serves here again. */
  private thaw(move: Outgoing): void {
    if (move.phase === 'ended') return;
    const wasFrozen = move.binding.frozen;
    move.phase = 'ended';
    this.outgoing.delete(key(move));
    if (wasFrozen) {
      this.table.thaw(move.binding);
      move.instance.resume().catch((err: unknown) => {
        this.log.error({ err, dc: move.dc, endpoint: move.endpoint }, 'cannot resume the service');
      });
    }
    this.log.info({ dc: move.dc, endpoint: move.endpoint }, 'move away rolled back');
  }

  private onAbort(node: number, id: bigint): void {
    const move = this.incoming.get(id);
    if (move && node === move.coordinator) {
      this.abortIncoming(move, new DvkError('ECANCELED', 'the coordinator rolled back'));
    }
    for (const out of this.outgoing.values()) {
      if (out.id === id && (node === out.coordinator || node === out.dest)) this.thaw(out);
    }
  }

  // --- every node ---

  private onMoved(node: number, id: bigint, b: Body): void {
    const i = incarnationOf(b);
    const epoch = b.epoch ?? 0;
    const out = this.outgoing.get(key(i));
    if (out && (out.id !== id || out.dest !== node)) {
      this.log.error({ ...i, node }, 'MOVED from a node this endpoint was not moving to');
      return;
    }
    if (!this.router.moved(node, i.dc, i.endpoint, i.generation, epoch)) return;
    if (out) {
      out.phase = 'ended';
      this.outgoing.delete(key(i));
      this.table.moveOut(out.binding, node);
      void out.instance.exit();
      for (const origin of out.flushes)
        this.post(node, id, Step.FLUSH, { ...i, epoch, node: origin });
      this.log.info({ ...i, to: this.router.nameOf(node), epoch }, 'endpoint moved away');
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
    const moved = this.table.movedTo(i.dc, i.endpoint);
    if (moved?.generation === i.generation) this.post(moved.node, id, Step.FLUSH, b);
  }

  nodeDown(node: number): void {
    for (const m of this.coordinated.values()) {
      if (node === m.source || node === m.dest) {
        m.awaiting?.settle(
          new DvkError('EHOSTUNREACH', `node ${this.router.nameOf(node)} is down`),
        );
      }
    }
    for (const move of [...this.incoming.values()]) {
      if (node === move.source || (node === move.coordinator && move.phase !== 'ready')) {
        this.abortIncoming(
          move,
          new DvkError('EHOSTUNREACH', `node ${this.router.nameOf(node)} is down`),
        );
      }
    }
    for (const out of [...this.outgoing.values()]) if (node === out.dest) this.thaw(out);
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
        return this.onPrepare(node, r.id, body);
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

  /** The other nodes of a DC that are not down. */
  private peersOf(dc: number): number[] {
    const names = this.router.directory.dc(dc)?.nodes ?? [];
    return this.router.directory
      .nodes()
      .filter((n) => n.id !== this.self && names.includes(n.name))
      .map((n) => n.id)
      .filter((n) => this.router.linkState(n) !== 'down');
  }
}

function incarnationOf(b: Body): Incarnation {
  return { dc: b.dc ?? 0, endpoint: b.endpoint ?? 0, generation: b.generation ?? 0 };
}

function failure(err: unknown): Body {
  if (isDvkError(err)) return { code: err.code, detail: err.detail };
  return { code: 'EPROTO', detail: err instanceof Error ? err.message : String(err) };
}

/** Waits until a binding that moved here has no fence left (bounded). */
async function settled(b: Binding, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (b.fences.size > 0) {
    if (performance.now() > until) throw new DvkError('EBUSY', 'still settling from a move here');
    await new Promise((r) => setTimeout(r, 5));
  }
}
