/**
 * Kernel-backend test helpers: the module's object counters and a DC of the test's own.
 */
import { closeSync, openSync, readFileSync } from 'node:fs';
import type { ExecutionContext } from 'ava';
import { DEVICE_PATH } from '../../lib/kernel/backend.js';
import { native } from '../../lib/native.js';
import { destroyWhenEmpty } from '../helpers/backend.js';

export { until } from '../helpers/until.js';

export interface ModuleStats {
  dcs: number;
  endpoints: number;
  files: number;
  messages: number;
  calls: number;
  notes: number;
  bytes: number;
  remotes: number;
}

/** /proc/dvk/stats: the module's live objects. */
export function moduleStats(): ModuleStats {
  const out: ModuleStats = {
    dcs: 0,
    endpoints: 0,
    files: 0,
    messages: 0,
    calls: 0,
    notes: 0,
    bytes: 0,
    remotes: 0,
  };
  for (const line of readFileSync('/proc/dvk/stats', 'utf8').trim().split('\n')) {
    const [name, value] = line.split(' ');
    if (name && name in out) out[name as keyof ModuleStats] = Number(value);
  }
  return out;
}

/** Creates a DC for one test (ids from 100 up, so they never meet the conformance DCs). */
export function testDc(t: ExecutionContext, id: number, name: string, queueLength = 0): void {
  const admin = openSync(DEVICE_PATH, 'r+');
  native().dcCreate(admin, id, 64, name, queueLength, 0);
  t.teardown(async () => {
    await destroyWhenEmpty(admin, id);
    closeSync(admin);
  });
}
