/**
 * Calls between dvk.ko and other nodes: the agent holds the module's proxy role (see "The
 * proxy role" in the uAPI header). Endpoints of other nodes are registered in the module, so
 * local processes address them like any endpoint; what they send is drained many records per
 * ioctl and carried over the links, and what arrives is injected many records per ioctl.
 *
 * The proxy is attached with DVK_PROXY_CLAIMS: a local bind waits in the kernel until the
 * Router's claim round answers, so endpoint numbers stay unique across the cluster and a bind
 * is known everywhere when it returns, as on the user backend. And with DVK_PROXY_VERDICTS: a
 * send to a remote endpoint completes when the other node has queued it (its SEND's RESULT,
 * injected as DVK_PROXY_SENT); a send arriving here is answered when the module has queued it
 * (the SENT record it posts), or refused at its deadline (an injected DVK_PROXY_CANCEL).
 *
 * What arrives is injected in order. A destination that has no room (EAGAIN: it holds as many
 * injected messages as its queue) keeps its records here, in their order, and they are tried
 * again shortly; records for other destinations go on meanwhile. A held send keeps its
 * deadline and a NONBLOCK send is refused at once, as the module would do for a local sender.
 *
 * A sendrec whose caller gives up is withdrawn from the other node too: the module drains a
 * DVK_PROXY_CANCEL for it, and an arriving CANCEL is injected as one.
 *
 * Notifications get verdicts too: the module drains a note with an id, and the notifiers
 * whose bits it carries complete once the other node has them pending (its RESULT, injected as
 * DVK_PROXY_SENT). A non-blocking send to another node is drained with DVK_PROXY_NONBLOCK and
 * travels as a NONBLOCK SEND: the other node refuses it rather than hold it for room.
 */
import { closeSync } from 'node:fs';
import { constants } from 'node:os';
import type { Logger } from 'pino';
import type { DcConfig, Limits } from '../agent/endpoints.js';
import { DvkError } from '../errors.js';
import { openDevice } from '../kernel/backend.js';
import { type NativeAddon, type NativePoller, native } from '../native.js';
import { type BoundRecord, Record, RecordFlags, type RemoteRecord, record } from './remote-wire.js';
import type { LocalNode, RemoteBinding, Router } from './router.js';
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
  /** Drained MESSAGE and REQUEST: what was left of the caller's deadline (0: none). */
  timeoutNs: bigint;
  /** Drained: DVK_PROXY_NONBLOCK. */
  flags: number;
  payload: Buffer;
}

/** A local endpoint's send, or note, waiting on another node for its verdict. */
interface OutgoingSend {
  node: number;
  dc: number;
  sender: number;
  senderGen: number;
  remote: number;
  remoteGen: number;
  /** The module's id for it (a send id or a note id), which the verdict names. */
  sendId: bigint;
}

