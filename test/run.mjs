#!/usr/bin/env node
// `npm test`: build, type-check, lint and format-check, then every ava suite. Ends with the line
// `tests: N passed, N failed` that CI reads. Extra arguments go to ava (e.g. a file glob).
import { spawn } from 'node:child_process';

function run(command, args, { capture = false } = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'],
    });
    let out = '';
    child.stdout?.on('data', (chunk) => {
      out += chunk;
      process.stdout.write(chunk);
    });
    child.on('close', (code, signal) => resolve({ code: code ?? 128, signal, out }));
  });
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

process.stdout.write('\n== tests (ava)\n');
const ava = await run(npx, ['ava', '--tap', ...process.argv.slice(2)], { capture: true });
let passed = 0;
let failed = 0;
let skipped = 0;
for (const line of ava.out.split('\n')) {
  const m = /^(not ok|ok) \d+ - .*?(# (SKIP|TODO))?$/.exec(line);
  if (!m) continue;
  if (m[3]) skipped++;
  else if (m[1] === 'ok') passed++;
  else failed++;
}
// A crash outside any test (an uncaught exception in a test file) fails the run too.
if (ava.code !== 0 && failed === 0) failed = 1;
if (skipped) process.stdout.write(`skipped: ${skipped}\n`);
process.stdout.write(`tests: ${passed} passed, ${failed} failed\n`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
