/**
 * The demo's stateful service: a counter store on one endpoint. Requests carry a key; INCR adds
 * one and returns the new value, GET returns the value. A notification asks it to report its
 * state on stdout. Run: node kv-service.js <socket> <dc> <endpoint>
 */
import { openNode } from '../index.js';
import { KvOp, REPORT_BIT } from './kv-protocol.js';

const [socketPath, dc = 'demo', endpoint = '1'] = process.argv.slice(2);
const node = openNode({ socketPath });
const server = await node.bind({ dc, endpoint: Number(endpoint) });
const counters = new Map<string, number>();
let served = 0;

process.on('SIGTERM', () => void server.close());
process.send?.({ ready: server.address });

for await (const m of server) {
  if (m.kind === 'notification') {
    if (m.bits & REPORT_BIT) {
      const state = Object.fromEntries([...counters].sort());
      console.log(
        `[kv ${server.endpoint}] served ${served} requests, state ${JSON.stringify(state)}`,
      );
    }
    continue;
  }
  if (m.kind !== 'request') continue;
  const key = m.payload.toString('utf8');
  const value = m.type === KvOp.INCR ? (counters.get(key) ?? 0) + 1 : (counters.get(key) ?? 0);
  counters.set(key, value);
  served++;
  const out = Buffer.alloc(8);
  out.writeBigInt64LE(BigInt(value));
  await server.reply(m, { type: 0, payload: out });
}