/** A send of another node's endpoint injected here, waiting for the module's SENT record. */
interface IncomingSend {
  node: number;
  id: bigint;
  /** The local destination. */
  dst: number;
  session: number;
  timer: NodeJS.Timeout | undefined;
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

/** A call of another node's endpoint that waits here: its node, and its id there. */
interface IncomingCall {
  node: number;
  id: bigint;
  /** The local server. */
  dst: number;
  /** The node's session it came in: answers never cross into a later one. */
  session: number;
}

/** Something for the module, in order: a record to inject, or an action such as REMOTE_DEL. */
interface Pending {
  bytes?: Buffer;
  action?: () => void;
  /** dc:endpoint of a local destination whose room the record may have to wait for. */
  dest?: string;
  /** dc:endpoint:generation of the remote source, so its unbind withdraws what it left here. */
  source?: string;
  /** Give up waiting for room at this time (process.hrtime.bigint()); 0n: never. */
  deadline?: bigint;
  nonblock?: boolean;
  /** The call on the other node, so a CANCEL can withdraw it while it waits here. */
  call?: { node: number; id: bigint };
  refused?: (code: string) => void;
  accepted?: () => void;
}

const EIO = constants.errno.EIO;
/** How often records wait for room are tried again. */
const RETRY_MS = 2;

function align8(n: number): number {
  return (n + 7) & ~7;
}

export class KernelCalls implements LocalNode {
  private readonly addon: NativeAddon;
  private readonly fd: number;
  private readonly poller: NativePoller;
  private readonly kinds: NativeAddon['abi']['proxy']['kinds'];
  private readonly recordSize: number;
  private readonly drainBuffer: Buffer;
  /** Endpoints bound in the module on this node, dc:endpoint -> generation. */
  private readonly local = new Map<string, number>();
  /** What is registered in the module for each remote endpoint, dc:endpoint. */
  private readonly registered = new Map<string, RemoteBinding>();
  private readonly dcs: Set<number>;
  private readonly outgoing = new Map<bigint, OutgoingRequest>();
  private readonly sends = new Map<bigint, OutgoingSend>();
  /** dc:sender:gen:sendId -> the id of its SEND on the other node. */
  private readonly sendIds = new Map<string, bigint>();
  /** Sends from other nodes injected here, by dc:source:gen:id. */
  private readonly incomingSends = new Map<string, IncomingSend>();
  /** Remote callers' requests injected here, by dc:caller:gen:requestId. */
  private readonly incoming = new Map<string, IncomingCall>();
  /** Each node's session: it changes when the node is declared down. */
  private readonly sessions = new Map<number, number>();
  private readonly queue: Pending[] = [];
  /** Records waiting for room at a local destination, per dc:endpoint, in order. */
  private readonly waitingRoom = new Map<string, Pending[]>();
  private flushScheduled = false;
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
      const wanted = this.addon.abi.proxy.featureClaims | this.addon.abi.proxy.featureVerdicts;
      if ((version.features & wanted) !== wanted) {
        throw new DvkError('EPROTO', 'this dvk.ko lacks claims or verdicts: rebuild it');
      }
      if (version.maxPayload !== limits.maxPayload) {
        throw new DvkError(
          'EINVAL',
          `dvk.ko's max_payload is ${version.maxPayload}; the cluster's is ${limits.maxPayload}`,
        );
      }
      for (const dc of dcs) this.createDc(dc, limits);
      const { claims, verdicts } = this.addon.abi.proxy;
      this.addon.proxyAttach(this.fd, router.self, claims | verdicts);
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
      const length = dc.queueLength ?? limits.queueLength;
      this.addon.dcCreate(
        this.fd,
        dc.id,
        dc.slots,
        dc.name,
        length,
        dc.queueBytes ?? limits.queueBytes,
      );
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
      // Endpoints in dvk.ko do not move (yet): their first epoch is their last.
      return { dc, endpoint, generation, epoch: 1 };
    });
  }

  isBound(dc: number, endpoint: number): boolean {
    return this.local.has(`${dc}:${endpoint}`);
  }

  hasDc(dc: number): boolean {
    return this.dcs.has(dc);
  }

  remoteBound(_node: number, dc: number, endpoint: number): void {
    this.ordered(() => this.register(dc, endpoint, 'ESRCH'));
  }

  remoteUnbound(
    node: number,
    dc: number,
    endpoint: number,
    generation: number,
    code: 'ESRCH' | 'EHOSTUNREACH',
  ): void {
    const source = `${dc}:${endpoint}:${generation}`;
    for (const [k, call] of this.incoming) {
      if (call.node === node && k.startsWith(`${source}:`)) this.incoming.delete(k);
    }
    // Its sends the module still holds for room are withdrawn, as a local sender's are when it
    // unbinds (queued ones stay): CANCELs, while it is still registered. No verdict is awaited.
    for (const [k, send] of this.incomingSends) {
      if (send.node !== node || !k.startsWith(`${source}:`)) continue;
      this.forgetIncomingSend(k);
      this.inject({
        bytes: this.encode({
          kind: this.kinds.cancel,
          dc,
          dst: send.dst,
          src: endpoint,
          srcGen: generation,
          requestId: send.id,
          status: -constants.errno.ESRCH,
        }),
      });
    }
    // After what it sent before it went: a reply or a message that came first is injected
    // first, while its source is still registered.
    this.ordered(() => {
      this.withdrawFrom(source);
      this.register(dc, endpoint, code);
    });
  }

  /**
   * Makes the module's registration of a remote endpoint what the Router says it is now:
   * the incarnation on the lowest node id, or none. A registration that goes ends the calls
   * waiting on it with `code`.
   */
  private register(dc: number, endpoint: number, code: 'ESRCH' | 'EHOSTUNREACH'): void {
    const k = `${dc}:${endpoint}`;
    const want = this.router.where(dc, endpoint);
    const have = this.registered.get(k);
    if (have && want && have.generation === want.generation) {
      // The same incarnation, perhaps moved to another node: calls to it go on, there.
      this.registered.set(k, { ...want });
      return;
    }
    try {
      if (have) {
        this.registered.delete(k);
        const flags = code === 'EHOSTUNREACH' ? this.addon.abi.proxy.nodeDown : 0;
        this.addon.remoteDel(this.fd, dc, endpoint, have.generation, flags);
      }
      if (want) {
        this.addon.remoteAdd(this.fd, dc, endpoint, want.generation, want.node);
        this.registered.set(k, { ...want });
      }
    } catch (err) {
      // EADDRINUSE: bound here too (only after a partition; the Router logged it).
      const errno = (err as { code?: string }).code;
      this.log.warn({ dc, endpoint, code: errno }, 'registering a remote endpoint failed');
    }
  }

  nodeDown(node: number): void {
    // The module fails the calls themselves as the node's endpoints are unregistered.
    this.sessions.set(node, (this.sessions.get(node) ?? 0) + 1);
    for (const [id, call] of this.outgoing) if (call.node === node) this.outgoing.delete(id);
    for (const [k, call] of this.incoming) if (call.node === node) this.incoming.delete(k);
    for (const [id, send] of this.sends) if (send.node === node) this.forgetSend(id);
    for (const [k, send] of this.incomingSends) if (send.node === node) this.forgetIncomingSend(k);
  }

  private forgetSend(id: bigint): OutgoingSend | undefined {
    const send = this.sends.get(id);
    if (!send) return undefined;
    this.sends.delete(id);
    this.sendIds.delete(`${send.dc}:${send.sender}:${send.senderGen}:${send.sendId}`);
    return send;
  }

  private forgetIncomingSend(k: string): IncomingSend | undefined {
    const send = this.incomingSends.get(k);
    if (!send) return undefined;
    clearTimeout(send.timer);
    this.incomingSends.delete(k);
    return send;
  }

  callsByNode(): Map<number, { out: number; in: number }> {
    const by = new Map<number, { out: number; in: number }>();
    const of = (n: number) => entry(by, n, () => ({ out: 0, in: 0 }));
    for (const call of [...this.outgoing.values(), ...this.sends.values()]) of(call.node).out++;
    for (const call of [...this.incoming.values(), ...this.incomingSends.values()]) {
      of(call.node).in++;
    }
    return by;
  }

  /** A call record from another node. */
  call(node: number, r: RemoteRecord): void {
    const k = this.kinds;
    const session = this.sessions.get(node) ?? 0;
    const answer = (code: string | null) => {
      if (r.id !== 0n && (this.sessions.get(node) ?? 0) === session) this.result(node, r.id, code);
    };
    const fromRemote = { dc: r.dc, dst: r.dst, dstGen: r.dstGen, src: r.src, srcGen: r.srcGen };
    const waits = {
      dest: `${r.dc}:${r.dst}`,
      source: `${r.dc}:${r.src}:${r.srcGen}`,
      deadline: r.timeoutNs === 0n ? 0n : process.hrtime.bigint() + r.timeoutNs,
      nonblock: (r.flags & 1) !== 0,
      call: { node, id: r.id },
    };
    switch (r.kind) {
      case Record.SEND: {
        if (r.id === 0n) {
          // No verdict asked (an agent that gives none): done once the module has it.
          return this.inject({
            bytes: this.encode({
              ...fromRemote,
              kind: k.message,
              type: r.type,
              payload: r.payload,
            }),
            ...waits,
          });
        }
        // The module answers with a SENT record once the message is in the destination's queue.
        const key = `${waits.source}:${r.id}`;
        this.incomingSends.set(key, { node, id: r.id, dst: r.dst, session, timer: undefined });
        return this.inject({
          bytes: this.encode({
            ...fromRemote,
            kind: k.message,
            type: r.type,
            requestId: r.id,
            payload: r.payload,
          }),
          ...waits,
          refused: (code) => {
            this.forgetIncomingSend(key);
            answer(code);
          },
          accepted: () => {
            const send = this.incomingSends.get(key);
            if (!send) return;
            // Held in the module for room: it may wait until the sender's deadline, or not at
            // all. Withdrawing it then makes the module post its SENT with that errno.
            const giveUp = (status: number) =>
              this.inject({
                bytes: this.encode({
                  kind: k.cancel,
                  dc: r.dc,
                  dst: r.dst,
                  src: r.src,
                  srcGen: r.srcGen,
                  requestId: r.id,
                  status,
                }),
              });
            if (waits.nonblock) giveUp(-constants.errno.EAGAIN);
            else if (waits.deadline) {
              const ms = Number((waits.deadline - process.hrtime.bigint()) / 1_000_000n);
              send.timer = setTimeout(() => giveUp(-constants.errno.ETIMEDOUT), Math.max(0, ms));
            }
          },
        });
      }
      case Record.SENDREC: {
        const key = `${waits.source}:${r.requestId}`;
        this.incoming.set(key, { node, id: r.id, dst: r.dst, session });
        return this.inject({
          bytes: this.encode({
            ...fromRemote,
            kind: k.request,
            type: r.type,
            requestId: r.requestId,
            payload: r.payload,
          }),
          ...waits,
          refused: (code) => {
            this.incoming.delete(key);
            answer(code);
          },
        });
      }
      case Record.NOTIFY:
        // Answered when its id asks for it: once the bits are pending in the module.
        return this.inject({
          bytes: this.encode({ ...fromRemote, kind: k.notify, bits: r.value >>> 0 }),
          refused: answer,
          accepted: () => answer(null),
        });
      case Record.REPLY: {
        const call = this.outgoing.get(r.id);
        if (!call) return;
        this.outgoing.delete(r.id);
        return this.inject({
          bytes: this.encode({
            kind: k.reply,
            dc: call.dc,
            dst: call.caller,
            dstGen: call.callerGen,
            src: r.src,
            srcGen: r.srcGen,
            type: r.type,
            requestId: call.requestId,
            payload: r.payload,
          }),
        });
      }
      case Record.RESULT: {
        const send = this.forgetSend(r.id);
        if (send) {
          // The other node's verdict on a local send or note: the module completes it.
          return this.inject({
            bytes: this.encode({
              kind: k.sent,
              dc: send.dc,
              dst: send.sender,
              dstGen: send.senderGen,
              src: send.remote,
              srcGen: send.remoteGen,
              requestId: send.sendId,
              status: r.value,
            }),
          });
        }
        const call = this.outgoing.get(r.id);
        if (!call) return;
        this.outgoing.delete(r.id);
        return this.inject({
          bytes: this.encode({
            kind: k.fail,
            dc: call.dc,
            dst: call.caller,
            dstGen: call.callerGen,
            src: call.server,
            srcGen: call.serverGen,
            requestId: call.requestId,
            status: r.value,
          }),
        });
      }
      case Record.CANCEL: {
        // A call not in the module yet is withdrawn here. One in the module is withdrawn there
        // if its destination has not received it: a send (its SENT then says ECANCELED) or a
        // request (nothing more comes of it); a request received stays owed, and its late
        // answer is dropped by the caller's node.
        if (this.cancelWaiting(node, r.id)) return;
        // In the module: a send under its call id, a request under the caller's request id.
        const withdraw = (key: string, dst: number, requestId: bigint) => {
          const [dc, src, srcGen] = key.split(':').map(Number) as [number, number, number];
          this.inject({
            bytes: this.encode({
              kind: k.cancel,
              dc,
              dst,
              src,
              srcGen,
              requestId,
              status: -constants.errno.ECANCELED,
            }),
          });
        };
        for (const [key, send] of this.incomingSends) {
          if (send.node === node && send.id === r.id) return withdraw(key, send.dst, r.id);
        }
        for (const [key, call] of this.incoming) {
          if (call.node !== node || call.id !== r.id) continue;
          this.incoming.delete(key);
          return withdraw(key, call.dst, BigInt(key.split(':')[3] as string));
        }
        return;
      }
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
        try {
          this.drained(rec);
        } catch (err) {
          this.log.error({ err, kind: rec.kind }, 'a drained record could not be handled');
        }
      }
    }
  }

  private drained(m: ProxyRecord): void {
    const k = this.kinds;
    const key = `${m.dc}:${m.src}`;
    switch (m.kind) {
      case k.claim:
        return this.claim(m);
      case k.bound:
        this.local.set(key, m.srcGen);
        return this.router.announceBound(m.dc, m.src, m.srcGen);
      case k.unbound:
        if (this.local.get(key) === m.srcGen) this.local.delete(key);
        return this.router.announceUnbound(m.dc, m.src, m.srcGen);
      case k.reply:
      case k.fail:
        return this.answered(m);
      case k.sent:
        return this.verdict(m);
      case k.cancel:
        return this.cancelled(m);
    }
    // What a local endpoint sent to a remote one: its registration says where it lives.
    const node = this.registered.get(`${m.dc}:${m.dst}`)?.node;
    if (node === undefined) {
      this.log.warn({ dc: m.dc, endpoint: m.dst, kind: m.kind }, 'drained for an unknown node');
      return;
    }
    const call = { dc: m.dc, dst: m.dst, dstGen: m.dstGen, src: m.src, srcGen: m.srcGen };
    switch (m.kind) {
      case k.message: {
        const nonblock = (m.flags & this.addon.abi.proxy.nonblock) !== 0;
        this.router.send(
          node,
          record({
            ...call,
            kind: Record.SEND,
            flags: nonblock ? RecordFlags.NONBLOCK : 0,
            type: m.type,
            id: this.awaitVerdict(node, m),
            timeoutNs: m.timeoutNs,
            payload: m.payload,
          }),
        );
        return;
      }
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
        this.router.send(
          node,
          record({
            ...call,
            kind: Record.SENDREC,
            type: m.type,
            id,
            requestId: m.requestId,
            timeoutNs: m.timeoutNs,
            payload: m.payload,
          }),
        );
        return;
      }
      case k.notify:
        // Its note id: the notifiers wait until the bits are pending there.
        this.router.send(
          node,
          record({
            ...call,
            kind: Record.NOTIFY,
            id: this.awaitVerdict(node, m),
            value: m.bits | 0,
          }),
        );
        return;
    }
  }

  /**
   * A drained send or note, by its module id, waits for the other node's RESULT; returns the
   * id of the record that carries it there.
   */
  private awaitVerdict(node: number, m: ProxyRecord): bigint {
    const id = this.nextId++;
    this.sends.set(id, {
      node,
      dc: m.dc,
      sender: m.src,
      senderGen: m.srcGen,
      remote: m.dst,
      remoteGen: m.dstGen,
      sendId: m.requestId,
    });
    this.sendIds.set(`${m.dc}:${m.src}:${m.srcGen}:${m.requestId}`, id);
    return id;
  }

  /**
   * A local caller gave up on a send or a sendrec in flight to another node: ask that node to
   * withdraw it. A sendrec's answer is no longer awaited.
   */
  private cancelled(m: ProxyRecord): void {
    const key = `${m.dc}:${m.src}:${m.srcGen}:${m.requestId}`;
    const sendId = this.sendIds.get(key);
    const send = sendId === undefined ? undefined : this.sends.get(sendId);
    if (sendId !== undefined && send) {
      this.router.send(send.node, record({ kind: Record.CANCEL, id: sendId }));
      return;
    }
    for (const [id, call] of this.outgoing) {
      if (call.dc !== m.dc || call.caller !== m.src || call.callerGen !== m.srcGen) continue;
      if (call.requestId !== m.requestId) continue;
      this.outgoing.delete(id);
      this.router.send(call.node, record({ kind: Record.CANCEL, id }));
      return;
    }
  }

  /** The module queued (status 0) or gave up (an errno) a send another node made here. */
  private verdict(m: ProxyRecord): void {
    const send = this.forgetIncomingSend(`${m.dc}:${m.dst}:${m.dstGen}:${m.requestId}`);
    if (!send || send.session !== (this.sessions.get(send.node) ?? 0)) return;
    this.router.send(send.node, record({ kind: Record.RESULT, id: send.id, value: m.status }));
  }

  /** A local server answered a request a remote caller made (dst is that caller). */
  private answered(m: ProxyRecord): void {
    const key = `${m.dc}:${m.dst}:${m.dstGen}:${m.requestId}`;
    const call = this.incoming.get(key);
    if (!call) return;
    this.incoming.delete(key);
    if (m.kind === this.kinds.fail) {
      this.router.send(call.node, record({ kind: Record.RESULT, id: call.id, value: m.status }));
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
  }

  /** A local bind waits in the module: the Router's claim round gives the verdict. */
  private claim(m: ProxyRecord): void {
    const key = `${m.dc}:${m.src}`;
    // The module holds one bind per number at a time: a claim means any earlier one gave up.
    this.router.claim(m.dc, m.src, m.srcGen, true).then((err) => {
      if (this.closed) return;
      if (!err) this.local.set(key, m.srcGen);
      this.inject({
        bytes: this.encode({
          kind: this.kinds.claimed,
          dc: m.dc,
          dst: m.src,
          dstGen: m.srcGen,
          status: err ? -err.errno : 0,
        }),
        // The bind gave up meanwhile (a signal): its UNBOUND follows, or came already.
        refused: () => {
          if (this.local.get(key) === m.srcGen) this.local.delete(key);
        },
      });
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
      timeoutNs: b.readBigUInt64LE(off + 48),
      flags: b.readUInt32LE(off + 56),
      payload,
    };
  }

  private encode(r: Partial<ProxyRecord> & { kind: number; dc: number }): Buffer {
    const payload = r.payload ?? Buffer.alloc(0);
    const b = Buffer.alloc(this.recordSize + align8(payload.length));
    b.writeUInt32LE(r.kind, 0);
    b.writeUInt32LE(r.dc, 4);
    b.writeUInt32LE(r.dst ?? 0, 8);
    b.writeUInt32LE(r.dstGen ?? 0, 12);
    b.writeUInt32LE(r.src ?? 0, 16);
    b.writeUInt32LE(r.srcGen ?? 0, 20);
    b.writeInt32LE(r.type ?? 0, 24);
    b.writeUInt32LE(r.bits ?? 0, 28);
    b.writeBigUInt64LE(r.requestId ?? 0n, 32);
    b.writeUInt32LE(payload.length, 40);
    b.writeInt32LE(r.status ?? 0, 44);
    payload.copy(b, this.recordSize);
    return b;
  }

  // --- injecting, in order ---

  private inject(p: Pending): void {
    this.queue.push(p);
    this.scheduleFlush();
  }

  /** Runs `action` once everything queued before it has gone into the module. */
  private ordered(action: () => void): void {
    this.queue.push({ action });
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Injects the queue in order, many records per ioctl; records without room wait aside. */
  private flush(): void {
    while (this.queue.length && !this.closed) {
      const head = this.queue[0] as Pending;
      if (head.action) {
        this.queue.shift();
        head.action();
        continue;
      }
      if (head.dest && this.waitingRoom.has(head.dest)) {
        // Behind earlier records for the same destination, unless it may not wait.
        this.queue.shift();
        if (head.nonblock) head.refused?.('EAGAIN');
        else this.waitingRoom.get(head.dest)?.push(head);
        continue;
      }
      let n = 0;
      while (n < this.queue.length) {
        const p = this.queue[n] as Pending;
        if (p.action || (p.dest && this.waitingRoom.has(p.dest))) break;
        n++;
      }
      const batch = this.queue.slice(0, n);
      const got = this.addon.proxyInject(
        this.fd,
        Buffer.concat(batch.map((p) => p.bytes ?? Buffer.alloc(0))),
      );
      for (const p of this.queue.splice(0, got.count)) p.accepted?.();
      if (!got.error) continue;
      const stopped = this.queue.shift() as Pending;
      if (got.error === 'EAGAIN' && stopped.dest && !stopped.nonblock) {
        this.waitingRoom.set(stopped.dest, [stopped]);
        this.scheduleRetry();
      } else {
        stopped.refused?.(got.error);
      }
    }
  }

  private scheduleRetry(): void {
    if (this.retry || this.closed) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.retryWaiting();
    }, RETRY_MS);
  }

  /** Tries each waiting destination's records again, in order; drops what ran out of time. */
  private retryWaiting(): void {
    const now = process.hrtime.bigint();
    for (const [dest, list] of this.waitingRoom) {
      for (let i = 0; i < list.length; ) {
        const p = list[i] as Pending;
        if (p.deadline && p.deadline <= now) {
          list.splice(i, 1);
          p.refused?.('ETIMEDOUT');
        } else i++;
      }
      while (list.length) {
        const p = list[0] as Pending;
        const got = this.addon.proxyInject(this.fd, p.bytes ?? Buffer.alloc(0));
        if (got.error === 'EAGAIN') break;
        list.shift();
        if (got.error) p.refused?.(got.error);
        else p.accepted?.();
      }
      if (!list.length) this.waitingRoom.delete(dest);
    }
    if (this.waitingRoom.size) this.scheduleRetry();
    // Records queued behind a destination that now has room.
    this.scheduleFlush();
  }

  /** A remote caller withdrew a call: if it is still here, not in the module, it ends now. */
  private cancelWaiting(node: number, id: bigint): boolean {
    const queued = this.queue.findIndex((p) => p.call?.node === node && p.call.id === id);
    if (queued >= 0) {
      const [p] = this.queue.splice(queued, 1);
      p?.refused?.('ECANCELED');
      return true;
    }
    for (const list of this.waitingRoom.values()) {
      const i = list.findIndex((p) => p.call?.node === node && p.call.id === id);
      if (i < 0) continue;
      const [p] = list.splice(i, 1);
      p?.refused?.('ECANCELED');
      return true;
    }
    return false;
  }

  /** A remote endpoint unbound: its calls still waiting here for room are withdrawn. */
  private withdrawFrom(source: string): void {
    for (const [dest, list] of this.waitingRoom) {
      const keep = list.filter((p) => p.source !== source);
      if (keep.length) this.waitingRoom.set(dest, keep);
      else this.waitingRoom.delete(dest);
    }
  }
}
