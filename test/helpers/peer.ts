/**
 * The test side of peer-main: fork a DVK process, bind it, make it call, kill it.
 *
 * A peer runs on this node (a child process, over Node's IPC channel) or on another node (a
 * child of the peer host there, test/helpers/peer-host.ts, over TCP): `Peer.start()` or
 * `Peer.start({ host: '10.10.0.2:7200' })`. Both transports carry the same commands and
 * replies with the same serialization (v8's, so Buffers and bigints cross intact), and Peer
 * behaves the same over either.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { deserialize, serialize } from 'node:v8';
import type {
  CallOptions,
  EndpointAddress,
  Message,
  NodeStatus,
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

/** What a serving peer reports of each request, or plain message, it takes. */
export interface Seen {
  source: number;
  type: number;
  payload: Buffer;
}

export type PeerReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: PeerError }
  | { event: 'ready' }
  | ({ event: 'request' } & Seen)
  | ({ event: 'message' } & Seen)
  | { event: 'serve-error'; error: PeerError };

/** A call's outcome inside the peer: its value, or the DvkError's code and message. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: PeerError };

export interface PeerStartOptions {
  /** host:port of a peer host (test/helpers/peer-host.ts): the peer runs on that node. */
  host?: string;
}

const main = fileURLToPath(new URL('./peer-main.js', import.meta.url));

/** What a transport tells its Peer. */
interface TransportEvents {
  message(m: PeerReply): void;
  /** The peer process is gone (or, remotely, can no longer be reached); called once. */
  exit(why: string): void;
}

/** How a Peer reaches its process. */
interface PeerTransport {
  /** The process id, on the node it runs on. */
  readonly pid: number;
  send(command: PeerCommand): void;
  /** SIGKILL; `exit` follows once the process is gone. */
  kill(): void;
}

/** A child process of this one, over Node's IPC channel. */
class ChildTransport implements PeerTransport {
  private readonly child: ChildProcess;

  constructor(events: TransportEvents) {
    this.child = fork(main, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (m: PeerReply) => events.message(m));
    this.child.on('exit', (code, signal) => events.exit(`peer exited (${code ?? signal})`));
  }

  get pid(): number {
    return this.child.pid as number;
  }

  send(command: PeerCommand): void {
    this.child.send(command);
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

// --- the peer host's protocol: one v8-serialized value per frame, after its u32 BE length ---

/** What a test sends a peer host. The first frame of a connection is `start` or `status`. */
export type HostRequest =
  /** Fork a peer for this connection; it is killed when the connection closes. */
  | { op: 'start' }
  | { op: 'command'; command: PeerCommand }
  | { op: 'kill' }
  /** That node's status: the agent at `socketPath`, or dvk.ko if it is undefined. */
  | { op: 'status'; socketPath: string | undefined };

export type HostReply =
  | { op: 'started'; pid: number }
  | { op: 'message'; message: PeerReply }
  | { op: 'exit'; code: number | null; signal: string | null }
  | { op: 'status'; ok: true; status: NodeStatus }
  | { op: 'status'; ok: false; error: string };

export function writeFrame(socket: Socket, value: HostRequest | HostReply): void {
  const body = serialize(value);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  socket.write(Buffer.concat([head, body]));
}

/** Calls `handle` with each value that arrives on `socket`, in order. */
export function readFrames<T>(socket: Socket, handle: (value: T) => void): void {
  let pending: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 4) {
      const length = pending.readUInt32BE(0);
      if (pending.length < 4 + length) break;
      const value = deserialize(pending.subarray(4, 4 + length)) as T;
      pending = pending.subarray(4 + length);
      handle(value);
    }
  });
}

function splitHost(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(':');
  return {
    host: address.slice(0, at).replace(/^\[|\]$/g, ''),
    port: Number(address.slice(at + 1)),
  };
}

/** A child of the peer host at `address`, over one TCP connection. */
class RemoteTransport implements PeerTransport {
  private readonly socket: Socket;
  private remotePid = 0;
  private gone = false;

  constructor(address: string, events: TransportEvents) {
    const exit = (why: string) => {
      if (this.gone) return;
      this.gone = true;
      this.socket.destroy();
      events.exit(why);
    };
    this.socket = connect(splitHost(address));
    this.socket.setNoDelay(true);
    readFrames<HostReply>(this.socket, (r) => {
      if (r.op === 'started') this.remotePid = r.pid;
      else if (r.op === 'message') events.message(r.message);
      else if (r.op === 'exit') exit(`peer exited (${r.code ?? r.signal})`);
    });
    this.socket.on('error', (err) => exit(`peer host ${address}: ${err.message}`));
    this.socket.on('close', () => exit(`peer host ${address} closed the connection`));
    writeFrame(this.socket, { op: 'start' });
  }

