/**
 * The demo's service: a small key-value store of counters, written as a DVK service so that the
 * agents can move it between nodes while clients call it (lib/service). Its state is a plain
 * object, snapshotted as JSON.
 *
 * INCR carries { key, seq }: seq numbers a client's increments of its key from 1. The store
 * applies the next one, counts one it has applied before as duplicated (and does not apply it
 * again), and one that skips ahead as reordered. STATS returns the whole state.
 */
import { defineService } from '../service/define.js';

export const KvOp = { INCR: 1, GET: 2, STATS: 3 } as const;

export interface KvState {
  values: Record<string, number>;
  /** key -> the last seq applied. */
  applied: Record<string, number>;
  handled: number;
  duplicated: number;
  reordered: number;
  /** How many times this state has moved to another node. */
  moves: number;
}

const json = (value: unknown) => ({ payload: Buffer.from(JSON.stringify(value)) });

export default defineService<KvState>({
  init: () => ({ values: {}, applied: {}, handled: 0, duplicated: 0, reordered: 0, moves: 0 }),
  snapshot: (state) => Buffer.from(JSON.stringify(state)),
  restore(bytes) {
    const state = JSON.parse(Buffer.from(bytes).toString('utf8')) as KvState;
    state.moves++;
    return state;
  },
  onRequest(state, request) {
    state.handled++;
    if (request.type === KvOp.STATS) return json(state);
    const { key, seq } = JSON.parse(request.payload.toString('utf8')) as {
      key: string;
      seq: number;
    };
    if (request.type === KvOp.INCR) {
      const last = state.applied[key] ?? 0;
      if (seq <= last) {
        state.duplicated++;
      } else {
        if (seq !== last + 1) state.reordered++;
        state.applied[key] = seq;
        state.values[key] = (state.values[key] ?? 0) + 1;
      }
    }
    return json({ value: state.values[key] ?? 0 });
  },
});
