/**
 * A TCP relay in front of a node's link port that can cut every connection through it at once,
 * or hold everything through it for a while: the tests' stand-in for a network that drops
 * connections mid-stream, or is slow to deliver.
 */
import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export class CuttingProxy {
  private readonly pairs = new Set<[Socket, Socket]>();
  private readonly server: Server;
  /** Cuts that found at least one connection to cut. */
  cuts = 0;
  private held = false;

  constructor(targetPort: number) {
    this.server = createServer((client) => {
      const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
      const pair: [Socket, Socket] = [client, upstream];
      this.pairs.add(pair);
      for (const s of pair) {
        s.on('error', () => {});
        s.on('close', () => {
          this.pairs.delete(pair);
          client.destroy();
          upstream.destroy();
        });
      }
      if (!this.held) this.relay(pair);
      else for (const s of pair) s.pause();
    });
  }

  private relay([client, upstream]: [Socket, Socket]): void {
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Stops relaying, both ways, on every connection (new ones too), until `release`. */
  hold(): void {
    this.held = true;
    for (const [a, b] of this.pairs) {
      a.unpipe(b);
      b.unpipe(a);
      a.pause();
      b.pause();
    }
  }

  /** Relays again what `hold` kept back, in order, and what comes after. */
  release(): void {
    this.held = false;
    for (const pair of this.pairs) this.relay(pair);
  }

  /** Listens on a free loopback port and returns it. */
  async listen(): Promise<number> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return (this.server.address() as { port: number }).port;
  }

  cut(): void {
    if (this.pairs.size) this.cuts++;
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
  }

  close(): void {
    this.cut();
    this.server.close();
  }
}
