/**
 * The userspace node agent itself: its socket protocol seen raw (malformed frames, garbage,
 * unbound connections), the `dvk` CLI (status, configuration errors), its socket file (stale
 * sockets, a second agent, permissions and DC allow lists) and its shutdown.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, rmSync } from 'node:fs';
import { chmod, cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { constants, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { DvkError, type NodeStatus, openNode } from '../../lib/index.js';
import {
  CallFlags,
  encode,
  type Frame,
  FrameDecoder,
  frame,
  HEADER_SIZE,
  MAGIC,
  Op,
  REPLY_BIT,
} from '../../lib/user/wire.js';
import { VERSION } from '../../lib/version.js';
import { cliPath, DC, numbered, numberOf, startAgent, startUserNode } from '../helpers/backend.js';
import { codeOf, codeWhenSettled, rejects } from '../helpers/expect.js';

const libDir = fileURLToPath(new URL('../../lib/', import.meta.url));

let nobodyLib: Promise<string> | undefined;
/**
 * The built client library, copied where uid 65534 can read it: the checkout itself may sit in
 * a directory only root can enter (a fresh CI clone under mktemp, say). The client needs
 * nothing outside dist/lib.
 */
function libForNobody(): Promise<string> {
  nobodyLib ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dvk-nobody-lib-'));
    await chmod(dir, 0o755);
    // The package's layout (dist/lib next to package.json), which lib/version.js relies on.
    await cp(libDir, join(dir, 'dist', 'lib'), { recursive: true });
    await writeFile(
      join(dir, 'package.json'),
      JSON.stringify({ type: 'module', version: VERSION }),
    );
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    return pathToFileURL(join(dir, 'dist', 'lib', 'index.js')).href;
  })();
  return nobodyLib;
}
const EINVAL = constants.errno.EINVAL;

/** A raw client connection to the agent: writes whatever bytes a test makes up. */
class Raw {
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  private readonly decoder = new FrameDecoder('reply', 64 * 1024 * 1024);
  private wake: (() => void) | undefined;
  private isClosed = false;

  private constructor(readonly socket: Socket) {
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      this.frames.push(...this.decoder.push(chunk));
      this.wake?.();
    });
    this.closed = once(socket, 'close').then(() => {
      this.isClosed = true;
      this.wake?.();
    });
  }

  static open(path: string): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      socket.once('connect', () => resolve(new Raw(socket)));
      socket.once('error', reject);
    });
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  write(data: Frame | Buffer): void {
    this.socket.write(Buffer.isBuffer(data) ? data : Buffer.concat(encode(data)));
  }

  /** The agent's reply to `tag`; throws if the connection closes or `ms` pass first. */
  async reply(tag: number, ms = 5000): Promise<Frame> {
    const end = Date.now() + ms;
    for (;;) {
      const idx = this.frames.findIndex((f) => f.tag === tag);
      if (idx >= 0) return this.frames.splice(idx, 1)[0] as Frame;
      if (this.isClosed) throw new Error(`connection closed before the reply to tag ${tag}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no reply to tag ${tag}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Whether the agent closed the connection within `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    const result = await Promise.race([this.closed.then(() => true as const), timeout]);
    clearTimeout(timer);
    return result;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A call frame as bytes, for tests that corrupt it. */
function bytes(fields: Partial<Frame> & { op: number }): Buffer {
  return Buffer.concat(encode(frame(fields)));
}

const bindFrame = (tag: number, endpoint: number, dc = DC.name) =>
  frame({ op: Op.BIND, tag, peer: endpoint, payload: Buffer.from(dc) });

/** The agent's log lines, parsed (pino writes one JSON object per line). */
function logLines(log: string): Record<string, unknown>[] {
  return log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return {};
      }
    });
}

function violations(log: string): string[] {
  return logLines(log)
    .filter((l) => typeof l.msg === 'string' && l.msg.includes('protocol violation'))
    .map((l) => String(l.reason));
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `dvk ...` to completion (killed after `ms`, which then shows as a signal). */
async function dvk(args: string[], ms = 15_000): Promise<Run> {
  const child = spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  return collect(child, ms);
}

async function collect(child: ChildProcess, ms: number): Promise<Run> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => {
    stdout += d;
  });
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  // 'close', not 'exit': only then has all output been read.
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  return { code, signal, stdout, stderr };
}

