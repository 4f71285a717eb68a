/**
 * The agent's side of DVK services (lib/service): each instance is a child process of the
 * agent (lib/service/host.ts) that binds its endpoint through the agent's socket, and the
 * agent steers it over the process's IPC channel: freeze for a snapshot, resume, restore a
 * snapshot into an incoming instance, exit. Instances die with their agent: `stopAll` ends
 * them when it stops, and an instance whose agent vanishes exits when its channel closes.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { DvkError } from '../errors.js';
import { ServiceEnv } from '../service/host-env.js';
import type { ControlFromInstance, ControlToInstance } from '../service/runtime.js';

const HOST = fileURLToPath(new URL('../service/host.js', import.meta.url));

/** How long an instance asked to exit has before it is killed. */
export const EXIT_GRACE_MS = 2_000;

/** What to run: a service's module on one endpoint. */
export interface ServiceSpec {
  /** The service's name (the cluster file's key): logs and errors name it. */
  readonly name: string;
  /** The module whose default export is the service; an absolute path. */
  readonly module: string;
  /** The DC, by name. */
  readonly dc: string;
  readonly endpoint: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A freeze waiting for its snapshot. */
interface Freeze {
  id: number;
  resolve(state: Uint8Array): void;
  reject(err: DvkError): void;
}

/** One running instance of a service: a child process of the agent. */
export class ServiceInstance {
  readonly pid: number;
  /**
   * The endpoint's generation once the instance serves (bound, and restored if incoming).
   * Rejects with ESRCH if the instance fails or exits first.
   */
  readonly serving: Promise<number>;
  /** Settles when the process has exited, whoever ended it. */
  readonly exited: Promise<ExitStatus>;
  private ended: ExitStatus | undefined;
  /** exit() or kill() was asked: the end is expected, not a death to report as an error. */
  private ending = false;
  private freezing: Freeze | undefined;
  private nextFreeze = 1;
  private failure: string | undefined;
  private markServing: (generation: number) => void = () => {};
  private failServing: (err: DvkError) => void = () => {};

  constructor(
    private readonly child: ChildProcess,
    readonly spec: ServiceSpec,
    private readonly log: Logger,
  ) {
    this.pid = child.pid ?? 0;
    this.serving = new Promise<number>((resolve, reject) => {
      this.markServing = resolve;
      this.failServing = reject;
    });
    // Nobody may be waiting for it (an agent starting its services only logs).
    this.serving.catch(() => {});
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.onExit({ code, signal });
        resolve({ code, signal });
      });
    });
    child.on('message', (m) => this.onMessage(m as ControlFromInstance));
    // A send on a channel that closed meanwhile: the exit that follows says what happened.
    child.on('error', (err) => this.log.debug({ err }, 'service instance channel error'));
  }

  /** `service name (dc/endpoint)`, for errors. */
  private get label(): string {
    return `service ${this.spec.name} (${this.spec.dc}/${this.spec.endpoint})`;
  }

  /** Whether the process is still there. */
  get running(): boolean {
    return this.ended === undefined;
  }

  /**
   * Asks the instance to stop taking messages and snapshot its state once its running handler
   * has finished; the snapshot. The instance stays frozen until `resume()` (or `exit()`).
   * Rejects with ETIMEDOUT if no snapshot comes within `timeoutMs` (a handler still running:
   * the instance stays frozen, and the late snapshot is dropped), with ESRCH if the instance
   * exits, with ECANCELED if `resume()` withdraws the freeze, and with EINVAL while another
   * freeze waits.
   */
  freeze(timeoutMs: number): Promise<Uint8Array> {
    if (this.freezing) {
      return Promise.reject(new DvkError('EINVAL', `${this.label}: a freeze is already waiting`));
    }
    if (this.ended) return Promise.reject(this.exitedError());
    const id = this.nextFreeze++;
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        settle();
        reject(
          new DvkError(
            'ETIMEDOUT',
            `${this.label}: no snapshot within ${timeoutMs} ms (is a handler still running?)`,
          ),
        );
      }, timeoutMs);
      const settle = () => {
        clearTimeout(timer);
        if (this.freezing?.id === id) this.freezing = undefined;
      };
      const freeze: Freeze = {
        id,
        resolve: (state) => {
          settle();
          resolve(state);
        },
        reject: (err) => {
          settle();
          reject(err);
        },
      };
      this.freezing = freeze;
      this.post({ op: 'freeze', id }).catch((err: DvkError) => freeze.reject(err));
    });
  }

  /**
   * Lets a frozen instance take messages again (a move rolled back); a freeze still waiting
   * for its snapshot is withdrawn (ECANCELED). Rejects with ESRCH if the instance has exited.
   */
  async resume(): Promise<void> {
    this.freezing?.reject(new DvkError('ECANCELED', `${this.label}: resumed before the snapshot`));
    await this.post({ op: 'resume' });
  }

  /**
   * Hands an incoming instance the snapshot to restore, in pieces of at most `pieceSize`
   * bytes (as the links carry them); resolves once every piece is on the channel. The
   * instance reports serving once it has restored.
   */
  async restore(state: Uint8Array, pieceSize: number): Promise<void> {
    if (!Number.isInteger(pieceSize) || pieceSize < 1) {
      throw new DvkError('EINVAL', `${this.label}: pieceSize must be a positive integer`);
    }
    let offset = 0;
    do {
      const piece = state.subarray(offset, offset + pieceSize);
      offset += piece.byteLength;
      await this.post({ op: 'restore', piece, last: offset >= state.byteLength });
    } while (offset < state.byteLength);
  }

  /**
   * Asks the instance to exit (it closes its endpoint and ends) and kills it with SIGKILL if
   * it has not exited after `graceMs`; how it exited.
   */
  async exit(graceMs = EXIT_GRACE_MS): Promise<ExitStatus> {
    if (this.ended) return this.ended;
    this.ending = true;
    const sent = await this.post({ op: 'exit' }).then(
      () => true,
      () => false,
    );
    if (!sent) return this.kill();
    const timer = setTimeout(() => {
      this.log.warn({ graceMs }, 'service instance did not exit when asked; killing it');
      this.child.kill('SIGKILL');
    }, graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills the instance (SIGKILL); how it exited. */
  kill(): Promise<ExitStatus> {
    if (!this.ended) {
      this.ending = true;
      this.child.kill('SIGKILL');
    }
    return this.exited;
  }

  private post(message: ControlToInstance): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.ended || !this.child.connected) {
        reject(this.exitedError());
        return;
      }
      this.child.send(message, (err) => (err ? reject(this.exitedError()) : resolve()));
    });
  }

  private onMessage(m: ControlFromInstance): void {
    switch (m?.op) {
      case 'serving':
        this.log.info({ generation: m.generation }, 'service serving');
        this.markServing(m.generation);
        return;
      case 'snapshot':
        if (this.freezing?.id === m.id && m.state instanceof Uint8Array) {
          this.freezing.resolve(m.state);
        } else {
          this.log.debug({ freeze: m.id }, 'late snapshot dropped: its freeze was given up');
        }
        return;
      case 'failed':
        this.failure = String(m.reason);
        this.log.error({ reason: this.failure }, 'service failed');
        this.failServing(new DvkError('ESRCH', `${this.label} failed: ${firstLine(m.reason)}`));
        return;
      default:
        this.log.warn({ message: m }, 'unknown message from a service instance; ignored');
    }
  }

  private onExit(status: ExitStatus): void {
    this.ended = status;
    const err = this.exitedError();
    this.failServing(err);
    this.freezing?.reject(err);
    if (this.ending) this.log.info(status, 'service instance exited');
    else this.log.error(status, 'service instance died');
  }

  private exitedError(): DvkError {
    if (this.failure) {
      return new DvkError('ESRCH', `${this.label} failed: ${firstLine(this.failure)}`);
    }
    const how = this.ended
      ? this.ended.signal
        ? `was killed by ${this.ended.signal}`
        : `exited with code ${this.ended.code}`
      : 'has closed its channel';
    return new DvkError('ESRCH', `${this.label} ${how}`);
  }
}

