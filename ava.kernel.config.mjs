// The ava configuration for the kernel backend, inside the test VM (kmod/vm/test): the
// conformance suite, the addon's tests and the kernel-only tests, one at a time, since DC ids
// and names belong to the node.
export default {
  files: [
    'dist/test/conformance/**/*.test.js',
    'dist/test/native/**/*.test.js',
    'dist/test/kernel/**/*.test.js',
  ],
  timeout: '240s',
  workerThreads: false,
  serial: true,
  concurrency: 1,
  environmentVariables: { DVK_TEST_BACKEND: 'kernel' },
  nodeArguments: ['--expose-gc'],
};
