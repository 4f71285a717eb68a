/**
 * The peer host: runs on one node of a multi-node test (guest B of kmod/vm/cluster) and forks
 * the peers that tests on another node start with `Peer.start({ host })` (test/helpers/peer.ts).
 *
 *   node dist/test/helpers/peer-host.js --listen 10.10.0.2:7200 [--ready FILE]
 *
 * Each TCP connection either starts one peer (`start`): the host forks peer-main, relays the
 * commands to it and its replies and events back, reports its exit, and kills it on `kill` or
 * when the connection closes; or asks for this node's status (`status`), from the agent at the
 * socket path the request names or from dvk.ko. Frames and values are the ones peer.ts defines.
 * `--ready FILE` writes FILE once the host listens. SIGTERM kills every peer and exits.
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
  options: { listen: { type: 'string' }, ready: { type: 'string' } },
});
if (!values.listen) {
  process.stderr.write('usage: peer-host --listen HOST:PORT [--ready FILE]\n');
  process.exit(2);
}
const at = values.listen.lastIndexOf(':');
const listenHost = values.listen.slice(0, at).replace(/^\[|\]$/g, '');
const listenPort = Number(values.listen.slice(at + 1));

const children = new Set<ChildProcess>();
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

/** Runs one peer for `socket`: forked now, gone when it exits or the connection closes. */
function startPeer(socket: Socket): (r: HostRequest) => void {
  const child = fork(main, [], {
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  reply(socket, { op: 'started', pid: child.pid as number });
  child.on('message', (message: PeerReply) => reply(socket, { op: 'message', message }));
  child.on('exit', (code, signal) => {
    children.delete(child);
    reply(socket, { op: 'exit', code, signal });
    socket.end();
  });
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  socket.on('close', kill);
  return (r) => {
    if (r.op === 'command') {
      if (child.connected) child.send(r.command);
    } else if (r.op === 'kill') kill();
  };
}

const server = createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => socket.destroy());
  let handle: ((r: HostRequest) => void) | undefined;
  readFrames<HostRequest>(socket, (r) => {
    if (handle) return handle(r);
    if (r.op === 'start') {
      handle = startPeer(socket);
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
});
server.on('error', (err) => {
  process.stderr.write(`peer host: ${err.message}\n`);
  process.exit(1);
});
process.on('SIGTERM', () => {
  for (const child of children) child.kill('SIGKILL');
  process.exit(0);
});
