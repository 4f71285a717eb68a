/**
 * Echo servers for the IPC benchmark, one process each, so client and server never share an
 * event loop. `dvk <socket>`: endpoint 1 of DC bench replies with the request's payload.
 * `unix <path>`: a Node `net` server echoing 4-byte-length-prefixed frames (the baseline).
 */
import { createServer } from 'node:net';
import { openNode } from '../lib/index.js';

const [mode, path] = process.argv.slice(2);
if (!path) throw new Error('usage: echo-server dvk|unix <socket>');

if (mode === 'dvk') {
  const server = await openNode({ socketPath: path }).bind({ dc: 'bench', endpoint: 1 });
  process.send?.('ready');
  for await (const m of server) {
    if (m.kind === 'request') await server.reply(m, { type: m.type, payload: m.payload });
  }
} else {
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    // The baseline echoes bytes as they come: framing is the client's business, and an echo
    // server that parses nothing is the cheapest possible peer.
    socket.on('data', (chunk) => socket.write(chunk));
  });
  server.listen(path, () => process.send?.('ready'));
}
