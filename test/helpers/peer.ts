/**
 * The test side of peer-main: fork a DVK process, bind it, make it call, kill it.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type {
  CallOptions,
  EndpointAddress,
  Message,
  OutgoingMessage,
  Target,
} from '../../lib/index.js';

type Method = 'send' | 'sendrec' | 'receive' | 'notify' | 'reply';
type Options = Omit<CallOptions, 'signal'> & { from?: Target };

export type PeerCommand =
  | {
      cmd: 'bind';
      id: number;
      socketPath: string | undefined;
      dc: number | string;
      endpoint: number;
    }
  | { cmd: 'serve'; id: number; mode: 'echo' | 'hold' | 'count' }
  | { cmd: 'call'; id: number; method: Method; args: unknown[]; options?: Options }
  | { cmd: 'abort'; id: number; target: number }
  | { cmd: 'close'; id: number };

export interface PeerError {
  code: string;
  message: string;
  endpoint?: number | undefined;
}

export type PeerReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: PeerError }
  | { event: 'ready' }
  | { event: 'request'; source: number; type: number; payload: Buffer }
  | { event: 'serve-error'; error: PeerError };

/** A call's outcome inside the peer: its value, or the DvkError's code and message. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: PeerError };

const main = fileURLToPath(new URL('./peer-main.js', import.meta.url));

export class Peer {
  readonly child: ChildProcess;
  private bound: EndpointAddress | undefined;
  /** Requests a serving peer has seen, in order. */
  readonly requests: { source: number; type: number; payload: Buffer }[] = [];
  readonly serveErrors: PeerError[] = [];
  private nextId = 1;
  private readonly waiting = new Map<number, (r: Outcome<unknown>) => void>();
  private readonly exited: Promise<unknown>;

  private constructor(child: ChildProcess) {
    this.child = child;
    this.exited = once(child, 'exit');
    child.on('message', (m: PeerReply) => {
      if ('id' in m) {
        const done = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        done?.(m.ok ? { ok: true, value: m.value } : { ok: false, error: m.error });
      } else if (m.event === 'request') this.requests.push(m);
      else if (m.event === 'serve-error') this.serveErrors.push(m.error);
    });
    child.on('exit', () => {
      for (const done of this.waiting.values()) {
        done({ ok: false, error: { code: 'PEER_EXITED', message: 'peer process exited' } });
      }
      this.waiting.clear();
    });
  }

  /** Forks a peer process and waits until it is ready for commands. */
  static async start(): Promise<Peer> {
    const child = fork(main, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const peer = new Peer(child);
    await new Promise<void>((resolve, reject) => {
      child.on('message', (m: PeerReply) => {
        if ('event' in m && m.event === 'ready') resolve();
      });
      child.once('exit', (code) => reject(new Error(`peer exited early (${code})`)));
    });
    return peer;
  }

  /** The endpoint the peer bound. */
  get address(): EndpointAddress {
    if (!this.bound) throw new Error('peer is not bound');
    return this.bound;
  }

  get pid(): number {
    return this.child.pid as number;
  }

  private command<T>(cmd: PeerCommand): { id: number; outcome: Promise<Outcome<T>> } {
    const outcome = new Promise<Outcome<T>>((resolve) =>
      this.waiting.set(cmd.id, resolve as (r: Outcome<unknown>) => void),
    );
    this.child.send(cmd);
    return { id: cmd.id, outcome };
  }

  private async must<T>(cmd: PeerCommand): Promise<T> {
    const r = await this.command<T>(cmd).outcome;
    if (!r.ok) throw new Error(`peer ${cmd.cmd} failed: ${r.error.code} ${r.error.message}`);
    return r.value;
  }

  /** Binds in the peer, through the agent at `socketPath`, or dvk.ko if it is undefined. */
  async bind(
    socketPath: string | undefined,
    dc: number | string,
    endpoint: number,
  ): Promise<EndpointAddress> {
    this.bound = await this.must<EndpointAddress>({
      cmd: 'bind',
      id: this.nextId++,
      socketPath,
      dc,
      endpoint,
    });
    return this.bound;
  }

  /** Starts a server loop in the peer. */
  serve(mode: 'echo' | 'hold' | 'count' = 'echo'): Promise<null> {
    return this.must<null>({ cmd: 'serve', id: this.nextId++, mode });
  }

  /** Starts a call in the peer; `outcome` settles with its result. `id` can be aborted. */
  start<T = unknown>(method: Method, args: unknown[], options?: Options) {
    return this.command<T>({
      cmd: 'call',
      id: this.nextId++,
      method,
      args,
      ...(options ? { options } : {}),
    });
  }

  call<T = unknown>(method: Method, args: unknown[], options?: Options): Promise<Outcome<T>> {
    return this.start<T>(method, args, options).outcome;
  }

  sendrec(dst: Target, message: OutgoingMessage, options?: Options): Promise<Outcome<Message>> {
    return this.call<Message>('sendrec', [dst, message], options);
  }

  send(dst: Target, message: OutgoingMessage, options?: Options): Promise<Outcome<null>> {
    return this.call<null>('send', [dst, message], options);
  }

  receive(options?: Options): Promise<Outcome<Message>> {
    return this.call<Message>('receive', [], options);
  }

  abort(callId: number): Promise<null> {
    return this.must<null>({ cmd: 'abort', id: this.nextId++, target: callId });
  }

  close(): Promise<null> {
    return this.must<null>({ cmd: 'close', id: this.nextId++ });
  }

  /** kill -9, and wait until the process is gone. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}
