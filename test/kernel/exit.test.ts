/**
 * A process that exits (or is killed) with endpoints open and calls in flight leaves nothing
 * in the module: every counter goes back to where it was.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import test from 'ava';
import { openNode } from '../../lib/index.js';
import { moduleStats, testDc, until } from './stats.js';

const childSource = `
(async () => {
  const { openNode } = await import(process.argv[1]);
  const node = openNode({ backend: 'kernel' });
  const a = await node.bind({ dc: 102, endpoint: 1 });
  const b = await node.bind({ dc: 102, endpoint: 2 });
  const c = await node.bind({ dc: 102, endpoint: 3 });
  a.receive().catch(() => {});                       // a receive waiting
  for (let i = 0; i < 3; i++) b.send(3, { payload: Buffer.alloc(100) }).catch(() => {});
  b.sendrec(9, {}).catch(() => {});                  // a sendrec to a server that never answers
  await a.notify(3, 1);                              // a notification pending at c
  await new Promise((r) => setTimeout(r, 200));
  process.send ? process.send('ready') : console.log('ready');
  // Told when to go, once the server holds the request: exit(), or wait to be killed.
  if (process.argv[2] === 'exit') process.stdin.once('data', () => process.exit(0));
  setInterval(() => {}, 1000);                       // wait to be killed
})();
`;

for (const how of ['exit', 'SIGKILL'] as const) {
  test(`a process that ends by ${how} with calls in flight leaves every counter as it was`, async (t) => {
    testDc(t, 102, 'exits', 2);
    const node = openNode({ backend: 'kernel' });
    const server = await node.bind({ dc: 102, endpoint: 9 });
    t.teardown(() => server.close());
    const before = moduleStats();
    const lib = new URL('../../lib/index.js', import.meta.url).href;
    const child = spawn(process.execPath, ['--input-type=module', '-e', childSource, lib, how], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    await until('the child to set up its calls', () => out.includes('ready'), 30_000);
    const busy = moduleStats();
    t.is(busy.endpoints, before.endpoints + 3);
    t.true(busy.calls >= 3, 'receive, held send and sendrec are in the kernel');
    t.true(busy.messages >= 3);
    // The server got the request; it dies with the caller.
    const request = await server.receive({ timeout: 5000 });
    t.is(request.kind, 'request');
    if (how === 'SIGKILL') child.kill('SIGKILL');
    else child.stdin.write('go');
    await once(child, 'exit');
    await until('the child to unbind', () => moduleStats().endpoints === before.endpoints);
    // All that is left of it is the request the server owes (a header-only record)...
    t.deepEqual(moduleStats(), { ...before, messages: before.messages + 1 });
    // ...and the reply is accepted and dropped.
    await server.reply(request, {});
    t.deepEqual(moduleStats(), before);
  });
}
