/**
 * What the migration tests (test/migration) share: a loopback cluster whose n1 runs the ledger
 * service (test/fixtures/ledger-service.ts) on one endpoint, where each node says it serves,
 * and clients that number their calls so the ledger can tell a lost or repeated one.
 */
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import type { ClusterStatus, Endpoint, ServiceLocation } from '../../lib/index.js';
import { LEDGER, type Ledger } from '../fixtures/ledger-service.js';
import {
  type Cluster,
  type ClusterNode,
  type ClusterOptions,
  DC,
  startCluster,
} from './cluster.js';
import { until } from './until.js';

export const ledgerModule = fileURLToPath(
  new URL('../fixtures/ledger-service.js', import.meta.url),
);
export const SERVICE = 'ledger';
/** The ledger's endpoint, in the test DC. */
export const EP = 10;

/** A cluster of three agents, the ledger served by n1's, every link up. */
export async function startLedgerCluster(
  t: ExecutionContext,
  options: ClusterOptions = {},
): Promise<Cluster> {
  const cluster = await startCluster(t, {
    ...options,
    services: { [SERVICE]: { module: ledgerModule, dc: DC.name, endpoint: EP, node: 'n1' } },
  });
  await cluster.linksUp();
  await servedAt(cluster.get('n2'), 'n1');
  return cluster;
}

/** Where `node` says the ledger serves. */
export async function locate(node: ClusterNode): Promise<ServiceLocation | undefined> {
  const cluster = (await node.status()).cluster as ClusterStatus | undefined;
  return cluster?.services.find((s) => s.name === SERVICE);
}

/** Waits until `node` sees the ledger served at `where` (null: nowhere). */
export async function servedAt(
  node: ClusterNode,
  where: string | null,
  ms = 20_000,
): Promise<ServiceLocation> {
  let seen: ServiceLocation | undefined;
  await until(
    `${node.name} to see the ledger on ${where ?? 'no node'}`,
    async () => {
      seen = await locate(node);
      return seen !== undefined && seen.node === where;
    },
    ms,
    20,
  );
  return seen as ServiceLocation;
}

export interface ClientOptions {
  /** Each call's timeout (default 30 s). */
  timeoutMs?: number;
  /** A pause after a failed call, so a client facing an endpoint that is gone does not spin. */
  pauseAfterErrorMs?: number;
}

/** A client that numbers its sendrecs; it checks each reply echoes its own number. */
export class Client {
  seq = 0;
  /** Calls answered. */
  ok = 0;
  errors: string[] = [];
  /** Failed calls by error code. */
  codes: Record<string, number> = {};
  wrongReplies = 0;
  worstStallMs = 0;
  private running = true;
  private loop: Promise<void> | undefined;

  constructor(
    readonly name: string,
    private readonly ep: Endpoint,
    private readonly options: ClientOptions = {},
  ) {}

  async call(): Promise<void> {
    const seq = ++this.seq;
    const started = performance.now();
    let failed = false;
    try {
      const reply = await this.ep.sendrec(
        EP,
        { payload: Buffer.from(JSON.stringify({ client: this.name, seq })) },
        { timeout: this.options.timeoutMs ?? 30_000 },
      );
      this.ok++;
      if ((JSON.parse(reply.payload.toString()) as { seq: number }).seq !== seq)
        this.wrongReplies++;
    } catch (err) {
      failed = true;
      const code = (err as { code?: string }).code ?? 'not a DvkError';
      this.codes[code] = (this.codes[code] ?? 0) + 1;
      this.errors.push(`#${seq}: ${String(err)}`);
    }
    this.worstStallMs = Math.max(this.worstStallMs, performance.now() - started);
    const pause = this.options.pauseAfterErrorMs ?? 0;
    if (failed && pause > 0) await new Promise((r) => setTimeout(r, pause));
  }

  start(): void {
    this.loop = (async () => {
      while (this.running) await this.call();
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

/** The ledger, asked through `ep`. */
export async function ledgerOf(ep: Endpoint, timeoutMs = 30_000): Promise<Ledger> {
  const reply = await ep.sendrec(EP, { type: LEDGER }, { timeout: timeoutMs });
  return JSON.parse(reply.payload.toString()) as Ledger;
}
