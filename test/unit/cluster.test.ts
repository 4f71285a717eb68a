/**
 * The cluster file's schema and the static directory: pure logic, no processes.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { stringify } from 'yaml';
import { ConfigError } from '../../lib/agent/config.js';
import { loadCluster, parseCluster, servicesOf } from '../../lib/cluster/config.js';
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
  ] as Record<string, unknown>[],
  services: {
    cart: { module: './cart.js', dc: 'shop', endpoint: 12, node: 'n1' },
  } as Record<string, { module: string; dc: string; endpoint: number; node: string }>,
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

test('services parse, default to none, and are found by node', (t) => {
  const c = parseCluster(base());
  t.deepEqual(c.services.cart, { module: './cart.js', dc: 'shop', endpoint: 12, node: 'n1' });
  t.deepEqual(
    servicesOf(c, 'n1').map((s) => s.name),
    ['cart'],
  );
  t.deepEqual(servicesOf(c, 'n2'), []);
  const { services: _, ...without } = base();
  t.deepEqual(parseCluster(without).services, {});
});

test('loadCluster resolves relative service modules against the file, and keeps absolute ones', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'dvk-cluster-file-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const c = base();
  c.services.abs = { module: '/opt/services/abs.js', dc: 'shop', endpoint: 13, node: 'n3' };
  const file = join(dir, 'lab.yaml');
  await writeFile(file, stringify(c));
  const loaded = await loadCluster(file);
  t.is(loaded.services.cart?.module, join(dir, 'cart.js'));
  t.is(loaded.services.abs?.module, '/opt/services/abs.js');
});

/** `base()` with its service changed by `change`. */
const withService = (change: Record<string, unknown>) => (c: ReturnType<typeof base>) => {
  c.services.cart = { ...(c.services.cart as NonNullable<typeof c.services.cart>), ...change };
};

test('a service in an unknown DC', bad, withService({ dc: 'shoop' }), [
  /no DC named shoop/,
  /services\.cart\.dc/,
]);
test('a service on an unknown node', bad, withService({ node: 'n9' }), [
  /no node named n9/,
  /services\.cart\.node/,
]);
test(
  'a service on a node outside its DC',
  bad,
  (c) => {
    (c.dcs[0] as { nodes: string[] }).nodes = ['n1', 'n2'];
    withService({ node: 'n3' })(c);
  },
  [/n3 is not a node of DC shop/, /services\.cart\.node/],
);
test('a service endpoint past the slots', bad, withService({ endpoint: 32 }), [
  /endpoint 32 is outside DC shop's 32 slots/,
  /services\.cart\.endpoint/,
]);
test('a service on a placed endpoint', bad, withService({ endpoint: 20, node: 'n2' }), [
  /endpoint 20 of DC shop is placed on n2/,
  /services\.cart\.endpoint/,
]);
test(
  'two services on one endpoint',
  bad,
  (c) => {
    c.services.basket = { module: './basket.js', dc: 'shop', endpoint: 12, node: 'n3' };
  },
  [/services cart and basket are both on shop\/12/, /services\.basket\.endpoint/],
);
test('an unknown key in a service', bad, withService({ restart: true }), [
  /restart/,
  /services\.cart/,
]);

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
