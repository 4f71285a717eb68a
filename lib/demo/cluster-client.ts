/**
 * A demo client process: it calls the demo's key-value services in a loop, through its own
 * node's agent, each call an INCR of its own key numbered from 1, and reports what it saw to
 * the demo (over the IPC channel): calls, errors, acknowledged increments per key, and the
 * longest any call took. Run by cluster-demo.ts: cluster-client.js <socket> <dc> <name> <endpoints...>
 */
import { openNode } from '../index.js';
import { KvOp } from './kv-store.js';

export interface ClientReport {
  name: string;
  calls: number;
  errors: string[];
  /** key -> increments acknowledged. */
  acked: Record<string, number>;
  worstStallMs: number;
}

const [socketPath = '', dc = 'demo', name = 'client', ...endpoints] = process.argv.slice(2);
const node = openNode({ socketPath });
const ep = await node.bind({ dc, endpoint: 100 + Number(name.replace(/\D/g, '')) });
const report: ClientReport = { name, calls: 0, errors: [], acked: {}, worstStallMs: 0 };
const seqs = new Map<string, number>();
let running = true;

process.on('message', (m) => {
  if (m === 'stop') running = false;
});
const progress = setInterval(() => process.send?.({ progress: report }), 200);

while (running) {
  for (const target of endpoints.map(Number)) {
    const key = `${name}@${target}`;
    const seq = (seqs.get(key) ?? 0) + 1;
    seqs.set(key, seq);
    const started = performance.now();
    report.calls++;
    try {
      await ep.sendrec(
        target,
        { type: KvOp.INCR, payload: Buffer.from(JSON.stringify({ key, seq })) },
        { timeout: 30_000 },
      );
      report.acked[key] = (report.acked[key] ?? 0) + 1;
    } catch (err) {
      report.errors.push(`${key} #${seq}: ${String(err)}`);
    }
    report.worstStallMs = Math.max(report.worstStallMs, performance.now() - started);
  }
}
clearInterval(progress);
await ep.close();
process.send?.({ final: report }, () => process.disconnect());
