/**
 * Request/response latency and throughput: DVK's user backend (client -> agent -> server and
 * back) against a Node `net` Unix-socket echo, the floor any socket-based design pays.
 * Each row runs client, agent and server as separate processes. Pinned rows put all of them on
 * CPU 0 (taskset), where a wake-up costs ~2 us instead of 40-60 us across CPUs; one unpinned
 * row shows the difference. Prints a table; writes JSON to bench/results/.
 *
 *   npm run bench                 # all rows
 *   DVK_BENCH_SECONDS=0.5 npm run bench
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHistogram } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { openNode } from '../lib/index.js';

const SECONDS = Number(process.env.DVK_BENCH_SECONDS ?? 1);
const SIZES = [64, 1024, 16 * 1024, 64 * 1024];
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

interface Row {
  path: string;
  payload: number;
  inFlight: number;
  cpus: string;
  calls: number;
  p50us: number;
  p99us: number;
  callsPerSecond: number;
}

/** A call function: one request/response round trip of `payload`. */
type Call = () => Promise<void>;

async function measure(
  call: Call,
  inFlight: number,
): Promise<Omit<Row, 'path' | 'payload' | 'inFlight' | 'cpus'>> {
  const warm = Date.now() + 200;
  while (Date.now() < warm) await call();
  const h = createHistogram();
  let calls = 0;
  const end = performance.now() + SECONDS * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        const t0 = process.hrtime.bigint();
        await call();
        h.record(Number(process.hrtime.bigint() - t0) || 1);
        calls++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  return {
    calls,
    p50us: h.percentile(50) / 1000,
    p99us: h.percentile(99) / 1000,
    callsPerSecond: calls / elapsed,
  };
}

/** Forks a Node script under taskset, restricted to the given CPU list. */
function pinned(cpuList: string, script: string, args: string[]): ChildProcess {
  return fork(script, args, { execPath: 'taskset', execArgv: ['-c', cpuList, process.execPath] });
}

async function dvkClient(socketPath: string) {
  const client = await openNode({ socketPath }).bind({ dc: 'bench', endpoint: 2 });
  return {
    call: (payload: Buffer) => async () => {
      await client.sendrec(1, { type: 1, payload });
    },
    close: () => client.close(),
  };
}

/** The baseline client: length-prefixed frames over one Unix socket, replies matched FIFO. */
async function unixClient(path: string) {
  const socket: Socket = createConnection(path);
  await once(socket, 'connect');
  socket.setNoDelay(true);
  const waiting: { need: number; resolve: () => void }[] = [];
  let buffered = 0;
  socket.on('data', (chunk: Buffer) => {
    buffered += chunk.length;
    while (waiting[0] && buffered >= waiting[0].need) {
      const w = waiting.shift() as { need: number; resolve: () => void };
      buffered -= w.need;
      w.resolve();
    }
  });
  return {
    call: (payload: Buffer) => () =>
      new Promise<void>((resolve) => {
        const head = Buffer.alloc(4);
        head.writeUInt32LE(payload.length);
        waiting.push({ need: 4 + payload.length, resolve });
        socket.write(Buffer.concat([head, payload]));
      }),
    close: async () => {
      socket.destroy();
    },
  };
}

async function main() {
  const affinity = execFileSync('taskset', ['-pc', String(process.pid)])
    .toString()
    .trim();
  const dir = await mkdtemp(join(tmpdir(), 'dvk-bench-'));
  const rows: Row[] = [];
  const children: ChildProcess[] = [];
  try {
    for (const cpuList of ['0', '0,1']) {
      const pinnedOnly = cpuList === '0';
      execFileSync('taskset', ['-pc', cpuList, String(process.pid)]);
      const sock = join(dir, `agent-${cpuList.replace(',', '')}.sock`);
      const agent = spawn(
        'taskset',
        [
          '-c',
          cpuList,
          process.execPath,
          here('../lib/cli/dvk.js'),
          'agent',
          '--socket',
          sock,
          '--dc',
          '1:bench',
          '--log-level',
          'warn',
        ],
        { stdio: 'inherit' },
      );
      children.push(agent);
      for (let i = 0; ; i++) {
        try {
          await openNode({ socketPath: sock }).status();
          break;
        } catch (err) {
          if (i > 400) throw err;
          await new Promise((r) => setTimeout(r, 25));
        }
      }
      const dvkServer = pinned(cpuList, here('echo-server.js'), ['dvk', sock]);
      const unixPath = join(dir, `echo-${cpuList.replace(',', '')}.sock`);
      const unixServer = pinned(cpuList, here('echo-server.js'), ['unix', unixPath]);
      children.push(dvkServer, unixServer);
      await Promise.all([once(dvkServer, 'message'), once(unixServer, 'message')]);
      const clients = {
        'dvk sendrec (user backend)': await dvkClient(sock),
        'node net unix socket': await unixClient(unixPath),
      };
      const sizes = pinnedOnly ? SIZES : [64];
      for (const payload of sizes) {
        for (const inFlight of pinnedOnly ? [1, 64] : [1]) {
          for (const [path, client] of Object.entries(clients)) {
            const m = await measure(client.call(Buffer.alloc(payload, 0x5a)), inFlight);
            rows.push({
              path,
              payload,
              inFlight,
              cpus: pinnedOnly ? 'all on CPU 0' : 'unpinned (0,1)',
              ...m,
            });
          }
        }
      }
      for (const c of Object.values(clients)) await c.close();
    }
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  }
  report(rows, affinity);
}

function report(rows: Row[], affinity: string) {
  const baseline = (r: Row) =>
    rows.find(
      (b) =>
        b.path === 'node net unix socket' &&
        b.payload === r.payload &&
        b.inFlight === r.inFlight &&
        b.cpus === r.cpus,
    );
  const table = rows.map((r) => {
    const b = baseline(r);
    return {
      path: r.path,
      cpus: r.cpus,
      payload: r.payload,
      inFlight: r.inFlight,
      'p50 us': r.p50us.toFixed(1),
      'p99 us': r.p99us.toFixed(1),
      'calls/s': Math.round(r.callsPerSecond),
      'p50 vs unix': b ? (r.p50us / b.p50us).toFixed(2) : '',
      'calls/s vs unix': b ? (r.callsPerSecond / b.callsPerSecond).toFixed(2) : '',
    };
  });
  console.table(table);
  const env = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model,
    vcpus: cpus().length,
    kernel: execFileSync('uname', ['-r']).toString().trim(),
    affinityAtStart: affinity,
    secondsPerRow: SECONDS,
  };
  const out = join(here('../../bench/results'));
  return mkdir(out, { recursive: true }).then(() =>
    writeFile(
      join(out, `ipc-${env.date.replace(/[:.]/g, '-')}.json`),
      JSON.stringify({ env, rows }, null, 2),
    ),
  );
}

await main();
