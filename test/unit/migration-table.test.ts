/**
 * The endpoint table's part in a migration (docs/migration.md), without an agent: freezing,
 * moving an incarnation out (its queue, held senders and bits go on to the new node, and late
 * calls follow a tombstone), and moving one in behind fences that keep per-sender order.
 * Other nodes are a recording stand-in for the remote routes. Pure logic, no I/O; the real
 * moves between agents are tested in test/migration.
 */
import test from 'ava';
import {
  type Binding,
  type Done,
  EndpointTable,
  LOCAL_ORIGIN,
  type RemoteRoutes,
  type Wait,
} from '../../lib/agent/endpoints.js';
import { DvkError } from '../../lib/errors.js';
import type { Message } from '../../lib/message.js';

const limits = { maxPayload: 65536, queueLength: 2, queueBytes: 1 << 20 };
const DC = 1;
const OLD_NODE = 1;
const NEW_NODE = 2;
const OTHER_NODE = 3;

/** A call the table handed to the remote routes. */
interface Onward {
  kind: 'send' | 'sendrec' | 'notify';
  from: Binding;
  dst: number;
  dstGen: number;
  payload: string;
  bits: number;
  requestId: bigint;
  wait: Wait | undefined;
  done: Done<Message | undefined>;
  cancelled: boolean;
}

/** Records what goes to other nodes; every endpoint not bound here is routed. */
class Recorder implements RemoteRoutes {
  readonly calls: Onward[] = [];
  readonly withdrawn: Binding[] = [];

  has(): boolean {
    return true;
  }
  routes(): boolean {
    return true;
  }
  private add(c: Omit<Onward, 'cancelled'>) {
    const call = { ...c, cancelled: false };
    this.calls.push(call);
    return { cancel: () => (call.cancelled = true) };
  }
  send(
    from: Binding,
    dst: number,
    dstGen: number,
    _t: number,
    p: Buffer,
    wait: Wait,
    done: Done<void>,
  ) {
    const d = done as Done<Message | undefined>;
    return this.add({
      kind: 'send',
      from,
      dst,
      dstGen,
      payload: p.toString(),
      bits: 0,
      requestId: 0n,
      wait,
      done: d,
    });
  }
  sendrec(
    from: Binding,
    dst: number,
    dstGen: number,
    _t: number,
    p: Buffer,
    requestId: bigint,
    wait: Wait,
    done: Done<Message>,
  ) {
    const d = done as Done<Message | undefined>;
    return this.add({
      kind: 'sendrec',
      from,
      dst,
      dstGen,
      payload: p.toString(),
      bits: 0,
      requestId,
      wait,
      done: d,
    });
  }
  notify(from: Binding, dst: number, dstGen: number, bits: number, done: Done<void>): void {
    const d = done as Done<Message | undefined>;
    this.add({
      kind: 'notify',
      from,
      dst,
      dstGen,
      payload: '',
      bits,
      requestId: 0n,
      wait: undefined,
      done: d,
    });
  }
  unbound(): void {}
  withdraw(b: Binding): void {
    this.withdrawn.push(b);
  }
}

function setup() {
  const tb = new EndpointTable(limits, [{ id: DC, name: 'dc', slots: 16 }]);
  const remote = new Recorder();
  tb.remote = remote;
  return { tb, remote };
}

const forever: Wait = { nonblock: false, deadline: 0n };
const now: Wait = { nonblock: true, deadline: 0n };
const within = (ms: number): Wait => ({
  nonblock: false,
  deadline: process.hrtime.bigint() + BigInt(ms) * 1_000_000n,
});
const text = (s: string) => Buffer.from(s);

/** Collects the outcomes of calls as strings, in the order they settle. */
function outcomes() {
  const seen: string[] = [];
  const track =
    (name: string) =>
    (err: DvkError | null, m?: Message | void): void => {
      if (err) seen.push(`${name}:${err.code}`);
      else if (!m) seen.push(`${name}:ok`);
      else seen.push(`${name}:${m.kind === 'notification' ? `bits ${m.bits}` : m.payload}`);
    };
  return { seen, track };
}

