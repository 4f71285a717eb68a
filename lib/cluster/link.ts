/**
 * An agent-to-agent link: one TCP connection per node pair (the lower node id dials), carrying
 * an exactly-once, in-order stream of messages each way across connection loss.
 *
 * Each side numbers what it sends within its current stream (a random 64-bit id) and keeps it
 * until the peer acknowledges it (cumulatively, piggybacked on every frame). On reconnection the
 * HELLOs say how much of each stream was delivered: the sender drops what was acknowledged and
 * sends the rest again, and the receiver drops numbers it already delivered. Each connection is
 * authenticated: both sides prove knowledge of the cluster secret with an HMAC over both HELLOs
 * (fresh nonces, so a recorded handshake cannot be replayed).
 *
 * A link silent for `silenceMs` is dropped and redialled. A peer unreachable for `nodeDownMs` is
 * declared down: what it had not acknowledged is given up ('down' lists it, so the agent fails
 * those calls with EHOSTUNREACH), and a new stream starts, so nothing given up is delivered
 * later. A peer that comes back having lost its state (it restarted) is treated the same way.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { ProtocolViolation } from '../user/wire.js';
import type { ClusterNode } from './config.js';
import {
  decodeHello,
  encodeFrame,
  encodeHello,
  FrameType,
  type Hello,
  LinkDecoder,
  type LinkFrame,
  NONCE_BYTES,
} from './link-wire.js';

export interface LinkTiming {
  heartbeatMs: number;
  silenceMs: number;
  nodeDownMs: number;
  maxFrame: number;
}

export interface LinkOptions {
  self: number;
  peer: ClusterNode;
  cluster: string;
  secret: string;
  timing: LinkTiming;
  log: Logger;
  /** Where to dial (default: the peer's address); tests put a proxy in between. */
  dialAddress?: string;
}

export type LinkState = 'connecting' | 'up' | 'down';

interface Outgoing {
  seq: bigint;
  payload: Buffer;
}

function randomStream(): bigint {
  return randomBytes(8).readBigUInt64LE(0) | 1n;
}

export function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

/**
 * Events: 'message' (payload: Buffer), once per message, in order; 'up'; 'down' (lost:
 * Buffer[], what the peer never acknowledged); 'violation' (reason).
 */
export class Link extends EventEmitter {
  state: LinkState = 'connecting';
  /** The latest heartbeat round trip, in ms. */
  rtt: number | undefined;
  /**
   * Messages sent and delivered, ones dropped as already delivered (duplicates) or sent again
   * after a reconnection (retransmitted), and connections that authenticated.
   */
  readonly counters = { sent: 0, delivered: 0, duplicates: 0, retransmitted: 0, connections: 0 };

  private outStream = randomStream();
  private nextSeq = 1n;
  private unacked: Outgoing[] = [];
  /** Whether the peer ever heard of outStream (then a peer that forgot it has restarted). */
  private outStreamKnown = false;
  private inStream = 0n;
  private delivered = 0n;

