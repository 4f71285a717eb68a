/**
 * Service instances as an agent steers them (lib/agent/services.ts, lib/service): real
 * instance processes of a counter service (test/fixtures/counter-service.ts) bound through a
 * real agent, driven through a ServiceInstances of the test's own. Freeze and resume, a
 * snapshot restored into an incoming instance, a freeze that cannot finish, a module that is
 * no service, exit, kill, and an instance that dies.
 */
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import pino from 'pino';
import { ServiceInstances, type ServiceSpec } from '../../lib/agent/services.js';
import { DvkError, type Endpoint } from '../../lib/index.js';
import { CounterOp } from '../fixtures/counter-service.js';
import { DC, startUserNode } from '../helpers/backend.js';
import { codeWhenSettled, rejects } from '../helpers/expect.js';
import { isRunning } from '../helpers/processes.js';

const counterModule = fileURLToPath(new URL('../fixtures/counter-service.js', import.meta.url));
const notAService = fileURLToPath(new URL('../fixtures/not-a-service.js', import.meta.url));

/** Calls no test expects to wait on for long; generous for a loaded machine. */
const CALL = { timeout: 20_000 } as const;
/** A freeze whose handler is done comes back at once; this is only a bound. */
const FREEZE_MS = 20_000;

/** A pino line as the instances log it. */
interface LogLine {
  level: number;
  msg: string;
  service?: string;
  code?: number | null;
  signal?: string | null;
  reason?: string;
}

/** An agent, a client endpoint on it, and a ServiceInstances that logs into `lines`. */
async function setup(t: ExecutionContext) {
  const node = await startUserNode(t);
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const services = new ServiceInstances(node.socketPath, log);
  // Registered after the node's teardown, so it runs first: no instance outlives the test.
  t.teardown(() => services.stopAll(1_000));
  const client = await node.bind(1);
  const spec = (endpoint: number, module = counterModule): ServiceSpec => ({
    name: `counter${endpoint}`,
    module,
    dc: DC.name,
    endpoint,
  });
  const bound = (endpoint: number) => node.endpointStatus(endpoint);
  return { node, services, lines, client, spec, bound };
}

/** The counter's reply to a request: its count after it. */
async function count(client: Endpoint, endpoint: number): Promise<string> {
  return (await client.sendrec(endpoint, {}, CALL)).payload.toString('utf8');
}

/** The counter's state in a snapshot. */
function stateOf(snapshot: Uint8Array): unknown {
  return JSON.parse(Buffer.from(snapshot).toString('utf8'));
}

test('a freeze returns the state after the calls so far, and a frozen instance handles nothing until resume', async (t) => {
  const { node, services, client, spec, bound } = await setup(t);
  const instance = services.start(spec(5));
  const generation = await instance.serving;
  const status = await bound(5);
  t.is(status?.pid, instance.pid, 'the instance bound the endpoint');
  t.is(status?.generation, generation);

  t.is(await count(client, 5), '1');
  t.is(await count(client, 5), '2');
  await client.send(5, { payload: Buffer.from('5') });
  t.is(await count(client, 5), '8');
  t.deepEqual(stateOf(await instance.freeze(FREEZE_MS)), { count: 8 });

  // Frozen: a message and a request stay in the queue.
  await client.send(5, { payload: Buffer.from('10') });
  const pending = client.sendrec(5, {}, CALL);
  await node.until('a message and a request queued', async () => (await bound(5))?.queued === 2);
  t.deepEqual(
    stateOf(await instance.freeze(FREEZE_MS)),
    { count: 8 },
    'a freeze of a frozen instance: nothing was handled meanwhile',
  );
  await instance.resume();
  t.is((await pending).payload.toString(), '19', 'after resume, the message then the request');
  t.is(await count(client, 5), '20');
});

test('an incoming instance binds, waits for a snapshot, and continues from the restored state', async (t) => {
  const { node, services, client, spec, bound } = await setup(t);
  const source = services.start(spec(5));
  await source.serving;
  for (const expected of ['1', '2', '3']) t.is(await count(client, 5), expected);
  const snapshot = await source.freeze(FREEZE_MS);

  const incoming = services.start(spec(6), { incoming: true });
  let serving = false;
  incoming.serving.then(
    () => {
      serving = true;
    },
    () => {},
  );
  await node.until('the incoming instance to bind', async () => {
    return (await bound(6))?.pid === incoming.pid;
  });
  const early = client.sendrec(6, {}, CALL);
  await node.until('the request to queue', async () => (await bound(6))?.queued === 1);
  t.false(serving, 'an incoming instance serves only once it has restored');
  // '{"count":3}' in pieces of 4 bytes: three of them.
  await incoming.restore(snapshot, 4);
  const generation = await incoming.serving;
  t.is((await bound(6))?.generation, generation);
  t.is((await early).payload.toString(), '4', 'the count continues from the snapshot');
  t.is(await count(client, 6), '5');

  // Rolled back, the source serves its own state.
  await source.resume();
  t.is(await count(client, 5), '4');
});

