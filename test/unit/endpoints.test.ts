/**
 * The endpoint table's access rules, without an agent: pure logic, no I/O.
 */
import test from 'ava';
import { EndpointTable } from '../../lib/agent/endpoints.js';
import { DvkError } from '../../lib/errors.js';

const limits = { maxPayload: 65536, queueLength: 4, queueBytes: 1 << 20 };
const table = () =>
  new EndpointTable(limits, [
    { id: 1, name: 'open', slots: 8 },
    { id: 2, name: 'staff', slots: 8, allow: { uids: [1000], gids: [50] } },
  ]);
const user = (uid: number, gid: number) => ({ pid: 1, uid, gid });

test('a DC allow list admits listed uids and gids and root, and refuses others', (t) => {
  const tb = table();
  t.is(tb.bind('staff', 1, user(1000, 1000)).endpoint, 1);
  t.is(tb.bind('staff', 2, user(2000, 50)).endpoint, 2);
  t.is(tb.bind('staff', 3, user(0, 0)).endpoint, 3);
  const err = t.throws(() => tb.bind('staff', 4, user(2000, 2000)), { instanceOf: DvkError });
  t.is(err?.code, 'EPERM');
  t.is(tb.bind('open', 4, user(2000, 2000)).endpoint, 4);
});

test('a process whose credentials are unknown cannot bind in a restricted DC', (t) => {
  const tb = table();
  const err = t.throws(() => tb.bind('staff', 1, null), { instanceOf: DvkError });
  t.is(err?.code, 'EPERM');
  t.is(tb.bind('open', 1, null).endpoint, 1);
});

test("a DC's own queue length bounds its queues; other DCs keep the node's", (t) => {
  const tb = new EndpointTable(limits, [
    { id: 1, name: 'open', slots: 8 },
    { id: 3, name: 'tight', slots: 8, queueLength: 1 },
  ]);
  const outcomes = (dc: string) => {
    const receiver = tb.bind(dc, 1, null);
    const sender = tb.bind(dc, 2, null);
    const results: string[] = [];
    for (let i = 0; i < 3; i++) {
      tb.send(
        sender,
        receiver.endpoint,
        0,
        0,
        Buffer.alloc(1),
        { nonblock: true, deadline: 0n },
        (err) => results.push(err ? err.code : 'queued'),
      );
    }
    return results;
  };
  t.deepEqual(outcomes('tight'), ['queued', 'EAGAIN', 'EAGAIN']);
  t.deepEqual(outcomes('open'), ['queued', 'queued', 'queued']);
});
