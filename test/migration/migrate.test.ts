/**
 * Live migration on a loopback cluster of real agents (docs/migration.md): a service started
 * by its agent moves between nodes while clients on every node keep calling it. The service
 * itself (test/fixtures/ledger-service.ts) checks that each client's numbered calls arrive
 * once each and in order; the clients check that every call succeeds and answers their own
 * number. One test at a time: each starts its own agents.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test from 'ava';
import type { Endpoint } from '../../lib/index.js';
import { FAIL_RESTORE_AT } from '../fixtures/ledger-service.js';
import { cliPath } from '../helpers/backend.js';
import { type ClusterNode, DC, startCluster } from '../helpers/cluster.js';
import {
  Client,
  EP,
  ledgerModule,
  ledgerOf,
  SERVICE,
  servedAt,
  startLedgerCluster,
} from '../helpers/migration.js';

const execFileAsync = promisify(execFile);

test.serial('a service moves to another node and back, keeping its state', async (t) => {
  t.timeout(120_000);
  const cluster = await startLedgerCluster(t);
  const [n1, n2, n3] = cluster.names('n1', 'n2', 'n3');
  const client = new Client('c', await n2.bind(20));
  for (let i = 0; i < 10; i++) await client.call();

  const there = await n2.node.migrate({ dc: DC.name, endpoint: EP }, { to: 'n3' });
  t.like(there, { service: SERVICE, from: 'n1', to: 'n3', epoch: 2, endpoint: EP });
  t.true(there.stateBytes > 0);
  for (const n of [n1, n2, n3]) t.like(await servedAt(n, 'n3'), { epoch: 2 });
  for (let i = 0; i < 10; i++) await client.call();

  const back = await n3.node.migrate({ dc: DC.id, endpoint: EP }, { to: 'n1' });
  t.like(back, { from: 'n3', to: 'n1', epoch: 3 });
  for (let i = 0; i < 10; i++) await client.call();

  t.deepEqual(client.errors, []);
  t.is(client.wrongReplies, 0);
  const ledger = await ledgerOf(await n3.bind(21));
  t.is(ledger.requests.c, 30, 'every call was handled, by whichever node held the service');
  t.deepEqual(ledger.duplicates, []);
  t.deepEqual(ledger.gaps, []);
  t.is(ledger.restoredAt.length, 2);
  t.is(there.generation, back.generation, 'the same incarnation throughout');
});

test.serial(
  'clients on every node keep calling while the service moves 21 times around three nodes',
  async (t) => {
    t.timeout(300_000);
    const cluster = await startLedgerCluster(t);
    const nodes = cluster.names('n1', 'n2', 'n3');
    const clients = await Promise.all(
      nodes.map(async (n, i) => new Client(`${n.name}`, await n.bind(20 + i))),
    );
    for (const c of clients) c.start();
    const route = ['n2', 'n3', 'n1'];
    const reports = [];
    for (let i = 0; i < 21; i++) {
      const to = route[i % 3] as string;
      // Coordinated from a node that is neither end half of the time.
      const by = nodes[(i * 2) % 3] as ClusterNode;
      reports.push(await by.node.migrate({ dc: DC.name, endpoint: EP }, { to }));
      await new Promise((r) => setTimeout(r, 50));
    }
    await Promise.all(clients.map((c) => c.stop()));

    const calls = clients.reduce((n, c) => n + c.seq, 0);
    const worstStall = Math.max(...clients.map((c) => c.worstStallMs));
    t.log(
      `${reports.length} moves, ${calls} calls; worst stall ${worstStall.toFixed(1)} ms; ` +
        `move times ${reports.map((r) => r.ms.total.toFixed(0)).join(' ')} ms`,
    );
    t.deepEqual(
      clients.flatMap((c) => c.errors),
      [],
      'no client saw an error',
    );
    t.is(
      clients.reduce((n, c) => n + c.wrongReplies, 0),
      0,
    );
    t.deepEqual(
      reports.map((r) => r.epoch),
      Array.from({ length: 21 }, (_, i) => i + 2),
    );
    const ledger = await ledgerOf(await (nodes[0] as ClusterNode).bind(30));
    t.deepEqual(ledger.duplicates, [], 'no call ran twice');
    t.deepEqual(ledger.gaps, [], 'none was lost or overtaken');
    for (const c of clients) t.is(ledger.requests[c.name], c.seq, `${c.name}: all its calls ran`);
    t.is(ledger.restoredAt.length, 21);
  },
);

/** A sender of numbered plain messages and notification bits, in a loop. */
class Sender {
  seq = 0;
  bits = 0;
  errors: string[] = [];
  private running = true;
  private loop: Promise<void> | undefined;

  constructor(
    readonly name: string,
    private readonly ep: Endpoint,
  ) {}

