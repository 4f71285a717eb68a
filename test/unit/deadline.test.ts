import test from 'ava';
import { deadlineTimer } from '../../lib/deadline.js';

const msFromNow = (ms: number) => process.hrtime.bigint() + BigInt(ms) * 1_000_000n;

test('a deadline fires once it has passed, not before', async (t) => {
  const deadline = msFromNow(30);
  const firedAt = await new Promise<bigint>((resolve) =>
    deadlineTimer(deadline, () => resolve(process.hrtime.bigint())),
  );
  t.true(firedAt >= deadline);
});

test('a deadline beyond the 24.8-day timer limit does not fire early', async (t) => {
  let fired = false;
  const timer = deadlineTimer(msFromNow(30 * 24 * 3600 * 1000), () => {
    fired = true;
  });
  await new Promise((r) => setTimeout(r, 50));
  timer?.clear();
  t.false(fired);
});

test('no deadline means no timer, and a cleared one never fires', async (t) => {
  t.is(
    deadlineTimer(0n, () => t.fail()),
    undefined,
  );
  let fired = false;
  deadlineTimer(msFromNow(5), () => {
    fired = true;
  })?.clear();
  await new Promise((r) => setTimeout(r, 30));
  t.false(fired);
});
