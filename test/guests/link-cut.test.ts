/**
 * The cluster link between two QEMU guests, cut again and again under traffic (kmod/vm/cluster:
 * guest A runs this, DVK_TEST_BACKEND=guests). Clients in guest A send numbered sendrecs and
 * sends, several in flight each, to a server peer in guest B, while guest A's end of the link
 * (eth0) goes down long enough for the agents to find it silent, drop it and redial. The server
 * side then counts by sequence number: nothing lost, nothing duplicated, each sender's in its
 * order, and every call succeeded. Not part of the host's suites (package.json leaves
 * dist/test/guests out): it needs the guests, and root to take eth0 down.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test from 'ava';
import { type Endpoint, openNode } from '../../lib/index.js';
import { backendKind, numbered, numberOf, sleep, startNode } from '../helpers/backend.js';
import type { ClusterNodeStatus, LinkStatus } from '../helpers/cluster.js';
import { until } from '../helpers/until.js';

const run = promisify(execFile);

/** Calls per sender; two senders use sendrec and two use send. */
const PER_SENDER = 750;
/** Calls in flight per sender. */
const WINDOW = 8;
/** Cuts the traffic is spread over (it goes on until the last one has happened). */
const CUTS = 6;
/** How long eth0 stays down: longer than the cluster file's silenceMs (400), well under nodeDownMs (1500). */
const DOWN_MS = 650;
/** How long the link carries traffic between cuts, once it is back up. */
const UP_MS = 1000;
const IFACE = process.env.DVK_GUESTS_IFACE ?? 'eth0';

/** At most `n` at a time. */
class Slots {
  private free: number;
  private readonly queue: (() => void)[] = [];
  constructor(n: number) {
    this.free = n;
  }
  async take(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.queue.push(resolve));
  }
  give(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.free++;
  }
}