test('a freeze whose handler never finishes fails with ETIMEDOUT', async (t) => {
  const { node, services, client, spec, bound } = await setup(t);
  const instance = services.start(spec(5));
  await instance.serving;
  const hung = codeWhenSettled(client.sendrec(5, { type: CounterOp.HANG }, CALL));
  await node.until('the handler to run', async () => (await bound(5))?.unansweredRequests === 1);
  const started = Date.now();
  await rejects(t, instance.freeze(300), 'ETIMEDOUT');
  t.true(Date.now() - started < 10_000, 'the freeze gave up within its bound');
  t.deepEqual(await instance.kill(), { code: null, signal: 'SIGKILL' });
  t.is(await hung, 'ESRCH', "the unfinished handler's caller learns its server died");
});

test('a module without a service as default export: serving rejects, saying so', async (t) => {
  const { services, spec, bound } = await setup(t);
  const instance = services.start(spec(5, notAService));
  const err = await t.throwsAsync(instance.serving, { instanceOf: DvkError });
  t.regex(err?.detail ?? '', /counter5.*failed: .*not-a-service\.js does not export a service/);
  t.is((await instance.exited).code, 1);
  t.is(await bound(5), undefined);

  const missing = services.start(spec(6, '/nonexistent/dvk-service.js'));
  const why = await t.throwsAsync(missing.serving, { instanceOf: DvkError });
  t.regex(why?.detail ?? '', /Cannot find module/);
});

test('exit() ends the instance and unbinds its endpoint', async (t) => {
  const { node, services, spec, bound, lines } = await setup(t);
  const instance = services.start(spec(5));
  await instance.serving;
  t.deepEqual(await instance.exit(), { code: 0, signal: null });
  await node.until('endpoint 5 to unbind', async () => (await bound(5)) === undefined);
  t.false(isRunning(instance.pid));
  t.deepEqual(services.instances, []);
  await rejects(t, instance.freeze(FREEZE_MS), 'ESRCH');
  t.truthy(lines.find((l) => l.msg === 'service instance exited' && l.level === 30));
  t.falsy(
    lines.find((l) => l.level >= 50),
    'an exit that was asked for is no error',
  );
});

test('exit() kills an instance that does not exit in time', async (t) => {
  const { node, services, spec, bound } = await setup(t);
  const instance = services.start(spec(5));
  await instance.serving;
  // Stopped, it cannot even read the request to exit.
  process.kill(instance.pid, 'SIGSTOP');
  const started = Date.now();
  t.deepEqual(await instance.exit(300), { code: null, signal: 'SIGKILL' });
  t.true(Date.now() - started < 10_000, 'killed within a bounded time');
  await node.until('endpoint 5 to unbind', async () => (await bound(5)) === undefined);
});

test('an instance that dies is logged as an error with its signal; one that fails, with its reason', async (t) => {
  const { services, client, spec, lines } = await setup(t);
  const killed = services.start(spec(5));
  await killed.serving;
  process.kill(killed.pid, 'SIGKILL');
  t.deepEqual(await killed.exited, { code: null, signal: 'SIGKILL' });
  const died = lines.find((l) => l.msg === 'service instance died' && l.service === 'counter5');
  t.is(died?.level, 50);
  t.is(died?.signal, 'SIGKILL');
  await rejects(t, killed.freeze(FREEZE_MS), 'ESRCH');

  // A handler that throws ends its instance: the caller gets ESRCH, the log the reason.
  const failing = services.start(spec(6));
  await failing.serving;
  t.is(await codeWhenSettled(client.sendrec(6, { type: CounterOp.THROW }, CALL)), 'ESRCH');
  t.is((await failing.exited).code, 1);
  const failed = lines.find((l) => l.msg === 'service failed' && l.service === 'counter6');
  t.is(failed?.level, 50);
  t.regex(failed?.reason ?? '', /the counter was asked to fail/);
  t.is(lines.find((l) => l.msg === 'service instance died' && l.service === 'counter6')?.code, 1);
});
