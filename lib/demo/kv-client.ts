/**
 * A demo client: increments a shared counter and its own, `calls` times each, with a few calls
 * in flight, then prints what it saw. Run: node kv-client.js <socket> <dc> <endpoint> <server> <calls>
 */
import { openNode } from '../index.js';
import { KvOp } from './kv-protocol.js';

const [socketPath, dc = 'demo', endpoint = '10', serverArg = '1', callsArg = '200'] =
  process.argv.slice(2);
const server = Number(serverArg);
const calls = Number(callsArg);
const node = openNode({ socketPath, defaultTimeout: 10_000 });
const client = await node.bind({ dc, endpoint: Number(endpoint) });

async function incr(key: string): Promise<number> {
  const reply = await client.sendrec(server, { type: KvOp.INCR, payload: Buffer.from(key) });
  return Number(reply.payload.readBigInt64LE(0));
}

const started = performance.now();
let last = 0;
const own = `client-${client.endpoint}`;
for (let i = 0; i < calls; i += 4) {
  const batch = Math.min(4, calls - i);
  const results = await Promise.all(
    Array.from({ length: batch }, () => incr('shared')).concat(incr(own)),
  );
  last = Math.max(last, results[0] ?? 0);
}
const ownValue = Number(
  (
    await client.sendrec(server, { type: KvOp.GET, payload: Buffer.from(own) })
  ).payload.readBigInt64LE(0),
);
const ms = performance.now() - started;
console.log(
  `[client ${client.endpoint}] pid ${process.pid}: ${calls} increments of "shared" ` +
    `(last seen ${last}), own counter ${ownValue}, ${(ms / (calls + Math.ceil(calls / 4))).toFixed(3)} ms/call`,
);
await client.close();