/** The instances one agent runs; they end when it stops. */
export class ServiceInstances {
  private readonly live = new Set<ServiceInstance>();

  /**
   * @param socketPath the agent's socket, where instances bind
   * @param log the agent's logger; each instance logs through a child naming its service
   */
  constructor(
    private readonly socketPath: string,
    private readonly log: Logger,
  ) {}

  /** The instances whose processes have not exited. */
  get instances(): readonly ServiceInstance[] {
    return [...this.live];
  }

  /**
   * Starts an instance of `spec`. An incoming one binds and then waits for `restore` before it
   * serves; any other starts from the service's init(). Throws (EAGAIN) if the process cannot
   * be started at all.
   */
  start(spec: ServiceSpec, options: { incoming?: boolean } = {}): ServiceInstance {
    const incoming = options.incoming ?? false;
    const child = fork(HOST, [], {
      serialization: 'advanced',
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
      env: {
        ...process.env,
        [ServiceEnv.MODULE]: spec.module,
        [ServiceEnv.DC]: spec.dc,
        [ServiceEnv.ENDPOINT]: String(spec.endpoint),
        [ServiceEnv.SOCKET]: this.socketPath,
        [ServiceEnv.INCOMING]: incoming ? '1' : '0',
      },
    });
    if (child.pid === undefined) {
      // The spawn failed; its 'error' follows on the next tick and says no more than this.
      child.once('error', () => {});
      throw new DvkError('EAGAIN', `service ${spec.name}: cannot start a process for it`);
    }
    const log = this.log.child({
      service: spec.name,
      dc: spec.dc,
      endpoint: spec.endpoint,
      instancePid: child.pid,
      ...(incoming ? { incoming } : {}),
    });
    log.info({ module: spec.module }, 'service instance started');
    const instance = new ServiceInstance(child, spec, log);
    this.live.add(instance);
    void instance.exited.then(() => this.live.delete(instance));
    return instance;
  }

  /** Ends every instance: asks each to exit, and kills those that do not within `graceMs`. */
  async stopAll(graceMs = EXIT_GRACE_MS): Promise<void> {
    await Promise.all([...this.live].map((i) => i.exit(graceMs)));
  }
}

function firstLine(text: string): string {
  return String(text).split('\n', 1)[0] ?? '';
}
