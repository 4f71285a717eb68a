/**
 * Migration's part on a node whose endpoints live in dvk.ko (docs/migration.md): such a node
 * cannot yet be the source or the destination of a move, but its processes call endpoints that
 * move. It follows MOVED like any node (the Router's record goes to the new node, so dvk.ko's
 * registration follows without ending calls) and sends its FLUSH mark to the old node, so that
 * the new node does not hold its calls back for ever. Asked to prepare or freeze, it answers
 * at once that it cannot, instead of letting the coordinator wait for a timeout.
 */
import type { Logger } from 'pino';
import { Step } from './migration.js';
import { Record, type RemoteRecord, record } from './remote-wire.js';
import type { MigrationRecords, Router } from './router.js';

interface Moved {
  dc: number;
  endpoint: number;
  generation: number;
  epoch: number;
  /** The node it moved from. */
  node: number;
  /** The node it moved to, when the old node passes the news on (else the sender). */
  dest?: number;
}

export class MoveFollower implements MigrationRecords {
  constructor(
    private readonly router: Router,
    private readonly log: Logger,
  ) {
    router.migration = this;
  }

  onRecord(node: number, r: RemoteRecord): void {
    if (r.type === Step.PREPARE || r.type === Step.FREEZE) {
      const body = { code: 'EOPNOTSUPP', detail: 'endpoints in dvk.ko do not move yet' };
      this.post(node, r.id, Step.FAILED, body);
      return;
    }
    if (r.type !== Step.MOVED) return;
    const m = JSON.parse(r.payload.toString('utf8')) as Moved;
    const to = m.dest ?? node;
    if (!this.router.moved(to, m.dc, m.endpoint, m.generation, m.epoch)) return;
    this.log.debug({ ...m, to: this.router.nameOf(to) }, 'an endpoint moved');
    if (m.node !== this.router.self) {
      this.post(m.node, r.id, Step.FLUSH, { ...m, node: this.router.self });
    }
  }

  nodeDown(): void {}

  private post(node: number, id: bigint, step: number, body: object): void {
    const payload = Buffer.from(JSON.stringify(body));
    this.router.send(node, record({ kind: Record.MIGRATE, type: step, id, payload }));
  }
}
