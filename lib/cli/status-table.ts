import type { NodeStatus } from '../backend.js';

/** `dvk status` as a table for terminals. */
export function formatStatus(status: NodeStatus): string {
  const { node, limits } = status;
  const lines = [
    `node ${node.name}  backend ${node.backend}  agent pid ${node.pid}  ` +
      `up ${node.uptimeSeconds.toFixed(0)}s  dvk ${node.version}`,
    `limits: payload ${limits.maxPayload} B, queue ${limits.queueLength} msgs / ${limits.queueBytes} B`,
  ];
  const cluster = status.cluster;
  if (cluster) {
    lines.push(
      `cluster ${cluster.name}: this is node ${cluster.self.id} (${cluster.self.name}); ` +
        `${cluster.remoteEndpoints} endpoints known on other nodes`,
      '',
      table(
        ['NODE', 'NAME', 'ADDRESS', 'LINK', 'RTT_MS', 'UNACKED', 'CALLS_OUT', 'CALLS_IN', 'RETX'],
        cluster.links.map((l) => [
          String(l.node),
          l.name,
          l.address,
          l.state,
          l.rttMs === null ? '-' : String(l.rttMs),
          String(l.unacked),
          String(l.callsOut),
          String(l.callsIn),
          String(l.counters.retransmitted),
        ]),
      ),
      '',
    );
    if (cluster.services.length) {
      lines.push(
        table(
          ['SERVICE', 'DC', 'EP', 'NODE', 'GEN', 'EPOCH'],
          cluster.services.map((s) => [
            s.name,
            s.dc,
            String(s.endpoint),
            s.node ?? '-',
            s.generation === null ? '-' : String(s.generation),
            s.epoch === null ? '-' : String(s.epoch),
          ]),
        ),
        '',
      );
    }
  }
  const header = [
    'DC',
    'EP',
    'GEN',
    'PID',
    'QUEUED',
    'BYTES',
    'HELD',
    'NOTIFY',
    'RECV',
    'UNANS',
    'CALLS',
    'SENT',
    'RCVD',
  ];
  const rows: string[][] = [];
  for (const dc of status.dcs) {
    for (const ep of dc.endpoints) {
      rows.push([
        `${dc.id}:${dc.name}`,
        String(ep.endpoint),
        String(ep.generation),
        ep.pid === null ? '-' : String(ep.pid),
        String(ep.queued),
        String(ep.queuedBytes),
        String(ep.blockedSenders),
        String(ep.pendingNotifications),
        String(ep.waitingReceives),
        String(ep.unansweredRequests),
        String(ep.pendingCalls),
        String(ep.counters.sent),
        String(ep.counters.received),
      ]);
    }
  }
  if (rows.length === 0) {
    lines.push(
      `no endpoints bound (DCs: ${status.dcs.map((d) => `${d.id}:${d.name}`).join(', ')})`,
    );
    return `${lines.join('\n')}\n`;
  }
  lines.push('', table(header, rows));
  return `${lines.join('\n')}\n`;
}

/** Right-aligned columns under a header. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) => r.map((c, i) => c.padStart(widths[i] ?? 0)).join('  ');
  return [fmt(header), ...rows.map(fmt)].join('\n');
}