function receiveAll(tb: EndpointTable, b: Binding): string[] {
  const got: string[] = [];
  for (;;) {
    let m: Message | undefined;
    tb.receive(b, 0xffff_ffff, 0, now, (err, msg) => {
      if (!err) m = msg;
    });
    if (!m) return got;
    got.push(m.kind === 'notification' ? `bits:${m.bits}` : m.payload.toString());
  }
}

test('a frozen binding gets nothing; senders queue and wait; thawed, it gets all in order', (t) => {
  const { tb } = setup();
  const server = tb.bind(DC, 1, null);
  const client = tb.bind(DC, 2, null);
  const { seen, track } = outcomes();
  tb.receive(server, 0xffff_ffff, 0, forever, track('receive'));
  tb.freeze(server);
  tb.send(client, 1, 0, 0, text('a'), forever, track('a'));
  tb.send(client, 1, 0, 0, text('b'), forever, track('b'));
  tb.send(client, 1, 0, 0, text('c'), forever, track('c'));
  tb.notify(client, 1, 0, 4);
  t.deepEqual(seen, ['a:ok', 'b:ok'], 'two queued, the third held; nothing delivered');
  t.deepEqual(receiveAll(tb, server), [], 'a frozen binding hands out nothing');
  tb.thaw(server);
  t.deepEqual(seen, ['a:ok', 'b:ok', 'receive:bits 4']);
  t.deepEqual(receiveAll(tb, server), ['a', 'b', 'c']);
  t.deepEqual(seen, ['a:ok', 'b:ok', 'receive:bits 4', 'c:ok']);
});

test('moving out sends the queue, then held senders, then bits on to the new node, in order', (t) => {
  const { tb, remote } = setup();
  const server = tb.bind(DC, 1, null);
  const local = tb.bind(DC, 2, null);
  const far = tb.shadow(DC, 3, 9, OTHER_NODE);
  const { seen, track } = outcomes();
  tb.freeze(server);
  tb.send(local, 1, 0, 0, text('l1'), forever, track('l1'));
  tb.sendrec(far, 1, 0, 0, text('f1'), 7n, forever, track('f1'));
  tb.send(local, 1, 0, 0, text('l2'), forever, track('l2'));
  tb.sendrec(local, 1, 0, 0, text('l3'), 8n, forever, track('l3'));
  tb.notify(far, 1, 0, 1);
  tb.notify(far, 1, 0, 2);
  t.deepEqual(seen, ['l1:ok'], 'l1 queued, f1 queued; l2 and l3 held');

  tb.moveOut(server, NEW_NODE);
  t.deepEqual(
    remote.calls.map((c) => [c.kind, c.from.endpoint, c.payload || c.bits]),
    [
      ['send', 2, 'l1'],
      ['sendrec', 3, 'f1'],
      ['send', 2, 'l2'],
      ['sendrec', 2, 'l3'],
      ['notify', 3, 3],
    ],
  );
  t.true(
    remote.calls.every((c) => c.dst === 1 && c.dstGen === server.generation),
    'the same incarnation, elsewhere',
  );
  t.deepEqual(seen, ['l1:ok'], 'nobody finished by the move itself');
  t.is(tb.local(DC, 1), undefined);
  t.deepEqual(tb.movedTo(DC, 1), { generation: server.generation, node: NEW_NODE, epoch: 2 });

  // Verdicts and replies from the new node finish the calls that waited here.
  const [, f1, l2, l3] = remote.calls as [Onward, Onward, Onward, Onward];
  l2.done(null);
  const reply = (payload: string): Message => ({
    kind: 'message',
    source: 1,
    sourceGeneration: server.generation,
    type: 0,
    requestId: 0n,
    bits: 0,
    payload: text(payload),
  });
  f1.done(null, reply('r-f1'));
  l3.done(null, reply('r-l3'));
  t.deepEqual(seen, ['l1:ok', 'l2:ok', 'f1:r-f1', 'l3:r-l3']);
  t.is(local.calls.size, 0);
});

