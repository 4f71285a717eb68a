import test from 'ava';
import { DvkError } from '../../lib/index.js';
import { numbered, numberOf, startNode } from '../helpers/backend.js';

test('sendrec reaches a server in another process and returns its reply', async (t) => {
  const node = await startNode(t);
  const server = await node.peer(1);
  await server.serve('echo');
  const client = await node.bind(2);
  const reply = await client.sendrec(1, { type: 42, payload: Buffer.from('ping') });
  t.is(reply.type, 42);
  t.is(reply.payload.toString(), 'ping');
  t.is(reply.source, 1);
  t.is(reply.sourceGeneration, server.address.generation);
});

test('a server dying with a request received gives the caller ESRCH', async (t) => {
  const node = await startNode(t);
  const server = await node.peer(1);
  await server.serve('hold');
  const client = await node.bind(2);
  const call = client.sendrec(1, { payload: numbered(7) });
  await node.until('the server to take the request', async () => server.requests.length === 1);
  t.is(numberOf(server.requests[0]?.payload ?? Buffer.alloc(8)), 7);
  await server.kill();
  const err = await t.throwsAsync(call, { instanceOf: DvkError });
  t.is(err?.code, 'ESRCH');
  t.is(err?.endpoint, 2);
  t.is(err?.peer, 1);
  await node.release();
  await node.assertEmpty(t);
});
