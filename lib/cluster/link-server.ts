/**
 * Accepts the connections of lower-numbered nodes and hands each, once its HELLO names a node
 * of the cluster that dials this one, to that node's Link (which then authenticates it). A
 * connection from anyone else, or one that says nothing in time, is closed and logged.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { ProtocolViolation } from '../user/wire.js';
import type { Link } from './link.js';
import { decodeHello, FrameType, LinkDecoder } from './link-wire.js';

export class LinkServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  /** Connections refused, and why: tests and `dvk status` read them. */
  refused = 0;

  constructor(
    private readonly links: ReadonlyMap<number, Link>,
    private readonly maxFrame: number,
    private readonly helloTimeoutMs: number,
    private readonly log: Logger,
  ) {
    this.server = createServer((socket) => this.accept(socket));
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const address = this.server.address();
        resolve(typeof address === 'object' && address ? address.port : port);
      });
    });
  }

  close(): void {
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    const decoder = new LinkDecoder(this.maxFrame);
    const refuse = (reason: string) => {
      this.refused++;
      this.log.warn({ remote: socket.remoteAddress, reason }, 'link connection refused');
      socket.destroy();
    };
    const timer = setTimeout(() => refuse('no HELLO in time'), this.helloTimeoutMs);
    const onData = (chunk: Buffer) => {
      let frames: ReturnType<LinkDecoder['push']>;
      try {
        frames = decoder.push(chunk);
        if (!frames.length) return;
        const first = frames[0];
        if (first?.type !== FrameType.HELLO)
          throw new ProtocolViolation('the first frame is not HELLO');
        const hello = decodeHello(first.body);
        const link = this.links.get(hello.node);
        if (!link || link.dials)
          throw new ProtocolViolation(`node ${hello.node} may not dial here`);
        clearTimeout(timer);
        socket.off('data', onData);
        this.sockets.delete(socket);
        link.attach(socket, decoder, frames);
      } catch (err) {
        clearTimeout(timer);
        refuse(err instanceof ProtocolViolation ? err.message : String(err));
      }
    };
    socket.on('data', onData);
  }
}
