import test from 'ava';
import { DvkError } from '../../lib/index.js';
import { sleep, startNode } from '../helpers/backend.js';

const THIRTY_DAYS = 30 * 24 * 3600 * 1000;

test('timeouts longer than 24.8 days wait instead of expiring at once', async (t) => {
  const node = await startNode(t, { queueLength: 1 });
  const server = await node.bind(1);
  const client = await node.bind(2);
  const sink = await node.bind(3);
  await (await node.bind(4)).send(3, {}); // fills the sink's queue
  const controller = new AbortController();
  const options = { timeout: THIRTY_DAYS, signal: controller.signal };
  const outcomes: string[] = [];
  const track = (name: string, p: Promise<unknown>) =>
    p.then(
      () => outcomes.push(`${name} ok`),
      (err: DvkError) => outcomes.push(`${name} ${err.code}`),
    );
  const all = Promise.all([
    track('receive', client.receive(options)),
    track('sendrec', client.sendrec(1, {}, options)),
    track('held send', client.send(3, {}, options)),
  ]);
  await node.until('the send to be held', async () => {
    return (await node.endpointStatus(3))?.blockedSenders === 1;
  });
  await sleep(100);
  t.deepEqual(outcomes, [], 'nothing may time out');
  controller.abort();
  await all;
  t.deepEqual(outcomes.sort(), ['held send ECANCELED', 'receive ECANCELED', 'sendrec ECANCELED']);
  const withdrawn = await t.throwsAsync(server.receive({ timeout: 0 }), { instanceOf: DvkError });
  t.is(withdrawn?.code, 'EAGAIN', 'the cancelled request was withdrawn');
  t.is((await sink.receive({ timeout: 0 })).source, 4, 'only the filler reached the sink');
  t.is((await node.endpointStatus(3))?.queued, 0);
});
