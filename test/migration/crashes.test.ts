/**
 * Crashes during a live migration (docs/migration.md, "Crashes"), on a loopback cluster of real
 * agents: the ledger moves from n1 (the source, S) to n2 (the destination, D), coordinated by
 * n3 (C), and one of the three agents is killed with SIGKILL at a given step of the protocol.
 * The step is hit by waiting for the agent's log line that marks it (the agents log at debug
 * level), with the ledger holding the move there long enough where needed: a slow handler the
 * source must drain, a slow restore at the destination.
 *
 * Each crash must end in one outcome: the endpoint live on exactly one node (or on none, where
 * the design says it is lost with the node: S killed before its state reached D, D killed
 * after it committed), every surviving node agreeing; clients on the surviving nodes get
 * their answer or a definite error (EHOSTUNREACH for a call waiting on the dead node, ESRCH,
 * or ENOENT for a call made while no node has the endpoint: lost, or between the source's
 * verdict and the destination's commit), never a wait much beyond the node-down verdict; no
 * call runs twice (the ledger may have run more calls than a client saw answered, never
 * fewer); no instance process is left over; and the killed agent, restarted, rejoins a
 * cluster that still has one copy (or none) of the endpoint.
 */
import test, { type ExecutionContext } from 'ava';
import type { Endpoint } from '../../lib/index.js';
import { type Ledger, SLOW, SLOW_RESTORE } from '../fixtures/ledger-service.js';
import { type Cluster, type ClusterNode, DC, TEST_LINK, waitLink } from '../helpers/cluster.js';
import { Client, EP, ledgerOf, servedAt, startLedgerCluster } from '../helpers/migration.js';
import { childrenOf, isRunning } from '../helpers/processes.js';
import { until } from '../helpers/until.js';

const ROLES = { S: 'n1', D: 'n2', C: 'n3' } as const;
type Role = keyof typeof ROLES;

/** How long the source's slow handler runs: past the node-down verdict. */
const SLOW_HANDLER_MS = 2_500;
/** Each client call's own timeout: far above any wait a crash may cause. */
const CALL_TIMEOUT_MS = 10_000;
/** What a crash may add to a call beyond the node-down verdict (and the step's own wait). */
const MARGIN_MS = 2_500;
/** Log lines that say an agent hit a bug, whatever the case. */
const BUGS = [
  'Unhandled',
  'unhandledRejection',
  'uncaughtException',
  'handling a migration step failed',
  'handling a node-down verdict failed',
  'bad record from a node',
  'MOVED from a node',
  'cannot resume the service',
];

interface Step {
  /** How the test titles name the step. */
  name: string;
  /** The role whose agent logs the line that marks the step (by victim), and the line. */
  mark(victim: Role): { role: Role; msg: string };
  /** Holds the move at the step: a slow handler the source drains, or a slow restore. */
  slowHandler?: boolean;
  slowRestoreMs?: number;
  /** What the step adds to a client's wait besides the node-down verdict. */
  extraMs: number;
}

const PREPARE: Step = {
  name: 'after PREPARE, while the incoming instance starts',
  mark: () => ({ role: 'D', msg: 'service instance started' }),
  extraMs: 0,
};
const DRAIN: Step = {
  name: 'during the freeze, while the source drains a slow handler',
  mark: () => ({ role: 'S', msg: 'move away: freezing' }),
  slowHandler: true,
  extraMs: SLOW_HANDLER_MS,
};
const RESTORE: Step = {
  name: 'after the state reached D, while it restores',
  mark: () => ({ role: 'D', msg: 'move here: state received; restoring' }),
  slowRestoreMs: 2_500,
  extraMs: 0,
};
const READY: Step = {
  name: 'after the state reached D, which restores before the verdict and waits for COMMIT',
  mark: () => ({ role: 'D', msg: 'move here: state received; restoring' }),
  slowRestoreMs: 200,
  extraMs: 0,
};
/**
 * The line that marks a step is logged at once, but the records the agent sent in that tick
 * leave on its links a moment later (a link writes a tick's frames together): so "after MOVED"
 * is marked by the line of the node that received it (or COMMIT, for C).
 */