/** A private directory (traversable by other users, like startNode's), removed afterwards. */
async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dvk-agent-test-'));
  await chmod(dir, 0o755);
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts an agent the test configures itself; stopped when the test ends. */
async function ownAgent(t: ExecutionContext, socketPath: string, args: string[]) {
  const started = await startAgent(socketPath, args);
  t.teardown(async () => {
    const { agent } = started;
    if (agent.exitCode === null && agent.signalCode === null) {
      const exited = once(agent, 'exit');
      agent.kill('SIGTERM');
      await exited;
    }
  });
  await settled(started.log);
  return started;
}

/**
 * Waits for the agent's "agent listening" line: it answers calls as soon as it listens, but sets
 * the socket's final mode and group only after that (see the report on the agent's start-up).
 */
async function settled(log: () => string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!logLines(log()).some((l) => l.msg === 'agent listening')) {
    if (Date.now() > end) throw new Error(`the agent never logged "agent listening": ${log()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

type BindResult = { ok: true; address: unknown } | { ok: false; code: string; message: string };

/** Binds from a separate process running as uid/gid 65534 (nobody), through the built library. */
async function bindAsNobody(socketPath: string, dc: string, endpoint: number): Promise<BindResult> {
  const script = `
    const { openNode } = await import(process.env.DVK_LIB);
    let out;
    try {
      const ep = await openNode({ socketPath: process.env.SOCK })
        .bind({ dc: process.env.DC, endpoint: Number(process.env.EP) });
      out = { ok: true, address: ep.address };
      await ep.close();
    } catch (err) {
      out = { ok: false, code: err.code ?? 'UNEXPECTED', message: String(err.stack ?? err) };
    }
    process.stdout.write(JSON.stringify(out));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    uid: 65534,
    gid: 65534,
    cwd: '/',
    env: {
      ...process.env,
      DVK_LIB: await libForNobody(),
      SOCK: socketPath,
      DC: dc,
      EP: String(endpoint),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run = await collect(child, 15_000);
  if (!run.stdout) return { ok: false, code: 'NO_OUTPUT', message: run.stderr };
  return JSON.parse(run.stdout) as BindResult;
}

// --- malformed frames ----------------------------------------------------------------------

interface Attack {
  /** What the log's reason must say. */
  reason: RegExp;
  /** Binds the raw connection first (endpoint 3) when set. */
  bound?: boolean;
  send(raw: Raw): Promise<void> | void;
}

const malformed = test.macro({
  async exec(t, attack: Attack) {
    const node = await startUserNode(t);
    const server = await node.peer(1);
    await server.serve('echo');
    const client = await node.bind(2);
    const bystander = await Raw.open(node.socketPath);
    const raw = await Raw.open(node.socketPath);
    if (attack.bound) {
      raw.write(bindFrame(1, 3));
      const bound = await raw.reply(1);
      t.is(bound.status, 0);
      t.is(bound.peer, 3);
    }
    await attack.send(raw);
    t.true(await raw.closedWithin(5000), 'the agent closes the offending connection');
    await node.until('the violation to be logged', async () =>
      violations(node.agentLog).some((r) => attack.reason.test(r)),
    );
    t.true(
      violations(node.agentLog).some((r) => attack.reason.test(r)),
      `logged reasons: ${violations(node.agentLog).join('; ')}`,
    );
    t.is(violations(node.agentLog).length, 1, 'one connection, one violation');

    // Everything else goes on.
    t.true(bystander.isOpen, 'another connection stays open');
    bystander.write(frame({ op: Op.STATUS, tag: 9 }));
    const status = await bystander.reply(9);
    t.is(status.status, 0);
    t.is(status.op, Op.STATUS | REPLY_BIT);
    const reply = await client.sendrec(1, { type: 77, payload: numbered(77) });
    t.is(reply.type, 77);
    t.is(numberOf(reply.payload), 77);
    await client.send(1, { payload: numbered(78) });
    if (attack.bound) {
      await node.until('the offending connection to unbind', async () => {
        return (await node.endpointStatus(3)) === undefined;
      });
    }
    t.deepEqual(
      (await node.status()).dcs
        .flatMap((d) => d.endpoints)
        .map((e) => e.endpoint)
        .sort(),
      [1, 2],
    );
    bystander.destroy();
  },
  title: (what = '') => `${what} closes only its connection; the agent logs why and keeps serving`,
});

test('a frame with a bad magic', malformed, {
  reason: /bad magic/,
  send(raw) {
    const b = bytes({ op: Op.STATUS, tag: 1 });
    b.writeUInt16LE(0x1234, 4);
    raw.write(b);
  },
});

test('a frame of an unsupported version', malformed, {
  reason: /unsupported version 2/,
  send(raw) {
    const b = bytes({ op: Op.STATUS, tag: 1 });
    b.writeUInt8(2, 6);
    raw.write(b);
  },
});

test('a frame whose length is below the header size', malformed, {
  reason: /frame length 20 below header/,
  send(raw) {
    const b = bytes({ op: Op.STATUS, tag: 1 });
    b.writeUInt32LE(20, 0);
    raw.write(b);
  },
});

test('a 1 GiB frame header, without its payload,', malformed, {
  reason: /payload of 1073741824 bytes exceeds the limit/,
  send(raw) {
    const b = bytes({ op: Op.SEND, tag: 1 });
    b.writeUInt32LE(HEADER_SIZE + 2 ** 30, 0);
    raw.write(b);
  },
});

test('a bound connection sending one byte over its payload limit', malformed, {
  reason: /payload of 65537 bytes exceeds the limit of 65536/,
  bound: true,
  send(raw) {
    const b = bytes({ op: Op.SEND, tag: 2, peer: 1 });
    b.writeUInt32LE(HEADER_SIZE + 65537, 0);
    raw.write(b);
  },
});

test('a frame with an unknown op', malformed, {
  reason: /unexpected op 0x20/,
  send(raw) {
    raw.write(frame({ op: 0x20, tag: 1 }));
  },
});

test('a call carrying the reply bit', malformed, {
  reason: /unexpected op 0x88/,
  send(raw) {
    raw.write(frame({ op: Op.STATUS | REPLY_BIT, tag: 1 }));
  },
});

test('a frame with unknown flag bits', malformed, {
  reason: /unknown flags 0x100000/,
  send(raw) {
    raw.write(frame({ op: Op.STATUS, tag: 1, flags: 1 << 20 }));
  },
});

test('a call with a non-zero status', malformed, {
  reason: /status set in a call/,
  send(raw) {
    raw.write(frame({ op: Op.STATUS, tag: 1, status: -1 }));
  },
});

test('a call reusing the tag of a call still waiting', malformed, {
  reason: /tag 7 already in use/,
  bound: true,
  async send(raw) {
    raw.write(frame({ op: Op.RECEIVE, tag: 7, peer: 0xffff_ffff }));
    // The first receive must be waiting before the duplicate arrives: a status round trip on the
    // same connection is answered only after the receive was handled.
    raw.write(frame({ op: Op.STATUS, tag: 8 }));
    await raw.reply(8);
    raw.write(frame({ op: Op.RECEIVE, tag: 7, peer: 0xffff_ffff }));
  },
});

// --- random garbage ------------------------------------------------------------------------

/** mulberry32: a small seeded generator, so a failing run can be replayed from its seed. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

test('2000 connections of random and mutated frames leave the agent alive and serving', async (t) => {
  const node = await startUserNode(t);
  const server = await node.peer(1, 'other');
  await server.serve('echo');
  const client = await node.bind(2, 'other');
  const seed = Number(process.env.DVK_FUZZ_SEED ?? Date.now() % 1_000_000);
  t.log(`seed ${seed} (DVK_FUZZ_SEED replays it)`);
  const random = generator(seed);
  const int = (n: number) => Math.floor(random() * n);
  const u32 = () => int(0x1_0000_0000);
  const templates = (): Buffer[] => [
    bytes(bindFrame(1, int(70))),
    bytes({ op: Op.BIND, tag: 1, peer: int(70), flags: CallFlags.DC_BY_ID, arg: BigInt(int(3)) }),
    bytes({ op: Op.STATUS, tag: 2 }),
    bytes({ op: Op.SEND, tag: 3, peer: int(70), payload: Buffer.alloc(int(64), 1) }),
    bytes({ op: Op.SEND, tag: 4, peer: int(70), flags: CallFlags.NONBLOCK }),
    bytes({ op: Op.RECEIVE, tag: 5, peer: 0xffff_ffff, deadline: BigInt(u32()) }),
    bytes({ op: Op.SENDREC, tag: 6, peer: int(70), arg: BigInt(u32()) }),
    bytes({ op: Op.REPLY, tag: 7, peer: int(70), arg: BigInt(u32()) }),
    bytes({ op: Op.NOTIFY, tag: 8, peer: int(70), arg: BigInt(u32()) }),
    bytes({ op: Op.CANCEL, tag: 9, arg: BigInt(int(10)) }),
  ];
  const pick = <T>(xs: T[]): T => xs[int(xs.length)] as T;
  const mutate = (b: Buffer): Buffer => {
    const out = Buffer.from(b);
    switch (int(5)) {
      case 0: // flip a few bytes anywhere
        for (let i = int(4) + 1; i > 0; i--) out[int(out.length)] = int(256);
        return out;
      case 1: // a random 32-bit header field
        out.writeUInt32LE(u32(), 4 * int(HEADER_SIZE / 4));
        return out;
      case 2: // cut short
        return out.subarray(0, int(out.length));
      case 3: // a wrong length, valid otherwise
        out.writeUInt32LE(HEADER_SIZE + int(8192), 0);
        return out;
      default: // a random 64-bit arg or deadline
        out.writeBigUInt64LE(BigInt(u32()) * BigInt(u32()), int(2) ? 32 : 40);
        return out;
    }
  };
  const attack = (): Buffer => {
    switch (int(4)) {
      case 0: {
        const junk = Buffer.alloc(int(200));
        for (let i = 0; i < junk.length; i++) junk[i] = int(256);
        if (junk.length >= 6 && int(2)) junk.writeUInt16LE(MAGIC, 4);
        return junk;
      }
      case 1:
        return mutate(pick(templates()));
      case 2: // a valid bind, then mutated calls
        return Buffer.concat([pick(templates().slice(0, 2)), mutate(pick(templates()))]);
      default:
        return Buffer.concat(Array.from({ length: int(5) + 1 }, () => mutate(pick(templates()))));
    }
  };

  let stuck = 0;
  let replies = 0;
  const total = 2000;
  const parallel = 40;
  for (let done = 0; done < total; done += parallel) {
    await Promise.all(
      Array.from({ length: Math.min(parallel, total - done) }, async () => {
        const raw = await Raw.open(node.socketPath);
        raw.write(attack());
        raw.socket.end();
        if (!(await raw.closedWithin(10_000))) {
          stuck++;
          raw.destroy();
        }
        replies += raw.frames.length;
      }),
    );
    t.is(node.agent.exitCode, null, `agent exited after ${done + parallel} connections`);
    if (node.agent.exitCode !== null) return;
  }
  t.is(stuck, 0, 'every connection ends once the client ends it');
  // The mix reaches both the call handlers and the violation path.
  await node.until('violations to be logged', async () => violations(node.agentLog).length > 0);
  t.log(`${replies} replies, ${violations(node.agentLog).length} protocol violations`);
  t.true(replies > 0);
  t.is(node.agent.exitCode, null);
  t.is(node.agent.signalCode, null);
  const reply = await client.sendrec(1, { type: 5, payload: numbered(5) });
  t.is(numberOf(reply.payload), 5);
  await node.until('every garbage binding to be gone', async () => {
    const s = await node.status();
    return s.dcs.flatMap((d) => d.endpoints).length === 2;
  });
  const status = await node.status();
  t.deepEqual(
    status.dcs.map((d) => [d.id, d.endpoints.map((e) => e.endpoint)]),
    [
      [1, []],
      [2, [1, 2]],
    ],
  );
});

// --- unbound connections -------------------------------------------------------------------

test('an unbound connection may ask for status; other calls get EINVAL and the connection stays open', async (t) => {
  const node = await startUserNode(t);
  const raw = await Raw.open(node.socketPath);
  raw.write(frame({ op: Op.STATUS, tag: 1 }));
  const status = await raw.reply(1);
  t.is(status.op, Op.STATUS | REPLY_BIT);
  t.is(status.status, 0);
  const parsed = JSON.parse(status.payload.toString('utf8')) as NodeStatus;
  t.true(parsed.dcs.some((d) => d.id === DC.id && d.name === DC.name));

  const ops = [Op.SEND, Op.RECEIVE, Op.SENDREC, Op.REPLY, Op.NOTIFY];
  ops.forEach((op, i) => {
    raw.write(frame({ op, tag: 10 + i, peer: 1, arg: 1n, payload: Buffer.from('x') }));
  });
  for (const [i, op] of ops.entries()) {
    const reply = await raw.reply(10 + i);
    t.is(reply.op, op | REPLY_BIT);
    t.is(reply.status, -EINVAL, `op ${op} on an unbound connection`);
  }
  t.true(raw.isOpen);
  raw.write(frame({ op: Op.STATUS, tag: 20 }));
  t.is((await raw.reply(20)).status, 0);
  raw.write(bindFrame(21, 6));
  const bound = await raw.reply(21);
  t.is(bound.status, 0);
  t.is(bound.peer, 6);
  t.is(bound.arg, BigInt(DC.id));
  t.is(bound.type, (await node.status()).limits.maxPayload);
  t.true(bound.peerGen >= 1);
  t.is((await node.endpointStatus(6))?.pid, process.pid);
  t.deepEqual(violations(node.agentLog), []);
  raw.destroy();
  await node.until('the raw binding to go', async () => !(await node.endpointStatus(6)));
});

// --- dvk status ----------------------------------------------------------------------------

test('dvk status --json prints the node status with a bound endpoint', async (t) => {
  const node = await startUserNode(t);
  const peer = await node.peer(9);
  const run = await dvk(['status', '--json', '--socket', node.socketPath]);
  t.is(run.code, 0, run.stderr);
  const status = JSON.parse(run.stdout) as NodeStatus;
  t.is(status.node.backend, 'user');
  t.is(status.node.pid, node.agent.pid as number);
  const ep = status.dcs.find((d) => d.id === DC.id)?.endpoints.find((e) => e.endpoint === 9);
  t.is(ep?.pid, peer.pid);
  t.is(ep?.generation, peer.address.generation);
});

test('dvk status prints a table with a row for each bound endpoint', async (t) => {
  const node = await startUserNode(t);
  const peer = await node.peer(9);
  await node.bind(12, 'other');
  const run = await dvk(['status', '--socket', node.socketPath]);
  t.is(run.code, 0, run.stderr);
  const rows = run.stdout.split('\n').map((l) => l.trim().split(/\s+/));
  const row = rows.find((r) => r[0] === `${DC.id}:${DC.name}`);
  t.is(row?.[1], '9', run.stdout);
  t.is(row?.[3], String(peer.pid));
  t.true(
    rows.some((r) => r[0] === '2:other' && r[1] === '12'),
    run.stdout,
  );
});

test('dvk status with no agent exits 1 and says the node is unreachable', async (t) => {
  const dir = await tempDir(t);
  const run = await dvk(['status', '--socket', join(dir, 'none.sock')]);
  t.is(run.code, 1);
  t.regex(run.stderr, /EHOSTUNREACH/);
});

// --- configuration -------------------------------------------------------------------------

const badConfig = test.macro({
  async exec(t, yaml: string, expected: RegExp[]) {
    const dir = await tempDir(t);
    const file = join(dir, 'bad.yaml');
    await writeFile(file, yaml);
    const socketPath = join(dir, 'agent.sock');
    const run = await dvk(['agent', '--config', file, '--socket', socketPath]);
    t.is(run.signal, null, 'the agent must refuse to start, not run');
    t.is(run.code, 2);
    for (const re of expected) t.regex(run.stderr, re);
    t.false(existsSync(socketPath), 'no socket is created');
  },
  title: (what = '') => `dvk agent exits 2 and names the problem for a config with ${what}`,
});

test('a YAML syntax error', badConfig, 'dcs: [\n  {id: 1\n', [/bad\.yaml/, /line \d+/]);
test('an unknown key', badConfig, 'limits:\n  queueLenght: 5\n', [
  /queueLenght/,
  /Unrecognized key/i,
  /at limits/,
]);
test('duplicate DC ids', badConfig, 'dcs:\n  - { id: 1, name: a }\n  - { id: 1, name: b }\n', [
  /duplicate DC id/,
  /dcs\[1\]\.id/,
]);
test('a socket mode without owner read and write', badConfig, 'socket:\n  mode: "0400"\n', [
  /socket\.mode/,
]);
test('a socket mode that is not octal', badConfig, 'socket:\n  mode: "rw-rw----"\n', [
  /socket\.mode/,
]);

test('a valid YAML config is honoured: its DCs, slots and limits', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'agent.yaml');
  await writeFile(
    file,
    [
      'node:',
      '  name: edge1',
      'limits:',
      '  queueLength: 3',
      '  maxPayload: 131072',
      'dcs:',
      '  - { id: 7, name: shop, slots: 16 }',
      '  - id: 8',
      '    name: back',
      '',
    ].join('\n'),
  );
  const socketPath = join(dir, 'agent.sock');
  await ownAgent(t, socketPath, ['--config', file]);
  const node = openNode({ socketPath });
  const status = await node.status();
  t.is(status.node.name, 'edge1');
  t.is(status.limits.queueLength, 3);
  t.is(status.limits.maxPayload, 131072);
  t.deepEqual(
    status.dcs.map((d) => [d.id, d.name, d.slots]),
    [
      [7, 'shop', 16],
      [8, 'back', 1024],
    ],
  );
  const receiver = await node.bind({ dc: 'shop', endpoint: 15 });
  t.is(receiver.dc, 7);
  t.is(receiver.maxPayload, 131072);
  const sender = await node.bind({ dc: 7, endpoint: 0 });
  const back = await node.bind({ dc: 8, endpoint: 1023 });
  t.is(back.dc, 8);
  await rejects(t, node.bind({ dc: 'shop', endpoint: 16 }), 'EINVAL');
  await rejects(t, node.bind({ dc: DC.name, endpoint: 1 }), 'ENOENT');
  await sender.send(15, { payload: Buffer.alloc(131072) });
  for (let i = 0; i < 2; i++) await sender.send(15, { payload: numbered(i) }, { timeout: 0 });
  await rejects(t, sender.send(15, { payload: numbered(3) }, { timeout: 0 }), 'EAGAIN');
  await Promise.all([receiver.close(), sender.close(), back.close()]);
});

// --- the socket file -----------------------------------------------------------------------

test('a second agent on the same socket exits 2 and leaves the first one serving', async (t) => {
  const node = await startUserNode(t);
  const run = await dvk(['agent', '--socket', node.socketPath, '--dc', '1:test']);
  t.is(run.signal, null);
  t.is(run.code, 2);
  t.regex(run.stderr, /already listening/);
  const ep = await node.bind(3);
  t.is(ep.dc, DC.id);
  t.is(node.agent.exitCode, null);
});

test('a stale socket left by an agent killed with SIGKILL is replaced by a new agent', async (t) => {
  const dir = await tempDir(t);
  const socketPath = join(dir, 'agent.sock');
  const { agent } = await ownAgent(t, socketPath, ['--dc', '1:test']);
  const exited = once(agent, 'exit');
  agent.kill('SIGKILL');
  await exited;
  t.true((await stat(socketPath)).isSocket(), 'SIGKILL leaves the socket file behind');
  await rejects(t, openNode({ socketPath }).bind({ dc: 'test', endpoint: 1 }), 'EHOSTUNREACH');
  await ownAgent(t, socketPath, ['--dc', '1:test']);
  const ep = await openNode({ socketPath }).bind({ dc: 'test', endpoint: 1 });
  t.is(ep.generation, 1, 'a new agent starts with a fresh table');
  await ep.close();
});

test('an agent whose socket path names a regular file exits 2 and leaves the file alone', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'notes.txt');
  await writeFile(file, 'keep me');
  const run = await dvk(['agent', '--socket', file, '--dc', '1:test']);
  t.is(run.signal, null);
  t.is(run.code, 2);
  t.regex(run.stderr, /is not a socket/);
  t.is(await readFile(file, 'utf8'), 'keep me');
});

test('a socket path longer than 97 bytes is refused with exit 2 before anything is created', async (t) => {
  const dir = await tempDir(t);
  const socketPath = join(dir, `${'s'.repeat(98 - dir.length - 1 - '.sock'.length)}.sock`);
  t.is(Buffer.byteLength(socketPath), 98);
  const run = await dvk(['agent', '--socket', socketPath, '--dc', '1:test']);
  t.is(run.code, 2);
  t.regex(run.stderr, /at most 97 bytes/);
  t.deepEqual(await readdir(dir), []);
  // At exactly 97 bytes the agent serves, staging name and all.
  const fits = `${socketPath.slice(0, -6)}.sock`;
  t.is(Buffer.byteLength(fits), 97);
  await ownAgent(t, fits, ['--dc', '1:test']);
  const ep = await openNode({ socketPath: fits }).bind({ dc: 'test', endpoint: 1 });
  t.is(ep.endpoint, 1);
  await ep.close();
  t.deepEqual(await readdir(dir), [basename(fits)]);
});

test('the socket is created with mode 0600 by default', async (t) => {
  const node = await startUserNode(t);
  await settled(() => node.agentLog);
  const s = await stat(node.socketPath);
  t.true(s.isSocket());
  t.is(s.mode & 0o777, 0o600);
  t.is(s.uid, process.getuid?.() ?? 0);
});

test('--socket-mode and --socket-group set the socket file mode and group', async (t) => {
  const node = await startUserNode(t, {
    agentArgs: ['--socket-mode', '0660', '--socket-group', '65534'],
  });
  await settled(() => node.agentLog);
  const s = await stat(node.socketPath);
  t.is(s.mode & 0o777, 0o660);
  t.is(s.gid, 65534);
});

test('--socket-group also takes a group name from /etc/group', async (t) => {
  const groups = (await readFile('/etc/group', 'utf8'))
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 3 && f[0] && f[2] && f[2] !== '0');
  const [name, , gid] = groups[0] ?? [];
  t.truthy(name, '/etc/group lists a group other than gid 0');
  const node = await startUserNode(t, {
    agentArgs: ['--socket-mode', '0660', '--socket-group', String(name)],
  });
  await settled(() => node.agentLog);
  const s = await stat(node.socketPath);
  t.is(s.mode & 0o777, 0o660);
  t.is(s.gid, Number(gid));
});

test('another user gets EACCES binding through a 0600 socket', async (t) => {
  const node = await startUserNode(t);
  const result = await bindAsNobody(node.socketPath, DC.name, 3);
  t.false(result.ok);
  if (!result.ok) t.is(result.code, 'EACCES', result.message);
  t.is(await node.endpointStatus(3), undefined);
});

test("a DC's allow list refuses other users with EPERM while root and open DCs still bind", async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'agent.yaml');
  await writeFile(
    file,
    [
      'dcs:',
      '  - { id: 1, name: locked, slots: 8, allow: { uids: [0] } }',
      '  - { id: 2, name: open, slots: 8 }',
      '  - { id: 3, name: nogroup, slots: 8, allow: { gids: [65534] } }',
      '',
    ].join('\n'),
  );
  const socketPath = join(dir, 'agent.sock');
  await ownAgent(t, socketPath, ['--config', file, '--socket-mode', '0666']);
  t.is((await stat(socketPath)).mode & 0o777, 0o666);

  const locked = await bindAsNobody(socketPath, 'locked', 1);
  t.false(locked.ok);
  if (!locked.ok) t.is(locked.code, 'EPERM', locked.message);
  const open = await bindAsNobody(socketPath, 'open', 1);
  t.true(open.ok, open.ok ? '' : open.message);
  const byGroup = await bindAsNobody(socketPath, 'nogroup', 1);
  t.true(byGroup.ok, byGroup.ok ? '' : byGroup.message);

  const root = await openNode({ socketPath }).bind({ dc: 'locked', endpoint: 1 });
  t.is(root.dc, 1);
  await root.close();
});

// --- shutdown ------------------------------------------------------------------------------

test('SIGTERM: the agent exits 0, pending calls get EHOSTUNREACH, other files stay', async (t) => {
  const node = await startUserNode(t);
  const keep = join(node.dir, 'keep.txt');
  await writeFile(keep, 'not the agent’s');
  const peer = await node.peer(1);
  const peerReceive = peer.receive();
  const local = await node.bind(2);
  const localReceive = local.receive().then(
    () => 'ok',
    (err: unknown) => (err instanceof DvkError ? err.code : String(err)),
  );
  await node.until('both receives to wait', async () => {
    const eps = (await node.status()).dcs.flatMap((d) => d.endpoints);
    return eps.filter((e) => e.waitingReceives === 1).length === 2;
  });
  const exited = once(node.agent, 'exit');
  node.agent.kill('SIGTERM');
  const [code, signal] = await exited;
  t.is(code, 0);
  t.is(signal, null);
  t.is(await localReceive, 'EHOSTUNREACH');
  const outcome = await peerReceive;
  t.is(outcome.ok ? 'ok' : outcome.error.code, 'EHOSTUNREACH');
  t.true(existsSync(keep), 'a file next to the socket survives');
  t.true(existsSync(node.dir));
  t.false(existsSync(node.socketPath), 'the agent removes its own socket');
  t.true(logLines(node.agentLog).some((l) => l.msg === 'agent stopped'));
  // And the path is free for the next agent.
  await ownAgent(t, node.socketPath, ['--dc', '1:test']);
  const ep = await openNode({ socketPath: node.socketPath }).bind({ dc: 'test', endpoint: 1 });
  await ep.close();
});

// --- the agent dying under its clients --------------------------------------------------

test('calls pending when the agent is killed with SIGKILL reject with EHOSTUNREACH', async (t) => {
  const node = await startUserNode(t);
  const local = await node.bind(1);
  const remote = await node.peer(2);
  await node.bind(3);
  // Settled into codes right away: the calls reject while the test awaits the agent's exit.
  const receive = codeWhenSettled(local.receive());
  const remoteReceive = remote.receive();
  const sendrec = codeWhenSettled(local.sendrec(3, { payload: numbered(1) }));
  await node.until('both receives to wait and the request to queue', async () => {
    const s = await node.status();
    const eps = s.dcs.find((d) => d.id === DC.id)?.endpoints ?? [];
    const waiting = eps.reduce((n, e) => n + e.waitingReceives, 0);
    return waiting === 2 && eps.find((e) => e.endpoint === 3)?.queued === 1;
  });
  const exited = once(node.agent, 'exit');
  node.agent.kill('SIGKILL');
  await exited;
  t.is(await receive, 'EHOSTUNREACH');
  t.is(await sendrec, 'EHOSTUNREACH');
  t.is(codeOf(await remoteReceive), 'EHOSTUNREACH');
  await rejects(t, node.node.bind({ dc: DC.name, endpoint: 4 }), 'EHOSTUNREACH');
});

test('a call after the node agent died fails with EHOSTUNREACH, not EBADF', async (t) => {
  const node = await startUserNode(t);
  const ep = await node.bind(1);
  const pending = ep.receive();
  node.agent.kill('SIGKILL');
  const first = await t.throwsAsync(pending, { instanceOf: DvkError });
  t.is(first?.code, 'EHOSTUNREACH');
  for (const call of [
    () => ep.send(2, {}),
    () => ep.receive({ timeout: 0 }),
    () => ep.notify(2, 1),
  ]) {
    const err = await t.throwsAsync(call(), { instanceOf: DvkError });
    t.is(err?.code, 'EHOSTUNREACH');
  }
  const iterate = async () => {
    for await (const _ of ep) t.fail('nothing to receive');
  };
  t.is((await t.throwsAsync(iterate(), { instanceOf: DvkError }))?.code, 'EHOSTUNREACH');
});
