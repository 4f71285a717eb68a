/**
 * One client connection to the agent. A connection binds at most one endpoint; closing it, or
 * the process behind it dying, unbinds that endpoint. Frames are decoded, checked, and handed to
 * the endpoint table; completions come back as reply frames carrying the call's tag.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { DvkError, errnoOf } from '../errors.js';
import { type Message, MessageFlags } from '../message.js';
import {
  CallFlags,
  type Frame,
  FrameDecoder,
  FrameWriter,
  frame,
  Op,
  ProtocolViolation,
  REPLY_BIT,
} from '../user/wire.js';
import type { Binding, Done, EndpointTable, PeerCredentials, Wait, Waiting } from './endpoints.js';

/** Calls one connection may have waiting in the agent before the agent stops reading it. */
const MAX_WAITING_CALLS = 1024;
/** Payload bytes of one connection's waiting calls (held sends) before the same happens. */
const MAX_WAITING_BYTES = 16 * 1024 * 1024;
/** Reply bytes the agent buffers for a connection that does not read them. */
const MAX_REPLY_BACKLOG = 8 * 1024 * 1024;
/** Characters of an error's detail sent back to the client. */
const MAX_DETAIL = 512;

export interface SessionHost {
  table: EndpointTable;
  /** Binds for this session's process (in a cluster, after the other nodes agree). */
  bind(dc: number | string, endpoint: number, peer: PeerCredentials | null): Promise<Binding>;
  /** The node status as JSON, for STATUS calls. */
  status(): Promise<unknown>;
  /** Moves an endpoint's service to another node (MIGRATE calls); the report as JSON. */
  migrate(dc: number | string, endpoint: number, to: string): Promise<unknown>;
}

const flagsOf: Record<Message['kind'], number> = {
  message: 0,
  request: MessageFlags.REQUEST,
  notification: MessageFlags.NOTIFY,
};

export class Session {
  private binding: Binding | null = null;
  /** A bind is in progress: the connection binds at most one endpoint. */
  private bindPending = false;
  private readonly decoder = new FrameDecoder('call');
  /** Calls that wait, by tag, so CANCEL can find them. */
  private readonly waiting = new Map<number, Waiting>();
  /** Payload bytes of the calls in `waiting`. */
  private waitingBytes = 0;
  private readonly writer: FrameWriter;
  private closed = false;

