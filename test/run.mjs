#!/usr/bin/env node
// `npm test`: build, type-check, lint and format-check, then every ava suite. Ends with the line
// `tests: N passed, N failed` that CI reads. Extra arguments go to ava (e.g. a file glob).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

function run(command, args, { capture = false, env = {} } = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'],
      env: { ...process.env, ...env },
    });
    let out = '';
    child.stdout?.on('data', (chunk) => {
      out += chunk;
      process.stdout.write(chunk);
    });
    child.on('close', (code, signal) => resolve({ code: code ?? 128, signal, out }));
  });
}

/** Whether kmod/vm/setup has prepared a kernel to boot (see kmod/vm/run). */
function vmPrepared() {
  const cache = process.env.DVK_VM_CACHE ?? '.cache/vm';
  if (!existsSync(cache)) return false;
  return readdirSync(cache).some((v) => existsSync(`${cache}/${v}/boot/vmlinuz-${v}`));
}

const npx = 'npx';
const steps = [
  ['build and type-check (tsc, strict)', npx, ['tsc', '-p', 'tsconfig.json']],
  ['lint and format check (biome)', npx, ['biome', 'check', '.']],
];
for (const [name, command, args] of steps) {
  process.stdout.write(`\n== ${name}\n`);
  const { code } = await run(command, args);
  if (code !== 0) {
    process.stdout.write(`\n${name} failed\ntests: 0 passed, 1 failed\n`);
    process.exit(1);
  }
}

/** Runs ava over `args` with `env`, and counts its TAP results. */
async function ava(args, env = {}) {
  const result = await run(npx, ['ava', '--tap', ...args], { capture: true, env });
  const counts = { passed: 0, failed: 0, skipped: 0 };
  for (const line of result.out.split('\n')) {
    const m = /^(not ok|ok) \d+ - .*?(# (SKIP|TODO))?$/.exec(line);
    if (!m) continue;
    if (m[3]) counts.skipped++;
    else if (m[1] === 'ok') counts.passed++;
    else counts.failed++;
  }
  // A crash outside any test (an uncaught exception in a test file) fails the run too.
  if (result.code !== 0 && counts.failed === 0) counts.failed = 1;
  return counts;
}

let passed = 0;
let failed = 0;
let skipped = 0;
const extra = process.argv.slice(2);
const suites = [['tests (ava)', extra, {}]];
// The conformance suite again with client and server on different nodes of a cluster (unless
// arguments pick files).
if (!extra.length) {
  suites.push([
    'conformance across nodes (DVK_TEST_BACKEND=cluster)',
    // One test at a time per file: each starts two agents, and a hundred agents starting at
    // once on two CPUs would test the machine, not DVK.
    ['--serial', 'dist/test/conformance/**'],
    { DVK_TEST_BACKEND: 'cluster' },
  ]);
}
for (const [name, args, env] of suites) {
  process.stdout.write(`\n== ${name}\n`);
  const counts = await ava(args, env);
  passed += counts.passed;
  failed += counts.failed;
  skipped += counts.skipped;
}
if (skipped) process.stdout.write(`skipped: ${skipped}\n`);

// The kernel module's tests need the QEMU test VM (kmod/vm/setup, apt and root). Where it is
// not prepared they are skipped, loudly; DVK_KERNEL_TESTS=require (CI) makes that a failure,
// and DVK_KERNEL_TESTS=off leaves them out on purpose.
const kernelMode = process.env.DVK_KERNEL_TESTS ?? 'auto';
if (kernelMode === 'off') {
  process.stdout.write('\n== kernel tests: off (DVK_KERNEL_TESTS=off)\n');
} else if (kernelMode === 'require' || vmPrepared()) {
  // kmod/vm/test builds the module and the TypeScript that kmod/vm/cluster then uses.
  const vmSuites = [
    ['kernel tests (dvk.ko in a QEMU guest: npm run test:kernel)', 'kmod/vm/test', 'kernel'],
    ['two guests as a cluster (npm run test:cluster)', 'kmod/vm/cluster', 'kernel-cluster'],
  ];
  for (const [heading, script, label] of vmSuites) {
    process.stdout.write(`\n== ${heading}\n`);
    const result = await run('bash', [script], { capture: true });
    const m = new RegExp(`^${label}: (\\d+) passed, (\\d+) failed$`, 'm').exec(result.out);
    passed += m ? Number(m[1]) : 0;
    failed += m ? Number(m[2]) : 1;
    if (result.code !== 0 && (!m || m[2] === '0')) failed++;
  }
} else {
  process.stdout.write(
    '\n== kernel tests: SKIPPED. The test VM is not prepared here; run `npm run setup:vm` once' +
      ' (root, apt), or set DVK_KERNEL_TESTS=require to make this a failure.\n',
  );
}
process.stdout.write(`tests: ${passed} passed, ${failed} failed\n`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
