// The ava configuration for DVK_TEST_BACKEND=guests, in guest A of two QEMU guests linked as a
// cluster (kmod/vm/cluster, kmod/tests/cluster-guest.sh): the conformance suite with its peers
// in guest B, and the link-cut test (test/guests). One test at a time: the two nodes, their
// agents and their DCs are shared by the whole run.
//
// The agents run for the whole suite with the cluster file's limits, so a test that asks
// startNode for its own (`startNode(t, { queueLength: 1 })`) cannot run here: those are found
// in the built conformance files and left out by title; `skipped` lists them and why.
import { readdirSync, readFileSync } from 'node:fs';

const conformance = 'dist/test/conformance';
const reason =
  "startNode options: per-test queue limits, and the guests' agents run for the whole suite";

/** The tests of the built conformance suite that pass options to startNode. */
function withNodeOptions() {
  const found = [];
  for (const file of readdirSync(conformance)
    .filter((f) => f.endsWith('.test.js'))
    .sort()) {
    const source = readFileSync(`${conformance}/${file}`, 'utf8');
    // Each test from its declaration to the next one.
    for (const part of source.split(/^(?=test\()/m).slice(1)) {
      const title = /^test\((['"`])((?:\\.|(?!\1).)*)\1/.exec(part)?.[2];
      if (title && /startNode\(t, \{/.test(part)) {
        found.push({ file, title: title.replace(/\\(.)/g, '$1'), reason });
      }
    }
  }
  return found;
}

export const skipped = withNodeOptions();

export default {
  files: ['dist/test/conformance/**/*.test.js', 'dist/test/guests/**/*.test.js'],
  timeout: '240s',
  workerThreads: false,
  serial: true,
  concurrency: 1,
  environmentVariables: { DVK_TEST_BACKEND: 'guests' },
  // `*` would be a wildcard in a title pattern; none of these titles has one.
  match: skipped.map((s) => `!${s.title}`),
};