  constructor(
    private readonly socket: Socket,
    private readonly host: SessionHost,
    private readonly log: Logger,
    private readonly peer: PeerCredentials | null,
  ) {
    this.writer = new FrameWriter(socket);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.throttle());
    socket.on('error', (err) => this.log.debug({ err }, 'socket error'));
    // The client's FIN (its close()) unbinds at once, before the agent's own FIN goes back:
    // a client's close() resolves on that FIN, so its endpoint is free by then.
    socket.on('end', () => this.onClose());
    socket.on('close', () => this.onClose());
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    try {
      for (const f of this.decoder.push(chunk)) this.handle(f);
    } catch (err) {
      if (err instanceof ProtocolViolation) {
        this.log.warn({ reason: err.message, pid: this.peer?.pid }, 'protocol violation, closing');
      } else {
        // A bug of ours must cost one connection, never the agent and every other endpoint.
        this.log.error({ err, pid: this.peer?.pid }, 'internal error, closing the connection');
      }
      this.socket.destroy();
      return;
    }
    this.throttle();
  }

  /**
   * Stops reading from a client that has too many calls waiting, or that does not read its
   * replies, until it is back under the limits: what the agent holds for one connection stays
   * bounded, and the client's own writes wait in its socket instead.
   */
  private throttle(): void {
    if (this.closed) return;
    const over =
      this.waiting.size >= MAX_WAITING_CALLS ||
      this.waitingBytes >= MAX_WAITING_BYTES ||
      this.socket.writableLength >= MAX_REPLY_BACKLOG;
    if (over && !this.socket.isPaused()) this.socket.pause();
    else if (!over && this.socket.isPaused()) this.socket.resume();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.waiting.clear();
    if (this.binding) {
      this.log.info({ endpoint: this.binding.endpoint }, 'unbound');
      this.host.table.unbind(this.binding);
      this.binding = null;
    }
  }

  private handle(f: Frame): void {
    if (this.waiting.has(f.tag)) throw new ProtocolViolation(`tag ${f.tag} already in use`);
    switch (f.op) {
      case Op.BIND:
        return this.bind(f);
      case Op.STATUS:
        return this.answerJson(f, this.host.status());
      case Op.MIGRATE:
        return this.answerJson(f, this.migrate(f));
      case Op.CANCEL:
        this.waiting.get(Number(f.arg & 0xffff_ffffn))?.cancel();
        return;
    }
    const b = this.binding;
    if (!b) return this.respond(f, new DvkError('EINVAL', 'connection has no endpoint bound'));
    const table = this.host.table;
    const wait: Wait = { nonblock: (f.flags & CallFlags.NONBLOCK) !== 0, deadline: f.deadline };
    try {
      switch (f.op) {
        case Op.SEND:
          return this.waitFor(f, (done) =>
            table.send(b, f.peer, f.peerGen, f.type, f.payload, wait, done),
          );
        case Op.SENDREC:
          return this.waitFor(f, (done) =>
            table.sendrec(b, f.peer, f.peerGen, f.type, f.payload, f.arg, wait, done),
          );
        case Op.RECEIVE:
          return this.waitFor(f, (done) => table.receive(b, f.peer, f.peerGen, wait, done));
        case Op.REPLY:
          // Answered only on failure: clients check their own obligations and do not wait.
          table.reply(b, f.peer, f.peerGen, f.arg, f.type, f.payload);
          return;
        case Op.NOTIFY:
          if (f.arg > 0xffff_ffffn) throw new DvkError('EINVAL', 'notification bits exceed 32');
          // Never waits for room; across nodes it resolves once the bits are pending there.
          return this.waitFor(f, (done) => {
            table.notify(b, f.peer, f.peerGen, Number(f.arg), done);
            return { cancel() {} };
          });
      }
    } catch (err) {
      if (!(err instanceof DvkError)) throw err;
      return this.respond(f, err);
    }
  }

  /** Answers a call with a JSON document, or with the error it failed with. */
  private answerJson(f: Frame, document: Promise<unknown>): void {
    document.then(
      (doc) => this.respond(f, null, { payload: Buffer.from(JSON.stringify(doc)) }),
      (err: unknown) =>
        this.respond(f, err instanceof DvkError ? err : new DvkError('EPROTO', String(err))),
    );
  }

  private async migrate(f: Frame): Promise<unknown> {
    let request: { dc?: unknown; endpoint?: unknown; to?: unknown };
    try {
      request = JSON.parse(f.payload.toString('utf8'));
    } catch {
      throw new DvkError('EINVAL', 'a MIGRATE call carries JSON');
    }
    const { dc, endpoint, to } = request ?? {};
    if (
      (typeof dc !== 'string' && typeof dc !== 'number') ||
      typeof endpoint !== 'number' ||
      typeof to !== 'string'
    ) {
      throw new DvkError('EINVAL', 'MIGRATE needs { dc, endpoint, to }');
    }
    return this.host.migrate(dc, endpoint, to);
  }

  private bind(f: Frame): void {
    if (this.binding || this.bindPending) {
      return this.respond(f, new DvkError('EINVAL', 'connection already bound'));
    }
    const dc = f.flags & CallFlags.DC_BY_ID ? Number(f.arg) : f.payload.toString('utf8');
    this.bindPending = true;
    this.host.bind(dc, f.peer, this.peer).then(
      (b) => {
        this.bindPending = false;
        if (this.closed) {
          // The process went away while the cluster agreed.
          this.host.table.unbind(b);
          return;
        }
        this.binding = b;
        const maxPayload = this.host.table.limits.maxPayload;
        this.decoder.maxPayload = maxPayload;
        this.log.info({ dc: b.dc.id, endpoint: b.endpoint, generation: b.generation }, 'bound');
        this.respond(f, null, {
          peer: b.endpoint,
          peerGen: b.generation,
          type: maxPayload,
          arg: BigInt(b.dc.id),
        });
      },
      (err: unknown) => {
        this.bindPending = false;
        if (!(err instanceof DvkError)) {
          this.log.error({ err }, 'internal error while binding, closing the connection');
          this.socket.destroy();
          return;
        }
        this.respond(f, err);
      },
    );
  }

  /**
   * Starts a call that may wait. Its completion can run before `start` returns; only a call
   * still waiting afterwards is registered for CANCEL.
   */
  private waitFor<T extends Message | void>(f: Frame, start: (done: Done<T>) => Waiting): void {
    let settled = false;
    const waiting = start((err, message) => {
      if (!settled && this.waiting.delete(f.tag)) this.waitingBytes -= f.payload.length;
      settled = true;
      this.complete(f, err, message || undefined);
      this.throttle();
    });
    if (settled) return;
    this.waiting.set(f.tag, waiting);
    this.waitingBytes += f.payload.length;
  }

  private complete(f: Frame, err: DvkError | null, message: Message | undefined): void {
    if (err || !message) return this.respond(f, err);
    this.respond(f, null, {
      peer: message.source,
      peerGen: message.sourceGeneration,
      type: message.type,
      flags: f.op === Op.SENDREC ? MessageFlags.REPLY : flagsOf[message.kind],
      arg: message.kind === 'notification' ? BigInt(message.bits) : message.requestId,
      payload: message.payload,
    });
  }

  private respond(call: Frame, err: DvkError | null, fields: Partial<Frame> = {}): void {
    if (this.closed) return;
    const reply = err
      ? frame({
          op: call.op | REPLY_BIT,
          tag: call.tag,
          status: -errnoOf(err.code),
          // Details may quote what the client sent: keep them short enough for any decoder.
          payload: Buffer.from(err.detail.slice(0, MAX_DETAIL)),
        })
      : frame({ ...fields, op: call.op | REPLY_BIT, tag: call.tag });
    this.writer.write(reply);
  }
}