  start(): void {
    this.loop = (async () => {
      while (this.running) {
        const seq = ++this.seq;
        const bit = 1 << (seq % 31);
        try {
          await this.ep.send(EP, {
            payload: Buffer.from(JSON.stringify({ client: this.name, seq })),
          });
          await this.ep.notify(EP, bit);
          this.bits = (this.bits | bit) >>> 0;
        } catch (err) {
          this.errors.push(`#${seq}: ${String(err)}`);
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

test.serial(
  'plain sends and notifications keep flowing, once each and in order, across moves',
  async (t) => {
    t.timeout(180_000);
    const cluster = await startLedgerCluster(t);
    const nodes = cluster.names('n1', 'n2', 'n3');
    const senders = await Promise.all(
      nodes.map(async (n, i) => new Sender(`s-${n.name}`, await n.bind(40 + i))),
    );
    for (const s of senders) s.start();
    try {
      for (const to of ['n2', 'n3', 'n1', 'n3', 'n2', 'n1']) {
        await (nodes[1] as ClusterNode).node.migrate({ dc: DC.name, endpoint: EP }, { to });
      }
    } finally {
      // A failed move must not leave them sending for ever.
      await Promise.all(senders.map((s) => s.stop()));
    }
    t.deepEqual(
      senders.flatMap((s) => s.errors),
      [],
    );
    const ledger = await ledgerOf(await (nodes[2] as ClusterNode).bind(50));
    t.deepEqual(ledger.duplicates, []);
    t.deepEqual(ledger.gaps, []);
    for (const s of senders)
      t.is(ledger.messages[s.name], s.seq, `${s.name}: every message arrived`);
    const sent = senders.reduce((bits, s) => (bits | s.bits) >>> 0, 0);
    t.is(ledger.bits, sent, 'every notification bit survived the moves');
    t.log(`${senders.reduce((n, s) => n + s.seq, 0)} sends and as many notifies across 6 moves`);
  },
);

test.serial(
  'a late caller that still routes to the old node is forwarded, not refused',
  async (t) => {
    t.timeout(120_000);
    const cluster = await startCluster(t, {
      proxies: true,
      link: { silenceMs: 2_000, nodeDownMs: 5_000 },
      services: { [SERVICE]: { module: ledgerModule, dc: DC.name, endpoint: EP, node: 'n1' } },
    });
    await cluster.linksUp();
    const [n1, n2, n3] = cluster.names('n1', 'n2', 'n3');
    await servedAt(n3, 'n1');
    const late = new Client('late', await n3.bind(20));
    await late.call();
    // n3 hears nothing, and says nothing, until released: its call leaves for n1, the old place.
    n3.proxy?.hold();
    const call = late.call();
    await n2.node.migrate({ dc: DC.name, endpoint: EP }, { to: 'n2' });
    // Released once the old node has let go (migrate returns at the commit, on n2): the held
    // call then finds only the tombstone there.
    await servedAt(n1, 'n2');
    n3.proxy?.release();
    await call;
    t.deepEqual(late.errors, []);
    t.is(late.wrongReplies, 0);
    await servedAt(n3, 'n2');
    const forwarded = (await n1.status()).cluster?.migration.forwarded ?? 0;
    t.true(forwarded >= 1, `n1 forwarded ${forwarded} late calls`);
    await late.call();
    t.deepEqual(late.errors, []);
    const ledger = await ledgerOf(await n1.bind(21));
    t.is(ledger.requests.late, 3);
    t.deepEqual([...ledger.duplicates, ...ledger.gaps], []);
  },
);

test.serial(
  'a destination that cannot restore the service rolls back; clients see no error',
  async (t) => {
    t.timeout(120_000);
    const cluster = await startLedgerCluster(t);
    const [n1, n2, n3] = cluster.names('n1', 'n2', 'n3');
    const client = new Client('c', await n2.bind(20));
    const setup = await n2.bind(21);
    await setup.sendrec(EP, { type: FAIL_RESTORE_AT, payload: Buffer.from(n3.socketPath) });
    client.start();
    const err = await t.throwsAsync(n2.node.migrate({ dc: DC.name, endpoint: EP }, { to: 'n3' }));
    t.regex(String(err?.message), /refuses to be restored/);
    t.like(await servedAt(n1, 'n1'), { epoch: 1 });
    // The service goes on serving where it was; a move elsewhere still works.
    const moved = await n3.node.migrate({ dc: DC.name, endpoint: EP }, { to: 'n2' });
    t.is(moved.epoch, 2);
    await client.stop();
    t.deepEqual(client.errors, []);
    const ledger = await ledgerOf(setup);
    t.is(ledger.requests.c, client.seq);
    t.deepEqual([...ledger.duplicates, ...ledger.gaps], []);
    t.deepEqual(ledger.restoredAt, [n2.socketPath]);
  },
);

test.serial(
  'dvk migrate moves a service and reports it; an endpoint with no service is refused',
  async (t) => {
    t.timeout(120_000);
    const cluster = await startLedgerCluster(t);
    const [n1, n3] = cluster.names('n1', 'n3');
    const dvk = (...args: string[]) =>
      execFileAsync(process.execPath, [cliPath, ...args, '--socket', n3.socketPath]).then(
        (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({
          code: e.code,
          out: e.stdout,
          err: e.stderr,
        }),
      );
    const moved = await dvk('migrate', `${DC.name}/${EP}`, '--to', 'n3', '--json');
    t.is(moved.code, 0, moved.err);
    t.like(JSON.parse(moved.out), { service: SERVICE, from: 'n1', to: 'n3', epoch: 2 });
    t.like(await servedAt(n1, 'n3'), { epoch: 2 });
    const table = await dvk('status');
    t.regex(table.out, new RegExp(`${SERVICE}\\s+${DC.name}\\s+${EP}\\s+n3\\s+\\d+\\s+2`));
    await n1.bind(7);
    const refused = await dvk('migrate', `${DC.name}/7`, '--to', 'n2');
    t.is(refused.code, 1);
    t.regex(refused.err, /EOPNOTSUPP/);
    const bad = await dvk('migrate', 'nonsense', '--to', 'n2');
    t.not(bad.code, 0);
    t.regex(bad.err, /dc>\/<endpoint>/);
  },
);