test("a moved request's timeout ends it with ETIMEDOUT and withdraws it from the new node", async (t) => {
  const { tb, remote } = setup();
  const server = tb.bind(DC, 1, null);
  const client = tb.bind(DC, 2, null);
  const { seen, track } = outcomes();
  tb.freeze(server);
  tb.sendrec(client, 1, 0, 0, text('q'), 1n, within(80), track('q'));
  tb.moveOut(server, NEW_NODE);
  const [onward] = remote.calls as [Onward];
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(seen, ['q:ETIMEDOUT']);
  t.true(onward.cancelled, 'the new node is asked to withdraw it');
  onward.done(new DvkError('ECANCELED'));
  t.deepEqual(seen, ['q:ETIMEDOUT'], 'settled once');
});

test('cancelling a held send after the move reaches its call on the new node', (t) => {
  const { tb, remote } = setup();
  const server = tb.bind(DC, 1, null);
  const client = tb.bind(DC, 2, null);
  tb.freeze(server);
  tb.send(client, 1, 0, 0, text('1'), forever, () => {});
  tb.send(client, 1, 0, 0, text('2'), forever, () => {});
  const held = tb.send(client, 1, 0, 0, text('3'), forever, () => {});
  tb.moveOut(server, NEW_NODE);
  held.cancel();
  t.deepEqual(
    remote.calls.map((c) => [c.payload, c.cancelled]),
    [
      ['1', false],
      ['2', false],
      ['3', true],
    ],
  );
});

test('late calls from other nodes follow the tombstone; other incarnations do not', (t) => {
  const { tb, remote } = setup();
  const server = tb.bind(DC, 1, null);
  const far = tb.shadow(DC, 3, 9, OTHER_NODE);
  tb.moveOut(server, NEW_NODE);
  const { seen, track } = outcomes();
  tb.send(far, 1, server.generation, 0, text('late'), forever, track('late'));
  tb.send(far, 1, 0, 0, text('any'), forever, track('any'));
  tb.send(far, 1, server.generation + 1, 0, text('other'), forever, track('other'));
  t.deepEqual(
    remote.calls.map((c) => c.payload),
    ['late', 'any'],
  );
  t.deepEqual(seen, ['other:ENOENT']);
  tb.forgetMoved(DC, 1, server.generation);
  tb.send(far, 1, 0, 0, text('gone'), forever, track('gone'));
  t.deepEqual(seen, ['other:ENOENT', 'gone:ENOENT']);
});

test('moving out withdraws the old instance’s own calls to other nodes', (t) => {
  const { tb, remote } = setup();
  const server = tb.bind(DC, 1, null);
  tb.moveOut(server, NEW_NODE);
  t.deepEqual(remote.withdrawn, [server]);
});

test('an incoming binding holds the number but gets no calls until it moves in', (t) => {
  const { tb, remote } = setup();
  const client = tb.bind(DC, 2, null);
  const incoming = tb.bindIncoming(DC, 1, 41, null);
  t.is(t.throws(() => tb.bind(DC, 1, null), { instanceOf: DvkError })?.code, 'EADDRINUSE');
  tb.send(client, 1, 0, 0, text('to-old'), forever, () => {});
  t.is(remote.calls.length, 1, 'still routed to the old node');
  tb.moveIn(incoming, []);
  const { seen, track } = outcomes();
  tb.send(client, 1, 41, 0, text('here'), forever, track('here'));
  t.deepEqual(seen, ['here:ok']);
  t.deepEqual(receiveAll(tb, incoming), ['here']);
  t.is(incoming.generation, 41);
});

test('a dropped incoming binding frees the number', (t) => {
  const { tb } = setup();
  const incoming = tb.bindIncoming(DC, 1, 41, null);
  tb.dropIncoming(incoming);
  t.is(tb.bind(DC, 1, null).endpoint, 1);
});

