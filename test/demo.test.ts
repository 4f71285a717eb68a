/**
 * The README's first command runs this demo (`npm run demo`): it must keep working and keep
 * its promise, exit code 0 only with every count zero after real moves under load.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import test from 'ava';

const demo = fileURLToPath(new URL('../lib/demo/cluster-demo.js', import.meta.url));

test('the cluster demo moves its services under load, drains a node, and counts nothing wrong', async (t) => {
  t.timeout(180_000);
  const child = spawn(process.execPath, [demo], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  t.is(code, 0, out);
  t.regex(out, /move 8\/8: /);
  t.regex(out, /drained n2: 2 moved, 0 failed/);
  const summary =
    /summary: (\d+) migrations, (\d+) calls, 0 errors, 0 lost, 0 duplicated, 0 reordered; worst stall ([\d.]+) ms/.exec(
      out,
    );
  t.truthy(summary, out);
  t.is(Number(summary?.[1]), 10);
  t.true(Number(summary?.[2]) > 100, 'the clients kept calling');
  t.log(summary?.[0]);
});