  get pid(): number {
    return this.remotePid;
  }

  send(command: PeerCommand): void {
    if (!this.gone) writeFrame(this.socket, { op: 'command', command });
  }

  kill(): void {
    if (!this.gone) writeFrame(this.socket, { op: 'kill' });
  }
}

/** The status of the node the peer host at `address` runs on (see HostRequest). */
export function peerHostStatus(
  address: string,
  socketPath: string | undefined,
): Promise<NodeStatus> {
  return new Promise((resolve, reject) => {
    const socket = connect(splitHost(address));
    socket.setNoDelay(true);
    readFrames<HostReply>(socket, (r) => {
      socket.destroy();
      if (r.op === 'status' && r.ok) resolve(r.status);
      else reject(new Error(`peer host ${address}: ${r.op === 'status' ? r.error : r.op}`));
    });
    socket.on('error', (err) => reject(new Error(`peer host ${address}: ${err.message}`)));
    socket.on('close', () => reject(new Error(`peer host ${address} closed the connection`)));
    writeFrame(socket, { op: 'status', socketPath });
  });
}

export class Peer {
  private readonly transport: PeerTransport;
  private bound: EndpointAddress | undefined;
  /** Requests a serving peer has seen, in order. */
  readonly requests: Seen[] = [];
  /** Plain messages a serving peer has taken (and dropped), in order. */
  readonly messages: Seen[] = [];
  readonly serveErrors: PeerError[] = [];
  private nextId = 1;
  private readonly waiting = new Map<number, (r: Outcome<unknown>) => void>();
  private running = true;
  private readonly exited: Promise<string>;
  private readonly ready: Promise<void>;

  private constructor(options: PeerStartOptions) {
    let exited!: (why: string) => void;
    let ready!: () => void;
    this.exited = new Promise((resolve) => {
      exited = resolve;
    });
    this.ready = new Promise<void>((resolve, reject) => {
      ready = resolve;
      this.exited.then((why) => reject(new Error(`${why} before it was ready`)));
    });
    this.ready.catch(() => {});
    const events: TransportEvents = {
      message: (m) => {
        if ('id' in m) {
          const done = this.waiting.get(m.id);
          this.waiting.delete(m.id);
          done?.(m.ok ? { ok: true, value: m.value } : { ok: false, error: m.error });
        } else if (m.event === 'ready') ready();
        else if (m.event === 'request') this.requests.push(m);
        else if (m.event === 'message') this.messages.push(m);
        else if (m.event === 'serve-error') this.serveErrors.push(m.error);
      },
      exit: (why) => {
        this.running = false;
        for (const done of this.waiting.values()) {
          done({ ok: false, error: { code: 'PEER_EXITED', message: 'peer process exited' } });
        }
        this.waiting.clear();
        exited(why);
      },
    };
    this.transport = options.host
      ? new RemoteTransport(options.host, events)
      : new ChildTransport(events);
  }

  /** Starts a peer process, here or through a peer host, and waits until it takes commands. */
  static async start(options: PeerStartOptions = {}): Promise<Peer> {
    const peer = new Peer(options);
    await peer.ready;
    return peer;
  }

  /** The endpoint the peer bound. */
  get address(): EndpointAddress {
    if (!this.bound) throw new Error('peer is not bound');
    return this.bound;
  }

  /** The peer's process id, on the node it runs on. */
  get pid(): number {
    return this.transport.pid;
  }

  private command<T>(cmd: PeerCommand): { id: number; outcome: Promise<Outcome<T>> } {
    const outcome = new Promise<Outcome<T>>((resolve) =>
      this.waiting.set(cmd.id, resolve as (r: Outcome<unknown>) => void),
    );
    this.transport.send(cmd);
    return { id: cmd.id, outcome };
  }

  private async must<T>(cmd: PeerCommand): Promise<T> {
    const r = await this.command<T>(cmd).outcome;
    if (!r.ok) throw new Error(`peer ${cmd.cmd} failed: ${r.error.code} ${r.error.message}`);
    return r.value;
  }

  /**
   * Binds in the peer, through the agent at `socketPath`, or dvk.ko if it is undefined (the
   * path is the peer's: on another node, that node's agent at that path).
   */
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
    if (this.running) this.transport.kill();
    await this.exited;
  }
}
