/**
 * The cluster file's schema and the static directory: pure logic, no processes.
 */
import test from 'ava';
import { ConfigError } from '../../lib/agent/config.js';
import { parseCluster } from '../../lib/cluster/config.js';
import { StaticDirectory } from '../../lib/cluster/directory.js';

const base = () => ({
  cluster: { name: 'lab', secret: 'a-secret-of-32-characters-length' },
  nodes: [
    { id: 1, name: 'n1', address: '127.0.0.1:7101' },
    { id: 2, name: 'n2', address: '127.0.0.1:7102' },
    { id: 3, name: 'n3', address: '[::1]:7103' },
  ],
  dcs: [
    { id: 7, name: 'shop', slots: 32, nodes: ['n1', 'n2', 'n3'], placement: { n2: ['0-9', '20'] } },
  ],
});

test('a valid cluster file parses, with link defaults filled in', (t) => {
  const c = parseCluster(base());
  t.is(c.nodes.length, 3);
  t.deepEqual(c.dcs[0]?.placement.n2, [
    { lo: 0, hi: 9 },
    { lo: 20, hi: 20 },
  ]);
  t.is(c.link.heartbeatMs, 500);
  t.true(c.link.nodeDownMs >= c.link.silenceMs);
});

const bad = test.macro({
  exec(t, mutate: (c: ReturnType<typeof base>) => unknown, expected: RegExp[]) {
    const c = base();
    const input = mutate(c) ?? c;
    const err = t.throws(() => parseCluster(input, 'lab.yaml'), { instanceOf: ConfigError });
    t.regex(err?.message ?? '', /lab\.yaml/);
    for (const re of expected) t.regex(err?.message ?? '', re);
  },
  title: (what = '') => `a cluster file with ${what} is refused with the path to the problem`,
});

test(
  'a duplicate node id',
  bad,
  (c) => {
    c.nodes[2] = { ...c.nodes[2], id: 1 } as (typeof c.nodes)[number];
  },
  [/duplicate node id 1/, /nodes\[2\]\.id/],
);
test(
  'a DC naming an unknown node',
  bad,
  (c) => {
    (c.dcs[0] as { nodes: string[] }).nodes.push('n9');
  },
  [/no node named n9/, /dcs\[0\]\.nodes\[3\]/],
);
test(
  'an endpoint placed on two nodes',
  bad,
  (c) => {
    (c.dcs[0] as { placement: Record<string, string[]> }).placement.n1 = ['5-6'];
  },
  [/endpoint 5 is placed on both n2 and n1/],
);
test(
  'a range past the slots',
  bad,
  (c) => {
    (c.dcs[0] as { placement: Record<string, string[]> }).placement.n3 = ['30-40'];
  },
  [/past the DC's 32 slots/],
);
test(
  'an address without a port',
  bad,
  (c) => {
    (c.nodes[0] as { address: string }).address = '127.0.0.1';
  },
  [/host:port/, /nodes\[0\]\.address/],
);
test(
  'a short secret',
  bad,
  (c) => {
    c.cluster.secret = 'short';
  },
  [/at least 16 characters/, /cluster\.secret/],
);
test(
  'a silence shorter than the heartbeat',
  bad,
  (c) => ({
    ...c,
    link: { heartbeatMs: 1000, silenceMs: 500 },
  }),
  [/silenceMs must be longer than heartbeatMs/],
);
test('an unknown key', bad, (c) => ({ ...c, nodez: [] }), [/nodez/]);

test('the static directory locates placed endpoints and says where binding is allowed', (t) => {
  const c = parseCluster(base());
  const n1 = new StaticDirectory(c, 'n1');
  const n2 = new StaticDirectory(c, 'n2');
  t.is(n1.locate(7, 3)?.node.name, 'n2');
  t.is(n1.locate(7, 20)?.node.name, 'n2');
  t.is(n1.locate(7, 15), undefined, 'unplaced numbers live wherever they are bound');
  t.false(n1.mayBindHere(7, 3));
  t.true(n2.mayBindHere(7, 3));
  t.true(n1.mayBindHere(7, 15));
  t.false(n1.mayBindHere(8, 1), 'no such DC');
  t.is(n1.dc('shop')?.id, 7);
  t.is(n1.node(3)?.address, '[::1]:7103');
  t.throws(() => new StaticDirectory(c, 'n9'), {
    instanceOf: ConfigError,
    message: /no node named n9/,
  });
});
