/**
 * The process an agent starts for one instance of a service (lib/agent/services.ts): it loads
 * the service's module and runs it. The agent passes what to run in the environment and
 * steers the instance over the IPC channel; see runtime.ts.
 *
 * The process ends when the service is done: 0 when the agent said exit or went away (its
 * IPC channel closed: an instance never outlives its agent), 1 when the service failed, after
 * telling the agent why. It never lingers: a failed service may still hold its connection to
 * the agent, which would keep it alive with a bound endpoint that nobody serves.
 */
import { pathToFileURL } from 'node:url';
import { assertService } from './define.js';
import { ServiceEnv } from './host-env.js';
import { type ControlFromInstance, type ControlToInstance, runService } from './runtime.js';

/** How long a failing instance waits for its last word to reach the agent. */
const FAILED_FLUSH_MS = 1_000;

function send(message: ControlFromInstance): void {
  if (process.connected) process.send?.(message);
}

/**
 * The agent's messages, kept from the start: the channel drops what arrives while nobody
 * listens, and restore pieces may come while the module is still loading.
 */
const inbox: ControlToInstance[] = [];
let deliver: ((message: ControlToInstance) => void) | undefined;
process.on('message', (m) => {
  if (deliver) deliver(m as ControlToInstance);
  else inbox.push(m as ControlToInstance);
});
process.on('disconnect', () => process.exit(0));
// A Ctrl-C reaches the agent's whole process group; the agent, which gets it too, ends its
// instances itself (asks them to exit), so an instance leaves SIGINT to it.
process.on('SIGINT', () => {});
// An error no handler awaited (a promise a handler left behind, say) fails the service like
// one that a handler threw, with the reason told to the agent.
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

async function main(): Promise<void> {
  const env = (name: string): string => {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set: this process is started by a DVK agent`);
    return value;
  };
  if (!process.send) throw new Error('no IPC channel: this process is started by a DVK agent');
  const path = env(ServiceEnv.MODULE);
  const module = (await import(pathToFileURL(path).href)) as { default?: unknown };
  try {
    assertService(module.default);
  } catch (err) {
    throw new Error(
      `${path} does not export a service as default (defineService): ${(err as Error).message}`,
    );
  }
  await runService(module.default, {
    dc: env(ServiceEnv.DC),
    endpoint: Number(env(ServiceEnv.ENDPOINT)),
    socketPath: env(ServiceEnv.SOCKET),
    incoming: process.env[ServiceEnv.INCOMING] === '1',
    send,
    onControl: (listener) => {
      deliver = listener;
      for (const m of inbox.splice(0)) listener(m);
    },
  });
}

/** Tells the agent why the service cannot go on, then ends the process with 1. */
function fail(err: unknown): void {
  const reason = err instanceof Error ? (err.stack ?? err.message) : String(err);
  const done = () => process.exit(1);
  if (!process.connected) done();
  process.send?.({ op: 'failed', reason } satisfies ControlFromInstance, undefined, {}, done);
  setTimeout(done, FAILED_FLUSH_MS);
}

main().then(() => process.exit(0), fail);
