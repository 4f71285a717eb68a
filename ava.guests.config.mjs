// The ava configuration for DVK_TEST_BACKEND=guests, in guest A of two QEMU guests linked as a
// cluster (kmod/vm/cluster, kmod/tests/cluster-guest.sh): the conformance suite with its peers
// in guest B, and the link-cut test (test/guests). One test at a time: the two nodes, their
// agents and their DCs are shared by the whole run (tests that ask for their own queue length
// bind in a DC the cluster file gives that length: test/helpers/backend.ts, GUEST_QUEUE_DCS).
export default {
  files: ['dist/test/conformance/**/*.test.js', 'dist/test/guests/**/*.test.js'],
  timeout: '240s',
  workerThreads: false,
  serial: true,
  concurrency: 1,
  environmentVariables: { DVK_TEST_BACKEND: 'guests' },
};
