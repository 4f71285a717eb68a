/**
 * Calls between dvk.ko and other nodes: the agent holds the module's proxy role (see "The
 * proxy role" in the uAPI header). Endpoints of other nodes are registered in the module, so
 * local processes address them like any endpoint; what they send is drained many records per
 * ioctl and carried over the links, and what arrives is injected many records per ioctl.
 *
 * The proxy is attached with DVK_PROXY_CLAIMS: a local bind waits in the kernel until the
 * Router's claim round answers, so endpoint numbers stay unique across the cluster and a bind
 * is known everywhere when it returns, as on the user backend.
 *
 * One difference from the user backend remains: a plain send to a remote endpoint completes
 * once it is in the module's queue for that endpoint (the node's custody), not once the other
 * node accepted it; docs/cluster.md says so.
 */
import { closeSync } from 'node:fs';
import { constants } from 'node:os';
import type { Logger } from 'pino';
import type { DcConfig, Limits } from '../agent/endpoints.js';
import { DvkError } from '../errors.js';
import { openDevice } from '../kernel/backend.js';
import { type NativeAddon, type NativePoller, native } from '../native.js';
import { type BoundRecord, Record, type RemoteRecord, record } from './remote-wire.js';
import type { LocalNode, Router } from './router.js';
import { entry } from './table-calls.js';

/** A record as the module lays it out (struct dvk_proxy_msg), with its payload. */
interface ProxyRecord {
  kind: number;
  dc: number;
  dst: number;
  dstGen: number;
  src: number;
  srcGen: number;
  type: number;
  bits: number;
  requestId: bigint;
  status: number;
  payload: Buffer;
}

/** A local caller's sendrec waiting on another node. */
interface OutgoingRequest {
  node: number;
  dc: number;
  caller: number;
  callerGen: number;
  server: number;
  serverGen: number;
  requestId: bigint;
}

/** A record waiting to be injected, and what to do if the module refuses it. */
interface Pending {
  bytes: Buffer;
  refused?: (code: string) => void;
  accepted?: () => void;
}

const EIO = constants.errno.EIO;

/** How often injection is retried while a destination has no room (EAGAIN). */
const RETRY_MS = 2;

export class KernelCalls implements LocalNode {
  private readonly addon: NativeAddon;
  private readonly fd: number;
  private readonly poller: NativePoller;
  private readonly kinds: NativeAddon['abi']['proxy']['kinds'];
  private readonly recordSize: number;
  private readonly drainBuffer: Buffer;
  /** Endpoints bound in the module on this node, dc:endpoint -> generation. */
  private readonly local = new Map<string, number>();
  private readonly dcs: Set<number>;
  private readonly outgoing = new Map<bigint, OutgoingRequest>();
  /** Remote callers' requests injected here, by dc:caller:gen:requestId -> node and call id. */
  private readonly incoming = new Map<string, { node: number; id: bigint }>();
  private readonly injectQueue: Pending[] = [];
  private injectScheduled = false;
  private retry: NodeJS.Timeout | undefined;
  private nextId = 1n;
  private closed = false;

  constructor(
    private readonly router: Router,
    dcs: DcConfig[],
    limits: Limits,
    private readonly log: Logger,
  ) {
    this.addon = native();
    this.kinds = this.addon.abi.proxy.kinds;
    this.recordSize = this.addon.abi.proxy.recordSize;
    this.drainBuffer = Buffer.alloc(Math.max(1 << 20, 2 * (this.recordSize + limits.maxPayload)));
    this.dcs = new Set(dcs.map((d) => d.id));
    this.fd = openDevice();
    try {
      const version = this.addon.dvkVersion(this.fd);
      if (!(version.features & this.addon.abi.proxy.featureClaims)) {
        throw new DvkError('EPROTO', 'this dvk.ko has no DVK_FEATURE_CLAIMS: rebuild it');
      }
      if (version.maxPayload !== limits.maxPayload) {
        throw new DvkError(
          'EINVAL',
          `dvk.ko's max_payload is ${version.maxPayload}; the cluster's is ${limits.maxPayload}`,
        );
      }
      for (const dc of dcs) this.createDc(dc, limits);
      this.addon.proxyAttach(this.fd, router.self, this.addon.abi.proxy.claims);
    } catch (err) {
      closeSync(this.fd);
      throw err;
    }
    // The poller owns the file from here: closing it detaches the proxy.
    this.poller = new this.addon.Poller(this.fd, () => this.drain());
    router.attach(this);
    this.poller.start();
  }