test('numbered sends and sendrecs across the guests survive repeated link cuts: none lost, duplicated or reordered', async (t) => {
  if (backendKind !== 'guests') {
    t.fail('runs in guest A of kmod/vm/cluster only (DVK_TEST_BACKEND=guests)');
    return;
  }
  t.timeout(300_000);
  // The agent's view of its links (its socket also with the kernel backend).
  const agent = openNode({ socketPath: process.env.DVK_GUESTS_AGENT ?? '/run/dvk/agent.sock' });
  const link = async (): Promise<LinkStatus | undefined> =>
    ((await agent.status().catch(() => undefined)) as ClusterNodeStatus | undefined)?.cluster
      ?.links[0];

  const node = await startNode(t);
  const server = await node.peer(1);
  await server.serve('count');
  const callers = [await node.bind(2), await node.bind(3)];
  const senders = [await node.bind(4), await node.bind(5)];
  const before = await link();
  t.is(before?.state, 'up', 'the link is up before the first cut');

  // The cutter: down, wait, up, wait until the agent has redialled, again until the traffic ends.
  let cuts = 0;
  let trafficDone = false;
  const cutErrors: string[] = [];
  const cutting = (async () => {
    while (!trafficDone) {
      await sleep(UP_MS);
      if (trafficDone) break;
      const connections = (await link())?.counters.connections ?? 0;
      await run('ip', ['link', 'set', IFACE, 'down']);
      cuts++;
      await sleep(DOWN_MS);
      await run('ip', ['link', 'set', IFACE, 'up']);
      await until(
        `the link to redial after cut ${cuts}`,
        async () => {
          const l = await link();
          return l?.state === 'up' && l.counters.connections > connections;
        },
        15_000,
        20,
      ).catch((err: Error) => cutErrors.push(err.message));
    }
  })();

  // Call k of a sender waits for cut floor(k * (CUTS + 1) / PER_SENDER): the calls are spread
  // over the cuts, and some are in flight across each. Calls are started in order.
  const failures: string[] = [];
  const replies = new Map<number, number[]>();
  const drive = async (ep: Endpoint, call: (k: number) => Promise<void>): Promise<void> => {
    const slots = new Slots(WINDOW);
    const inFlight: Promise<void>[] = [];
    for (let k = 0; k < PER_SENDER; k++) {
      const gate = Math.floor((k * (CUTS + 1)) / PER_SENDER);
      while (cuts < gate) await sleep(10);
      await slots.take();
      inFlight.push(
        call(k)
          .catch((err: Error) => {
            failures.push(`endpoint ${ep.endpoint} call ${k}: ${err.message}`);
          })
          .finally(() => slots.give()),
      );
    }
    await Promise.all(inFlight);
  };
  const started = Date.now();
  await Promise.all([
    ...callers.map((ep) => {
      const got: number[] = [];
      replies.set(ep.endpoint, got);
      return drive(ep, async (k) => {
        const reply = await ep.sendrec(1, { type: k, payload: numbered(k) }, { timeout: 60_000 });
        if (reply.source !== 1 || numberOf(reply.payload) !== k) {
          failures.push(`endpoint ${ep.endpoint} call ${k}: reply ${numberOf(reply.payload)}`);
        }
        got.push(reply.type);
      });
    }),
    ...senders.map((ep) =>
      drive(ep, (k) => ep.send(1, { type: k, payload: numbered(k) }, { timeout: 60_000 })),
    ),
  ]);
  const elapsed = Date.now() - started;
  trafficDone = true;
  await cutting;
  const after = await link();

  // The server's side, by sequence number, once its reports have all come over.
  const total = PER_SENDER * (callers.length + senders.length);
  await until(
    'the server to report every call',
    () => server.requests.length + server.messages.length >= total,
    60_000,
    50,
  ).catch(() => {});
  await sleep(500); // a duplicate would arrive after the count is reached
  const tally = { seen: 0, lost: 0, duplicated: 0, outOfOrder: 0 };
  const check = (what: string, numbers: number[]) => {
    const once = new Set(numbers);
    const lost = PER_SENDER - [...once].filter((k) => k >= 0 && k < PER_SENDER).length;
    const duplicated = numbers.length - once.size;
    const outOfOrder = numbers.filter((k, i) => i > 0 && k <= (numbers[i - 1] as number)).length;
    tally.seen += numbers.length;
    tally.lost += lost;
    tally.duplicated += duplicated;
    tally.outOfOrder += outOfOrder;
    t.deepEqual({ lost, duplicated, outOfOrder }, { lost: 0, duplicated: 0, outOfOrder: 0 }, what);
  };
  for (const ep of callers) {
    const from = server.requests.filter((r) => r.source === ep.endpoint);
    check(
      `requests from endpoint ${ep.endpoint}`,
      from.map((r) => numberOf(r.payload)),
    );
  }
  for (const ep of senders) {
    const from = server.messages.filter((m) => m.source === ep.endpoint);
    check(
      `messages from endpoint ${ep.endpoint}`,
      from.map((m) => numberOf(m.payload)),
    );
  }
  const answered = [...replies.values()].flat().sort((a, b) => a - b);
  t.deepEqual(
    answered,
    Array.from({ length: PER_SENDER * callers.length }, (_, i) => i + 1),
    'the server answered every request once',
  );
  t.deepEqual(failures.slice(0, 10), [], `every call succeeded (${failures.length} failed)`);
  t.deepEqual(cutErrors, [], 'the link came back after every cut');
  t.true(cuts >= 5, `at least 5 cuts during the traffic (${cuts})`);
  t.deepEqual(server.serveErrors, []);

  t.log(
    `${cuts} cuts of ${DOWN_MS} ms during ${total} calls in ${(elapsed / 1000).toFixed(1)} s ` +
      `(${PER_SENDER} each from 2 sendrec and 2 send clients, ${WINDOW} in flight each)`,
  );
  t.log(
    `the server counted ${tally.seen} of ${total}: ${tally.lost} lost, ${tally.duplicated} ` +
      `duplicated, ${tally.outOfOrder} out of order; ${failures.length} calls failed`,
  );
  if (before && after) {
    const c = (k: keyof LinkStatus['counters']) => after.counters[k] - before.counters[k];
    t.log(
      `guest A's link: ${c('connections')} new connections, ${c('retransmitted')} retransmitted, ` +
        `${c('duplicates')} duplicates dropped, ${c('delivered')} delivered, ${c('sent')} sent`,
    );
  }
});
