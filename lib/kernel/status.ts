/**
 * Node status for the kernel backend, read from the module's /proc/dvk files and parameters.
 * Columns are found by the names in each file's header line, so added columns do no harm.
 */
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { DcStatus, EndpointStatus, NodeStatus } from '../backend.js';
import { DvkError } from '../errors.js';
import { VERSION } from '../version.js';

const PROC = '/proc/dvk';
const PARAMETERS = '/sys/module/dvk/parameters';

/** The rows of a whitespace-separated table with a header line, as name -> text. */
export function parseTable(text: string): Record<string, string>[] {
  const [head, ...lines] = text.trim().split('\n');
  const names = (head ?? '').trim().split(/\s+/);
  return lines
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const cells = l.trim().split(/\s+/);
      return Object.fromEntries(names.map((n, i) => [n, cells[i] ?? '']));
    });
}

async function read(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    throw new DvkError('EHOSTUNREACH', `${path} is missing: is dvk.ko loaded?`);
  }
}

function endpointStatus(row: Record<string, string>): EndpointStatus {
  const n = (name: string) => Number(row[name] ?? 0);
  return {
    endpoint: n('endpoint'),
    generation: n('generation'),
    queued: n('queued'),
    queuedBytes: n('bytes'),
    blockedSenders: n('held'),
    pendingNotifications: n('notes'),
    waitingReceives: n('receivers'),
    unansweredRequests: n('owed'),
    pendingCalls: n('calls'),
    pid: n('pid') || null,
    counters: {
      sent: n('sent'),
      received: n('received'),
      repliesSent: n('replies'),
      repliesDropped: n('replies_dropped'),
      notifySent: n('notified'),
    },
  };
}

export async function kernelStatus(): Promise<NodeStatus> {
  const [dcs, endpoints, maxPayload, queueLength, queueBytes] = await Promise.all([
    read(`${PROC}/dcs`),
    read(`${PROC}/endpoints`),
    read(`${PARAMETERS}/max_payload`),
    read(`${PARAMETERS}/queue_length`),
    read(`${PARAMETERS}/queue_bytes`),
  ]);
  // Remote endpoints (registered by the agent) live on other nodes: not this node's status.
  const local = parseTable(endpoints).filter((r) => r.node === undefined || r.node === '-1');
  const dcStatus = parseTable(dcs).map(
    (d): DcStatus => ({
      id: Number(d.id),
      name: d.name ?? '',
      slots: Number(d.slots),
      endpoints: local
        .filter((r) => r.dc === d.id)
        .map(endpointStatus)
        .sort((a, b) => a.endpoint - b.endpoint),
    }),
  );
  return {
    node: { name: hostname(), backend: 'kernel', pid: 0, uptimeSeconds: 0, version: VERSION },
    limits: {
      maxPayload: Number(maxPayload),
      queueLength: Number(queueLength),
      queueBytes: Number(queueBytes),
    },
    dcs: dcStatus,
  };
}