  private createDc(dc: DcConfig, limits: Limits): void {
    try {
      this.addon.dcCreate(this.fd, dc.id, dc.slots, dc.name, limits.queueLength, limits.queueBytes);
    } catch (err) {
      // An earlier agent made it; processes may be bound in it.
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
    }
  }

  /** The node leaves the cluster: its endpoints are announced gone. */
  leave(): void {
    for (const b of this.bound()) this.router.announceUnbound(b.dc, b.endpoint, b.generation);
    this.local.clear();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retry);
    // The module ends calls to remote endpoints with EHOSTUNREACH, and waiting binds complete.
    this.poller.close();
  }

  // --- LocalNode ---

  bound(): BoundRecord[] {
    return [...this.local].map(([k, generation]) => {
      const [dc, endpoint] = k.split(':').map(Number) as [number, number];
      return { dc, endpoint, generation };
    });
  }

  isBound(dc: number, endpoint: number): boolean {
    return this.local.has(`${dc}:${endpoint}`);
  }

  hasDc(dc: number): boolean {
    return this.dcs.has(dc);
  }

  remoteBound(node: number, dc: number, endpoint: number, generation: number): void {
    try {
      this.addon.remoteAdd(this.fd, dc, endpoint, generation, node);
    } catch (err) {
      // EADDRINUSE: bound here too (only after a partition; the Router logged it).
      this.log.warn({ dc, endpoint, node, code: (err as { code?: string }).code }, 'REMOTE_ADD');
    }
  }

  remoteUnbound(
    _node: number,
    dc: number,
    endpoint: number,
    generation: number,
    code: 'ESRCH' | 'EHOSTUNREACH',
  ): void {
    const flags = code === 'EHOSTUNREACH' ? this.addon.abi.proxy.nodeDown : 0;
    try {
      // The module ends every call waiting on it with ESRCH or EHOSTUNREACH.
      this.addon.remoteDel(this.fd, dc, endpoint, generation, flags);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') throw err;
    }
  }

  nodeDown(node: number): void {
    // The module fails the calls themselves when the node's endpoints are unregistered.
    for (const [id, call] of this.outgoing) if (call.node === node) this.outgoing.delete(id);
    for (const [k, call] of this.incoming) if (call.node === node) this.incoming.delete(k);
  }

  callsByNode(): Map<number, { out: number; in: number }> {
    const by = new Map<number, { out: number; in: number }>();
    const of = (n: number) => entry(by, n, () => ({ out: 0, in: 0 }));
    for (const call of this.outgoing.values()) of(call.node).out++;
    for (const call of this.incoming.values()) of(call.node).in++;
    return by;
  }

  /** A call record from another node. */
  call(node: number, r: RemoteRecord): void {
    const k = this.kinds;
    switch (r.kind) {
      case Record.SEND:
        return this.inject(
          this.encode(
            k.message,
            r.dc,
            r.dst,
            r.dstGen,
            r.src,
            r.srcGen,
            r.type,
            0,
            0n,
            0,
            r.payload,
          ),
          (code) => this.result(node, r.id, code),
          () => this.result(node, r.id, null),
        );
      case Record.SENDREC: {
        const key = `${r.dc}:${r.src}:${r.srcGen}:${r.requestId}`;
        this.incoming.set(key, { node, id: r.id });
        return this.inject(
          this.encode(
            k.request,
            r.dc,
            r.dst,
            r.dstGen,
            r.src,
            r.srcGen,
            r.type,
            0,
            r.requestId,
            0,
            r.payload,
          ),
          (code) => {
            this.incoming.delete(key);
            this.result(node, r.id, code);
          },
        );
      }
      case Record.NOTIFY: {
        // Answered when its id asks for it: once the bits are pending in the module.
        const answer = (code: string | null) => {
          if (r.id !== 0n) this.result(node, r.id, code);
        };
        return this.inject(
          this.encode(k.notify, r.dc, r.dst, r.dstGen, r.src, r.srcGen, 0, r.value >>> 0, 0n, 0),
          answer,
          () => answer(null),
        );
      }
      case Record.REPLY: {
        const call = this.outgoing.get(r.id);
        if (!call) return;
        this.outgoing.delete(r.id);
        return this.inject(
          this.encode(
            k.reply,
            call.dc,
            call.caller,
            call.callerGen,
            r.src,
            r.srcGen,
            r.type,
            0,
            call.requestId,
            0,
            r.payload,
          ),
        );
      }
      case Record.RESULT: {
        const call = this.outgoing.get(r.id);
        if (!call) return; // a send's outcome: the module completed the send already
        this.outgoing.delete(r.id);
        return this.inject(
          this.encode(
            k.fail,
            call.dc,
            call.caller,
            call.callerGen,
            call.server,
            call.serverGen,
            0,
            0,
            call.requestId,
            r.value,
          ),
        );
      }
      case Record.CANCEL:
        // An injected request cannot be taken back from the module; its late reply is dropped
        // by the caller's node, as the caller gave up.
        return;
    }
  }

  /** Answers a call from another node: done (code null), or refused with an errno name. */
  private result(node: number, id: bigint, code: string | null): void {
    const errno = code ? (constants.errno[code as keyof typeof constants.errno] ?? EIO) : 0;
    this.router.send(node, record({ kind: Record.RESULT, id, value: -errno }));
  }

  // --- the module's side ---

  /** Takes everything waiting for the proxy, many records per ioctl. */
  private drain(): void {
    while (!this.closed) {
      let got: { count: number; size: number };
      try {
        got = this.addon.proxyDrain(this.fd, this.drainBuffer);
      } catch (err) {
        this.log.error({ err }, 'proxy drain failed');
        return;
      }
      if (got.count === 0) return;
      let off = 0;
      while (off < got.size) {
        const rec = this.decode(off);
        off += this.recordSize + align8(rec.payload.length);
        this.drained(rec);
      }
    }
  }

  private drained(m: ProxyRecord): void {
    const k = this.kinds;
    switch (m.kind) {
      case k.claim:
        return this.claim(m);
      case k.bound:
        this.local.set(`${m.dc}:${m.src}`, m.srcGen);
        return this.router.announceBound(m.dc, m.src, m.srcGen);
      case k.unbound:
        if (this.local.get(`${m.dc}:${m.src}`) === m.srcGen) this.local.delete(`${m.dc}:${m.src}`);
        return this.router.announceUnbound(m.dc, m.src, m.srcGen);
    }
    const node = this.router.where(m.dc, m.dst)?.node;
    if (node === undefined) {
      this.log.warn({ dc: m.dc, endpoint: m.dst, kind: m.kind }, 'drained for an unknown node');
      return;
    }
    switch (m.kind) {
      case k.message:
        return this.forward(node, Record.SEND, m, this.nextId++, 0n);
      case k.request: {
        const id = this.nextId++;
        this.outgoing.set(id, {
          node,
          dc: m.dc,
          caller: m.src,
          callerGen: m.srcGen,
          server: m.dst,
          serverGen: m.dstGen,
          requestId: m.requestId,
        });
        return this.forward(node, Record.SENDREC, m, id, m.requestId);
      }
      case k.notify:
        return this.router.send(
          node,
          record({
            kind: Record.NOTIFY,
            dc: m.dc,
            dst: m.dst,
            dstGen: m.dstGen,
            src: m.src,
            srcGen: m.srcGen,
            value: m.bits | 0,
          }),
        );
      case k.reply:
      case k.fail: {
        // A local server answered a request a remote caller made (dst is that caller).
        const key = `${m.dc}:${m.dst}:${m.dstGen}:${m.requestId}`;
        const call = this.incoming.get(key);
        if (!call) return;
        this.incoming.delete(key);
        if (m.kind === k.fail) {
          this.router.send(
            call.node,
            record({ kind: Record.RESULT, id: call.id, value: m.status }),
          );
          return;
        }
        this.router.send(
          call.node,
          record({
            kind: Record.REPLY,
            id: call.id,
            dc: m.dc,
            dst: m.dst,
            dstGen: m.dstGen,
            src: m.src,
            srcGen: m.srcGen,
            type: m.type,
            requestId: m.requestId,
            payload: m.payload,
          }),
        );
        return;
      }
    }
  }

  private forward(
    node: number,
    kind: typeof Record.SEND | typeof Record.SENDREC,
    m: ProxyRecord,
    id: bigint,
    requestId: bigint,
  ): void {
    this.router.send(
      node,
      record({
        kind,
        dc: m.dc,
        dst: m.dst,
        dstGen: m.dstGen,
        src: m.src,
        srcGen: m.srcGen,
        type: m.type,
        id,
        requestId,
        payload: m.payload,
      }),
    );
  }

  /** A local bind waits in the module: the Router's claim round gives the verdict. */
  private claim(m: ProxyRecord): void {
    this.router.claim(m.dc, m.src, m.srcGen).then((err) => {
      if (this.closed) return;
      if (!err) this.local.set(`${m.dc}:${m.src}`, m.srcGen);
      this.inject(
        this.encode(
          this.kinds.claimed,
          m.dc,
          m.src,
          m.srcGen,
          0,
          0,
          0,
          0,
          0n,
          err ? -err.errno : 0,
        ),
        // The bind gave up meanwhile (a signal): its UNBOUND follows.
        () => this.local.delete(`${m.dc}:${m.src}`),
      );
    });
  }

  private decode(off: number): ProxyRecord {
    const b = this.drainBuffer;
    const size = b.readUInt32LE(off + 40);
    // Copied: the drain buffer is reused by the next drain.
    const payload = Buffer.from(b.subarray(off + this.recordSize, off + this.recordSize + size));
    return {
      kind: b.readUInt32LE(off),
      dc: b.readUInt32LE(off + 4),
      dst: b.readUInt32LE(off + 8),
      dstGen: b.readUInt32LE(off + 12),
      src: b.readUInt32LE(off + 16),
      srcGen: b.readUInt32LE(off + 20),
      type: b.readInt32LE(off + 24),
      bits: b.readUInt32LE(off + 28),
      requestId: b.readBigUInt64LE(off + 32),
      status: b.readInt32LE(off + 44),
      payload,
    };
  }

  private encode(
    kind: number,
    dc: number,
    dst: number,
    dstGen: number,
    src: number,
    srcGen: number,
    type: number,
    bits: number,
    requestId: bigint,
    status: number,
    payload: Buffer = Buffer.alloc(0),
  ): Buffer {
    const b = Buffer.alloc(this.recordSize + align8(payload.length));
    b.writeUInt32LE(kind, 0);
    b.writeUInt32LE(dc, 4);
    b.writeUInt32LE(dst, 8);
    b.writeUInt32LE(dstGen, 12);
    b.writeUInt32LE(src, 16);
    b.writeUInt32LE(srcGen, 20);
    b.writeInt32LE(type, 24);
    b.writeUInt32LE(bits, 28);
    b.writeBigUInt64LE(requestId, 32);
    b.writeUInt32LE(payload.length, 40);
    b.writeInt32LE(status, 44);
    payload.copy(b, this.recordSize);
    return b;
  }

  /** Queues a record for the module; records go in per tick, many per ioctl, in order. */
  private inject(bytes: Buffer, refused?: (code: string) => void, accepted?: () => void): void {
    this.injectQueue.push({ bytes, refused, accepted });
    if (this.injectScheduled || this.retry) return;
    this.injectScheduled = true;
    setImmediate(() => {
      this.injectScheduled = false;
      this.flushInjects();
    });
  }

  private flushInjects(): void {
    while (this.injectQueue.length && !this.closed) {
      const batch = this.injectQueue;
      const got = this.addon.proxyInject(this.fd, Buffer.concat(batch.map((p) => p.bytes)));
      for (const p of batch.splice(0, got.count)) p.accepted?.();
      if (!got.error) continue;
      if (got.error === 'EAGAIN') {
        // The destination holds as many injected messages as its queue: try again shortly,
        // keeping the order.
        this.retry = setTimeout(() => {
          this.retry = undefined;
          this.flushInjects();
        }, RETRY_MS);
        return;
      }
      const refused = batch.shift() as Pending;
      refused.refused?.(got.error);
    }
  }
}

function align8(n: number): number {
  return (n + 7) & ~7;
}