const MOVED: Step = {
  name: 'just after MOVED',
  mark: (victim) =>
    victim === 'C'
      ? { role: 'D', msg: 'endpoint moved here' }
      : { role: 'S', msg: 'endpoint moved away' },
  extraMs: 0,
};
/** The coordinator's own line: the COMMIT may or may not have left when it dies. */
const COMMIT: Step = {
  name: 'as it sends COMMIT',
  mark: () => ({ role: 'C', msg: 'move: asking the destination to commit' }),
  extraMs: 0,
};

interface Case {
  victim: Role;
  step: Step;
  /** Where the endpoint lives once the crash is resolved; null: it was lost with the victim. */
  outcome: Role | null | 'S or D';
  /** Whether D committed (the coordinator, if it survives, reports the move done). */
  committed?: boolean;
}

const WHO = { S: 'the source', D: 'the destination', C: 'the coordinator' } as const;

function title(c: Case): string {
  const end =
    c.outcome === null
      ? 'the endpoint is lost with it'
      : c.outcome === 'S or D'
        ? 'the endpoint lives on the destination only if the COMMIT got out, else on the source'
        : `the endpoint lives on ${WHO[c.outcome]} only`;
  return `${WHO[c.victim]} killed ${c.step.name}: ${end}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether the ledger's endpoint is bound in `node`'s own table; the pid bound to it. */
async function boundPid(node: ClusterNode): Promise<number | null | undefined> {
  const dc = (await node.status()).dcs.find((d) => d.name === DC.name);
  const ep = dc?.endpoints.find((e) => e.endpoint === EP);
  return ep ? ep.pid : undefined;
}

/**
 * Checks that the ledger's endpoint is bound on `where`'s node alone among `nodes` (on none
 * for null), that every one of them says so, and that the only service instance any of their
 * agents runs is the one serving it (waiting for instances that were asked to exit).
 */
async function oneCopy(
  t: ExecutionContext,
  nodes: ClusterNode[],
  where: string | null,
): Promise<void> {
  for (const n of nodes) {
    const seen = await servedAt(n, where, 10_000).catch(() => undefined);
    t.is(seen?.node, where, `${n.name} sees the ledger on ${where ?? 'no node'}`);
  }
  const bound: string[] = [];
  for (const n of nodes) if ((await boundPid(n)) !== undefined) bound.push(n.name);
  t.deepEqual(bound, where ? [where] : [], 'the endpoint is bound on that node alone');
  const expected = async (n: ClusterNode) => {
    const pid = n.name === where ? await boundPid(n) : undefined;
    return pid ? [pid] : [];
  };
  const leftover = async () => {
    const found: string[] = [];
    for (const n of nodes) {
      const children = childrenOf(n.agent.pid ?? 0).sort();
      const want = await expected(n);
      if (JSON.stringify(children) !== JSON.stringify(want)) {
        found.push(`${n.name}: instances ${children.join(',') || 'none'}, want ${want}`);
      }
    }
    return found;
  };
  await until('instances to settle', async () => (await leftover()).length === 0, 8_000).catch(
    () => {},
  );
  t.deepEqual(await leftover(), [], 'no instance runs but the one serving');
}

/** A sendrec to the ledger from `ep` fails at once with a definite error. */
async function unreachable(t: ExecutionContext, ep: Endpoint, who: string): Promise<void> {
  const started = performance.now();
  const err = await t.throwsAsync(
    ep.sendrec(EP, { payload: Buffer.from('{}') }, { timeout: 5_000 }),
  );
  const code = (err as { code?: string } | undefined)?.code;
  t.true(
    ['ENOENT', 'EHOSTUNREACH', 'ESRCH'].includes(code ?? ''),
    `${who}: a call to the lost endpoint fails with ${code}`,
  );
  t.true(performance.now() - started < 1_000, `${who}: and at once`);
}

async function crash(t: ExecutionContext, c: Case): Promise<void> {
  t.timeout(120_000);
  const cluster: Cluster = await startLedgerCluster(t, { logLevel: 'debug' });
  const nodeOf = (r: Role) => cluster.get(ROLES[r]);
  const victim = nodeOf(c.victim);
  const survivors = cluster.nodes.filter((n) => n !== victim);
  const [first] = survivors as [ClusterNode, ClusterNode];
  const setup = await first.bind(30);

  if (c.step.slowRestoreMs) {
    await setup.sendrec(EP, {
      type: SLOW_RESTORE,
      payload: Buffer.from(String(c.step.slowRestoreMs)),
    });
  }
  let slow: Promise<string> | undefined;
  if (c.step.slowHandler) {
    const caller = await first.bind(31);
    slow = caller
      .sendrec(
        EP,
        { type: SLOW, payload: Buffer.from(String(SLOW_HANDLER_MS)) },
        { timeout: CALL_TIMEOUT_MS },
      )
      .then(
        () => 'answered',
        (err: { code?: string }) => err.code ?? String(err),
      );
    // Its handler runs at the source before the move starts.
    const source = nodeOf('S');
    await until('the slow request to be received', async () => {
      const dc = (await source.status()).dcs.find((d) => d.name === DC.name);
      return dc?.endpoints.find((e) => e.endpoint === EP)?.unansweredRequests === 1;
    });
  }

  const clients = await Promise.all(
    survivors.map(
      async (n, i) =>
        new Client(`c-${n.name}`, await n.bind(20 + i), {
          timeoutMs: CALL_TIMEOUT_MS,
          pauseAfterErrorMs: 20,
        }),
    ),
  );
  t.teardown(() => Promise.all(clients.map((client) => client.stop())));
  for (const client of clients) client.start();
  await sleep(200);

  const mark = c.step.mark(c.victim);
  const marker = nodeOf(mark.role);
  const since = marker.log().length;
  const moving = nodeOf('C')
    .node.migrate({ dc: DC.name, endpoint: EP }, { to: ROLES.D })
    .then(
      (report) => ({ moved: true, detail: `epoch ${report.epoch}` }),
      (err: Error) => ({ moved: false, detail: err.message }),
    );
  await marker.waitForLog(mark.msg, since);
  const victimInstances = childrenOf(victim.agent.pid ?? 0);
  await victim.kill('SIGKILL');

  // The crash is resolved once every survivor has declared the victim down, the move has
  // ended, and the survivors agree where the endpoint lives.
  for (const n of survivors) await waitLink(n, victim.name, ['down']);
  const move = await moving;
  let { outcome, committed } = c;
  if (outcome === 'S or D') {
    // The destination's log says which: it committed, or rolled back at the verdict.
    const dest = nodeOf('D');
    const said = (msg: string) => dest.log().includes(`"msg":"${msg}"`);
    await until('the destination to decide', () =>
      ['endpoint moved here', 'move here rolled back'].some(said),
    );
    committed = said('endpoint moved here');
    outcome = committed ? 'D' : 'S';
    t.log(`the COMMIT ${committed ? 'got out' : 'was lost with the coordinator'}`);
  }
  const where = outcome === null ? null : ROLES[outcome];
  for (const n of survivors) await servedAt(n, where);
  // Clients go on calling against the outcome for a while.
  await sleep(1_000);
  for (const client of clients) await client.stop();

  t.log(`move: ${move.moved ? 'committed' : 'failed'} (${move.detail})`);
  for (const client of clients) {
    t.log(
      `${client.name}: ${client.ok}/${client.seq} answered; errors ${JSON.stringify(client.codes)}; worst wait ${client.worstStallMs.toFixed(0)} ms`,
    );
  }
  if (c.victim !== 'C') {
    t.is(move.moved, committed === true, 'the coordinator reports what happened');
  }

  await oneCopy(t, survivors, where);
  // Instances die with their agent.
  await until(
    "the killed agent's instances to end",
    () => victimInstances.every((p) => !isRunning(p)),
    5_000,
  ).catch(() => {});
  t.deepEqual(
    victimInstances.filter((p) => isRunning(p)),
    [],
    "the killed agent's instances are gone",
  );

  const bound = TEST_LINK.nodeDownMs + c.step.extraMs + MARGIN_MS;
  for (const client of clients) {
    t.is(client.wrongReplies, 0, `${client.name}: every reply is its own`);
    const odd = Object.keys(client.codes).filter(
      (code) => !['EHOSTUNREACH', 'ESRCH', 'ENOENT'].includes(code),
    );
    const oddErrors = client.errors.filter((e) => odd.some((code) => e.includes(code)));
    t.deepEqual(odd, [], `${client.name}: only definite errors (${oddErrors.slice(0, 3)})`);
    t.true(
      client.worstStallMs < bound,
      `${client.name}: waited ${client.worstStallMs.toFixed(0)} ms at worst (bound ${bound})`,
    );
  }
  if (slow) {
    t.is(await slow, c.victim === 'S' ? 'EHOSTUNREACH' : 'answered', 'the drained request');
  }

  let ledger: Ledger | undefined;
  if (where) {
    ledger = await ledgerOf(setup, 5_000);
    t.deepEqual(ledger.duplicates, [], 'no call ran twice');
    for (const client of clients) {
      const ran = ledger.calls[client.name] ?? 0;
      const failed = client.seq - client.ok;
      t.true(
        ran >= client.ok && ran <= client.ok + failed,
        `${client.name}: ${ran} ran; ${client.ok} answered, ${failed} failed`,
      );
    }
  } else {
    for (const [i, n] of survivors.entries()) await unreachable(t, await n.bind(40 + i), n.name);
  }

  for (const n of survivors) {
    t.true(n.running, `${n.name}'s agent runs`);
    const bugs = BUGS.filter((b) => n.log().includes(b));
    t.deepEqual(bugs, [], `${n.name}'s log: ${bugs.length ? n.log() : ''}`);
  }

  // The killed agent comes back: the cluster still has one copy (the source, restarted, starts
  // the service afresh if it was lost with it), or none.
  const restartedAt = victim.log().length;
  await victim.start();
  await cluster.linksUp();
  const healed = where ?? (c.victim === 'S' ? ROLES.S : null);
  await oneCopy(t, cluster.nodes, healed);
  const probe = await victim.bind(50);
  if (healed) {
    const after = await ledgerOf(probe, 5_000);
    if (ledger) t.true(after.handled >= ledger.handled, 'the same ledger serves');
  } else {
    await unreachable(t, probe, victim.name);
  }
  const bugs = BUGS.filter((b) => victim.log().slice(restartedAt).includes(b));
  t.deepEqual(bugs, [], `${victim.name}'s log after the restart`);
  for (const n of cluster.nodes) t.true(n.running, `${n.name}'s agent runs`);
}

const CASES: Case[] = [
  { victim: 'S', step: PREPARE, outcome: null, committed: false },
  { victim: 'D', step: PREPARE, outcome: 'S', committed: false },
  { victim: 'C', step: PREPARE, outcome: 'S', committed: false },
  { victim: 'S', step: DRAIN, outcome: null, committed: false },
  { victim: 'D', step: DRAIN, outcome: 'S', committed: false },
  { victim: 'C', step: DRAIN, outcome: 'S', committed: false },
  { victim: 'S', step: RESTORE, outcome: 'D', committed: true },
  { victim: 'D', step: RESTORE, outcome: 'S', committed: false },
  { victim: 'C', step: RESTORE, outcome: 'S', committed: false },
  { victim: 'C', step: READY, outcome: 'S', committed: false },
  { victim: 'C', step: COMMIT, outcome: 'S or D' },
  { victim: 'S', step: MOVED, outcome: 'D', committed: true },
  { victim: 'D', step: MOVED, outcome: null, committed: true },
  { victim: 'C', step: MOVED, outcome: 'D', committed: true },
];

for (const c of CASES) test.serial(title(c), (t) => crash(t, c));
