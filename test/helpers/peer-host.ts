/**
 * The peer host: runs on one node of a multi-node test (guest B of kmod/vm/cluster) and forks
 * the peers that tests on another node start with `Peer.start({ host })` (test/helpers/peer.ts).
 *
 *   node dist/test/helpers/peer-host.js --listen 10.10.0.2:7200 [--ready FILE] [--spares N]
 *
 * Each TCP connection either starts one peer (`start`): the host forks peer-main, relays the
 * commands to it and its replies and events back, reports its exit, and kills it on `kill` or
 * when the connection closes; or asks for this node's status (`status`), from the agent at the
 * socket path the request names or from dvk.ko. Frames and values are the ones peer.ts defines.
 * `--ready FILE` writes FILE once the host listens. `--spares N` (default 2) keeps N peer
 * processes started ahead of need. SIGTERM kills every peer and exits.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type DvkNode, openNode } from '../../lib/index.js';
import {
  type HostReply,
  type HostRequest,
  type PeerReply,
  readFrames,
  writeFrame,
} from './peer.js';

const main = fileURLToPath(new URL('./peer-main.js', import.meta.url));
const { values } = parseArgs({
  options: {
    listen: { type: 'string' },
    ready: { type: 'string' },
    spares: { type: 'string', default: '2' },
  },
});
if (!values.listen) {
  process.stderr.write('usage: peer-host --listen HOST:PORT [--ready FILE] [--spares N]\n');
  process.exit(2);
}
const at = values.listen.lastIndexOf(':');
const listenHost = values.listen.slice(0, at).replace(/^\[|\]$/g, '');
const listenPort = Number(values.listen.slice(at + 1));
/** Peer processes kept started ahead of need. */
const SPARES = Number(values.spares);

const nodes = new Map<string, DvkNode>();

function reply(socket: Socket, r: HostReply): void {
  if (!socket.destroyed) writeFrame(socket, r);
}

/** The node at `socketPath` (its agent), or dvk.ko; one handle each. */
function nodeAt(socketPath: string | undefined): DvkNode {
  const key = socketPath ?? '';
  let node = nodes.get(key);
  if (!node) {
    node = openNode(socketPath === undefined ? { backend: 'kernel' } : { socketPath });
    nodes.set(key, node);
  }
  return node;
}

/**
 * One peer-main process. It is forked ahead of need (a spare: Node takes a second or more to
 * start under emulation), and what it says before a connection takes it is kept for that
 * connection, so the test sees it exactly as if it had been forked for it.
 */
class PeerProcess {
  static readonly all = new Set<PeerProcess>();
  readonly child: ChildProcess;
  private socket: Socket | undefined;
  private readonly early: PeerReply[] = [];
  private exit: { code: number | null; signal: string | null } | undefined;

  constructor() {
    this.child = fork(main, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    PeerProcess.all.add(this);
    this.child.on('message', (message: PeerReply) => {
      if (this.socket) reply(this.socket, { op: 'message', message });
      else this.early.push(message);
    });
    this.child.on('exit', (code, signal) => {
      PeerProcess.all.delete(this);
      this.exit = { code, signal };
      if (this.socket) this.ended(this.socket);
    });
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  /** Serves `socket` from now on: it is told what the process said so far, then the rest. */
  assign(socket: Socket): (r: HostRequest) => void {
    this.socket = socket;
    reply(socket, { op: 'started', pid: this.child.pid as number });
    for (const message of this.early.splice(0)) reply(socket, { op: 'message', message });
    if (this.exit) this.ended(socket);
    socket.on('close', () => this.kill());
    return (r) => {
      if (r.op === 'command') {
        if (this.child.connected) this.child.send(r.command);
      } else if (r.op === 'kill') this.kill();
    };
  }

  private ended(socket: Socket): void {
    reply(socket, { op: 'exit', ...(this.exit as NonNullable<typeof this.exit>) });
    socket.end();
  }
}

const spares: PeerProcess[] = [];

/** A started peer process for a new connection; another is forked to take its place. */
function takePeer(): PeerProcess {
  let taken = spares.shift();
  while (taken && !taken.running) taken = spares.shift();
  taken ??= new PeerProcess();
  while (spares.length < SPARES) spares.push(new PeerProcess());
  return taken;
}

const server = createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => socket.destroy());
  let handle: ((r: HostRequest) => void) | undefined;
  readFrames<HostRequest>(socket, (r) => {
    if (handle) return handle(r);
    if (r.op === 'start') {
      handle = takePeer().assign(socket);
    } else if (r.op === 'status') {
      handle = () => {};
      nodeAt(r.socketPath)
        .status()
        .then(
          (status) => reply(socket, { op: 'status', ok: true, status }),
          (err: Error) => reply(socket, { op: 'status', ok: false, error: err.message }),
        )
        .finally(() => socket.end());
    } else {
      socket.destroy();
    }
  });
});

server.listen(listenPort, listenHost, () => {
  process.stderr.write(`peer host: listening on ${values.listen}\n`);
  if (values.ready) writeFileSync(values.ready, `${process.pid}\n`);
  while (spares.length < SPARES) spares.push(new PeerProcess());
});
server.on('error', (err) => {
  process.stderr.write(`peer host: ${err.message}\n`);
  process.exit(1);
});
process.on('SIGTERM', () => {
  for (const p of PeerProcess.all) p.kill();
  process.exit(0);
});