test('fences keep each origin’s direct calls behind what it sent through the old node', (t) => {
  const { tb } = setup();
  const incoming = tb.bindIncoming(DC, 1, 41, null);
  const local = tb.bind(DC, 2, null);
  const viaOld = tb.shadow(DC, 2, local.generation, OLD_NODE);
  const far = tb.shadow(DC, 3, 9, OTHER_NODE);
  const farViaOld = tb.shadow(DC, 3, 9, OLD_NODE);
  tb.moveIn(incoming, [LOCAL_ORIGIN, OTHER_NODE]);
  const { seen, track } = outcomes();
  // Direct calls, sent after the move was known: held back.
  tb.send(local, 1, 0, 0, text('local-2'), forever, track('local-2'));
  tb.sendrec(far, 1, 0, 0, text('far-2'), 5n, forever, track('far-2'));
  tb.notify(far, 1, 0, 8, track('far-bits'));
  t.deepEqual(receiveAll(tb, incoming), []);
  // Calls sent before the move, forwarded by the old node: they go first.
  tb.send(farViaOld, 1, 0, 0, text('far-1'), forever, track('far-1'));
  tb.send(viaOld, 1, 0, 0, text('local-1'), forever, track('local-1'));
  t.deepEqual(receiveAll(tb, incoming), ['far-1', 'local-1']);
  tb.liftFence(incoming, OTHER_NODE);
  tb.liftFence(incoming, LOCAL_ORIGIN);
  t.deepEqual(receiveAll(tb, incoming), ['bits:8', 'far-2', 'local-2']);
  t.deepEqual(seen, ['far-1:ok', 'local-1:ok', 'far-bits:ok', 'local-2:ok']);
});

test('a fenced call times out, is cancelled, or ends with its origin, and is never delivered', async (t) => {
  const { tb } = setup();
  const incoming = tb.bindIncoming(DC, 1, 41, null);
  const local = tb.bind(DC, 2, null);
  const far = tb.shadow(DC, 3, 9, OTHER_NODE);
  tb.moveIn(incoming, [LOCAL_ORIGIN, OTHER_NODE]);
  const { seen, track } = outcomes();
  tb.send(local, 1, 0, 0, text('nonblock'), now, track('nonblock'));
  tb.send(local, 1, 0, 0, text('short'), within(50), track('short'));
  const cancelled = tb.sendrec(local, 1, 0, 0, text('cancelled'), 3n, forever, track('cancelled'));
  tb.send(far, 1, 0, 0, text('far'), forever, track('far'));
  cancelled.cancel();
  await new Promise((r) => setTimeout(r, 150));
  tb.dropFence(incoming, OTHER_NODE, new DvkError('EHOSTUNREACH'));
  tb.liftFence(incoming, LOCAL_ORIGIN);
  t.deepEqual(seen, [
    'nonblock:EAGAIN',
    'cancelled:ECANCELED',
    'short:ETIMEDOUT',
    'far:EHOSTUNREACH',
  ]);
  t.deepEqual(receiveAll(tb, incoming), []);
});

test('a binding that moved in and ends before its fences lift ends the calls they held', (t) => {
  const { tb } = setup();
  const incoming = tb.bindIncoming(DC, 1, 41, null);
  const far = tb.shadow(DC, 3, 9, OTHER_NODE);
  tb.moveIn(incoming, [OTHER_NODE]);
  const { seen, track } = outcomes();
  tb.sendrec(far, 1, 0, 0, text('held'), 1n, forever, track('held'));
  tb.unbind(incoming);
  t.deepEqual(seen, ['held:ESRCH']);
  t.is(incoming.fences.size, 0);
});

test('an incoming binding whose instance goes away frees the number', (t) => {
  const { tb } = setup();
  const incoming = tb.bindIncoming(DC, 1, 41, null);
  t.true(tb.incoming(DC, 1));
  tb.unbind(incoming);
  t.false(tb.incoming(DC, 1));
  t.is(tb.bind(DC, 1, null).endpoint, 1);
});