  private socket: Socket | undefined;
  private ready = false;
  private batch: Buffer[] = [];
  private flushing = false;
  private ackDue = false;
  private lastHeard = Date.now();
  private lastUp = Date.now();
  private pingSeq = 0n;
  private readonly pings = new Map<bigint, number>();
  private readonly timer: NodeJS.Timeout;
  private redial: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: LinkOptions) {
    super();
    this.timer = setInterval(() => this.tick(), o.timing.heartbeatMs);
    this.timer.unref?.();
  }

  /** Messages sent and not acknowledged yet. */
  get unackedCount(): number {
    return this.unacked.length;
  }

  /** Whether this side dials (the lower node id does). */
  get dials(): boolean {
    return this.o.self < this.o.peer.id;
  }

  start(): void {
    if (this.dials) this.dial();
  }

  /** Queues a message for the peer; it arrives exactly once, in order, unless 'down' lists it. */
  send(payload: Buffer): void {
    const out = { seq: this.nextSeq++, payload };
    this.unacked.push(out);
    this.counters.sent++;
    if (this.ready) this.writeData(out);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.redial);
    this.socket?.destroy();
  }

  /**
   * A connection the server accepted from this peer, with the frames read so far. The current
   * connection stays until this one has authenticated: a stranger cannot cut a live link.
   */
  attach(socket: Socket, decoder: LinkDecoder, frames: LinkFrame[]): void {
    this.use(socket, decoder, frames);
  }

  private scheduleDial(): void {
    if (this.closed || !this.dials || this.redial) return;
    this.redial = setTimeout(
      () => {
        this.redial = undefined;
        this.dial();
      },
      Math.min(100, this.o.timing.heartbeatMs),
    );
  }

  private dial(): void {
    if (this.closed || this.socket) return;
    const { host, port } = splitAddress(this.o.dialAddress ?? this.o.peer.address);
    const socket = createConnection({ host, port });
    // The dialler's one connection, from the start: no second dial while it is in progress.
    this.socket = socket;
    this.use(socket, new LinkDecoder(this.o.timing.maxFrame));
  }

  /** Runs one connection: its handshake, then, once authenticated, the link's traffic. */
  private use(socket: Socket, decoder: LinkDecoder, initial: LinkFrame[] = []): void {
    socket.setNoDelay(true);
    const hello = this.hello(randomBytes(NONCE_BYTES));
    let peerHello: Hello | undefined;
    let peerHelloBytes: Buffer = Buffer.alloc(0);
    let authenticated = false;
    const deadline = setTimeout(() => {
      if (!authenticated) this.violation(new ProtocolViolation('no handshake in time'), socket);
    }, this.o.timing.silenceMs);
    const handshake = (f: LinkFrame) => {
      if (f.type === FrameType.HELLO) {
        if (peerHello) throw new ProtocolViolation('a second HELLO');
        peerHello = decodeHello(f.body);
        peerHelloBytes = f.body;
        if (peerHello.node !== this.o.peer.id || peerHello.cluster !== this.o.cluster) {
          throw new ProtocolViolation(`HELLO from node ${peerHello.node} of ${peerHello.cluster}`);
        }
        const proof = this.mac(hello, peerHelloBytes, this.o.self);
        socket.write(
          encodeFrame({ type: FrameType.AUTH, seq: 0n, ack: 0n, stream: 0n, body: proof }),
        );
        return;
      }
      if (f.type !== FrameType.AUTH) {
        throw new ProtocolViolation(`frame type ${f.type} before authentication`);
      }
      if (!peerHello) throw new ProtocolViolation('AUTH before HELLO');
      const expected = this.mac(peerHelloBytes, hello, this.o.peer.id);
      if (f.body.length !== expected.length || !timingSafeEqual(f.body, expected)) {
        throw new ProtocolViolation('authentication failed: wrong cluster secret?');
      }
      authenticated = true;
      clearTimeout(deadline);
      this.promote(socket);
      this.resume(peerHello);
    };
    const onFrames = (frames: LinkFrame[]) => {
      try {
        for (const f of frames) {
          if (!authenticated) handshake(f);
          else if (this.socket === socket) this.onFrame(f);
        }
      } catch (err) {
        this.violation(err, socket);
      }
    };
    socket.on('data', (chunk: Buffer) => {
      try {
        onFrames(decoder.push(chunk));
      } catch (err) {
        this.violation(err, socket);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(deadline);
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.lost();
      this.scheduleDial();
    });
    socket.write(encodeFrame({ type: FrameType.HELLO, seq: 0n, ack: 0n, stream: 0n, body: hello }));
    onFrames(initial);
  }

  /** An authenticated connection becomes the link's, replacing the one before. */
  private promote(socket: Socket): void {
    this.counters.connections++;
    const old = this.socket;
    this.socket = socket;
    this.batch = [];
    if (old && old !== socket) old.destroy();
  }

  private hello(nonce: Buffer): Buffer {
    return encodeHello({
      node: this.o.self,
      cluster: this.o.cluster,
      stream: this.outStream,
      peerStream: this.inStream,
      delivered: this.delivered,
      nonce,
    });
  }

  /** The HMAC a node `from` sends: over its own HELLO, then the peer's. */
  private mac(fromHello: Buffer, toHello: Buffer, from: number): Buffer {
    return createHmac('sha256', this.o.secret)
      .update(`dvk-link-v1 ${this.o.cluster} ${from}\n`)
      .update(fromHello)
      .update(toHello)
      .digest();
  }

  /**
   * Both sides are authenticated: settle where each stream stands, then send what is owed.
   *
   * A side that gave up (declared the peer down, or found itself forgotten) starts a new
   * stream and forgets the peer's, and its HELLO then names no peer stream. The peer, seeing
   * its own stream forgotten, gives up in turn. A stream that was forgotten is never taken up
   * again: the peer could be resending numbers this side delivered before it forgot them.
   */
  private resume(peer: Hello): void {
    if (peer.peerStream === this.outStream) {
      this.acknowledge(peer.delivered);
      this.outStreamKnown = true;
    } else if (this.outStreamKnown) {
      // The peer forgot our stream: it restarted or declared us down, and what it had not
      // acknowledged is lost. This side gives up in turn. The stream the peer names now is not
      // taken up: it may be one this side forgot in an earlier verdict, which the peer still
      // holds with numbers this side delivered before (both would then wait for each other for
      // good); the next handshakes settle on streams both sides start afresh.
      this.giveUp();
      this.drop('the peer started afresh');
      return;
    }
    if (peer.stream !== this.inStream) {
      // A stream this side does not know is new, unless the peer still names a stream of ours
      // from before we gave up: then it has not started afresh yet, and will once it reads
      // this side's HELLO.
      const peerIsNew =
        this.inStream !== 0n || peer.peerStream === 0n || peer.peerStream === this.outStream;
      if (!peerIsNew) {
        this.drop('waiting for the peer to start afresh');
        return;
      }
      this.inStream = peer.stream;
      this.delivered = 0n;
    }
    this.ready = true;
    this.lastHeard = Date.now();
    this.lastUp = this.lastHeard;
    for (const out of this.unacked) {
      if (out.seq <= this.lastSentSeq) this.counters.retransmitted++;
      this.writeData(out);
    }
    if (this.state !== 'up') {
      this.state = 'up';
      this.emit('up');
    }
  }

  private lastSentSeq = 0n;

  private onFrame(f: LinkFrame): void {
    this.lastHeard = Date.now();
    // The peer sends only once it has resumed, having taken up our stream.
    this.outStreamKnown = true;
    this.acknowledge(f.ack);
    switch (f.type) {
      case FrameType.DATA:
        if (f.stream !== this.inStream) throw new ProtocolViolation('DATA of an unknown stream');
        if (f.seq <= this.delivered) {
          this.counters.duplicates++;
        } else if (f.seq === this.delivered + 1n) {
          this.delivered = f.seq;
          this.counters.delivered++;
          this.emit('message', f.body);
        } else {
          throw new ProtocolViolation(`DATA ${f.seq} after ${this.delivered}: a gap`);
        }
        this.ackDue = true;
        this.scheduleFlush();
        return;
      case FrameType.ACK:
        return;
      case FrameType.PING:
        this.write(
          encodeFrame({ type: FrameType.PONG, seq: f.seq, ack: this.delivered, stream: 0n }),
        );
        return;
      case FrameType.PONG: {
        const sent = this.pings.get(f.seq);
        this.pings.delete(f.seq);
        if (sent !== undefined) this.rtt = Date.now() - sent;
        return;
      }
      default:
        throw new ProtocolViolation(`unexpected frame type ${f.type}`);
    }
  }

  private acknowledge(ack: bigint): void {
    let n = 0;
    while (n < this.unacked.length && (this.unacked[n] as Outgoing).seq <= ack) n++;
    if (n) this.unacked.splice(0, n);
  }

  private writeData(out: Outgoing): void {
    if (out.seq > this.lastSentSeq) this.lastSentSeq = out.seq;
    this.ackDue = false;
    this.write(
      encodeFrame({
        type: FrameType.DATA,
        seq: out.seq,
        ack: this.delivered,
        stream: this.outStream,
        body: out.payload,
      }),
    );
  }

  /** Frames written in one tick go out in one write. */
  private write(frame: Buffer): void {
    this.batch.push(frame);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => {
      this.flushing = false;
      if (this.ackDue && this.ready) {
        this.ackDue = false;
        this.batch.push(
          encodeFrame({
            type: FrameType.ACK,
            seq: 0n,
            ack: this.delivered,
            stream: this.outStream,
          }),
        );
      }
      const socket = this.socket;
      const frames = this.batch;
      this.batch = [];
      if (socket && frames.length)
        socket.write(frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames));
    });
  }

  private tick(): void {
    const now = Date.now();
    if (this.ready) {
      this.lastUp = now;
      if (now - this.lastHeard > this.o.timing.silenceMs) {
        this.drop(`silent for ${now - this.lastHeard} ms`);
        return;
      }
      const id = ++this.pingSeq;
      this.pings.set(id, now);
      if (this.pings.size > 64) this.pings.delete(this.pings.keys().next().value as bigint);
      this.write(encodeFrame({ type: FrameType.PING, seq: id, ack: this.delivered, stream: 0n }));
      return;
    }
    if (this.state !== 'down' && now - this.lastUp > this.o.timing.nodeDownMs) {
      this.state = 'down';
      this.giveUp();
      return;
    }
    if (!this.socket) this.scheduleDial();
  }

  /**
   * Gives up what the peer has not acknowledged and starts a new stream, and forgets the
   * peer's stream too: the next HELLO tells the peer so, and it gives up in turn. Both sides
   * thus see one 'down' per break, and start again from nothing on each side.
   */
  private giveUp(): void {
    const lost = this.unacked.map((o) => o.payload);
    this.unacked = [];
    this.outStream = randomStream();
    this.nextSeq = 1n;
    this.lastSentSeq = 0n;
    this.outStreamKnown = false;
    this.inStream = 0n;
    this.delivered = 0n;
    // The next verdict counts from here.
    this.lastUp = Date.now();
    this.emit('down', lost);
  }

  private drop(reason: string): void {
    if (!this.socket) return;
    this.o.log.info({ peer: this.o.peer.name, reason }, 'link dropped');
    const socket = this.socket;
    this.socket = undefined;
    this.lost();
    socket.destroy();
    this.scheduleDial();
  }

  /** The connection is gone; the link reconnects, and stays 'down' if it was declared so. */
  private lost(): void {
    this.ready = false;
    if (this.state === 'up') this.state = 'connecting';
  }

  private violation(err: unknown, socket: Socket): void {
    const reason = err instanceof ProtocolViolation ? err.message : String(err);
    this.o.log.warn({ peer: this.o.peer.name, reason }, 'link protocol violation, closing');
    this.emit('violation', reason);
    if (socket === this.socket) this.drop(reason);
    else socket.destroy();
  }
}
