/**
 * The README's API example, type-checked against the public API and run against a real agent.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import ts from 'typescript';
import { startAgent } from './helpers/backend.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

async function example(): Promise<string> {
  const readme = await readFile(join(root, 'README.md'), 'utf8');
  const m =
    /<!-- readme-example:start -->\s*```ts\n([\s\S]*?)```\s*<!-- readme-example:end -->/.exec(
      readme,
    );
  if (!m?.[1]) throw new Error('README has no example block');
  return m[1];
}

test('the README example type-checks against the public API', async (t) => {
  // Inside the package, `import 'dvk'` resolves to the package itself through its exports.
  const file = join(root, 'dist', 'test', 'readme-example.ts');
  await writeFile(file, await example());
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ['node'],
  };
  const program = ts.createProgram([file], options);
  const problems = ts
    .getPreEmitDiagnostics(program)
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  t.deepEqual(problems, []);
});

test('the README example runs and prints what its comments say', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'dvk-readme-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'agent.sock');
  const { agent } = await startAgent(socketPath, ['--dc', '0:default']);
  t.teardown(() => agent.kill('SIGTERM'));
  const js = ts.transpileModule(await example(), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  const file = join(root, 'dist', 'test', 'readme-example.mjs');
  await writeFile(file, js);
  const { stdout } = await promisify(execFile)(process.execPath, [file], {
    env: { ...process.env, DVK_SOCKET: socketPath },
    timeout: 20_000,
  });
  t.deepEqual(stdout.trim().split('\n'), ['HELLO', 'ENOENT']);
});
