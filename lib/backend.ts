/**
 * The seam between the public API and the ways a node can be reached. The userspace backend
 * talks to the node agent over a Unix socket; the kernel backend (a later issue) drives
 * /dev/dvk through the addon; the remote path lives behind either, in the agent or the module.
 * Arguments arrive validated by `Endpoint`; backends reject with `DvkError`.
 */
import type { EndpointAddress, Message } from './message.js';

export type BackendKind = 'user' | 'kernel';

/** How long a call may block. */
export interface CallControl {
  /** Absolute CLOCK_MONOTONIC deadline in nanoseconds (`process.hrtime.bigint()`); 0n = none. */
  readonly deadline: bigint;
  /** Fail with EAGAIN rather than block. */
  readonly nonblock: boolean;
  /** Abort with ECANCELED, unless the call has already completed. */
  readonly signal: AbortSignal | undefined;
}

/** One bound endpoint as a backend sees it. Numbers are endpoint numbers; gen 0 = current. */
export interface BoundEndpoint {
  readonly address: EndpointAddress;
  /** Largest payload the node accepts, in bytes. */
  readonly maxPayload: number;
  send(
    dst: number,
    dstGen: number,
    type: number,
    payload: Uint8Array,
    c: CallControl,
  ): Promise<void>;
  receive(from: number, fromGen: number, c: CallControl): Promise<Message>;
  sendrec(
    dst: number,
    dstGen: number,
    type: number,
    payload: Uint8Array,
    c: CallControl,
  ): Promise<Message>;
  reply(
    to: number,
    toGen: number,
    requestId: bigint,
    type: number,
    payload: Uint8Array,
  ): Promise<void>;
  notify(dst: number, dstGen: number, bits: number): Promise<void>;
  /** Kernel backend only: receive, blocking this thread (see `Endpoint.receiveSync`). */
  receiveSync?(from: number, fromGen: number, deadline: bigint, nonblock: boolean): Message;
  /** Kernel backend only: sendrec, blocking this thread (see `Endpoint.sendrecSync`). */
  sendrecSync?(
    dst: number,
    dstGen: number,
    type: number,
    payload: Uint8Array,
    deadline: bigint,
  ): Message;
  /** Unbinds. Calls still pending settle with ECANCELED. */
  close(): Promise<void>;
  /** Called once when the binding ends for any reason other than `close()`. */
  onLost(listener: (reason: Error) => void): void;
}

export interface Backend {
  readonly kind: BackendKind;
  /** Binds `endpoint` in the DC given by id or name. */
  bind(dc: number | string, endpoint: number): Promise<BoundEndpoint>;
  /** The node's endpoint table and queue depths. */
  status(): Promise<NodeStatus>;
  /** Moves the service serving an endpoint to the node named `to` (docs/migration.md). */
  migrate(dc: number | string, endpoint: number, to: string): Promise<MigrationReport>;
}

/** What a finished move reports. */
export interface MigrationReport {
  dc: number;
  endpoint: number;
  generation: number;
  service: string;
  from: string;
  to: string;
  /** The incarnation's epoch on its new node. */
  epoch: number;
  /** Size of the service's snapshot. */
  stateBytes: number;
  /** Milliseconds: starting the new instance, freezing and handing the state over, committing. */
  ms: { prepare: number; transfer: number; commit: number; total: number };
}

/** Per-endpoint counters and queue depths, as `dvk status` shows them. */
export interface EndpointStatus {
  endpoint: number;
  generation: number;
  /** Messages and requests waiting to be received. */
  queued: number;
  queuedBytes: number;
  /** Senders held because the queue is full. */
  blockedSenders: number;
  /** Sources with notification bits pending. */
  pendingNotifications: number;
  /** Receives waiting for a message. */
  waitingReceives: number;
  /** Requests received and not yet answered. */
  unansweredRequests: number;
  /** This endpoint's own sendrecs waiting for replies. */
  pendingCalls: number;
  pid: number | null;
  counters: {
    sent: number;
    received: number;
    repliesSent: number;
    repliesDropped: number;
    notifySent: number;
  };
}

export interface DcStatus {
  id: number;
  name: string;
  slots: number;
  endpoints: EndpointStatus[];
}

/** One link from this node's agent to another node's. */
export interface LinkStatus {
  node: number;
  name: string;
  address: string;
  /** 'connecting' until the link is up, and again while it reconnects; 'down' once declared. */
  state: 'connecting' | 'up' | 'down';
  /** The latest heartbeat round trip, in ms. */
  rttMs: number | null;
  /** Messages sent on the link and not acknowledged yet. */
  unacked: number;
  /** Calls of this node's endpoints waiting on that node, and of its endpoints waiting here. */
  callsOut: number;
  callsIn: number;
  counters: {
    sent: number;
    delivered: number;
    duplicates: number;
    retransmitted: number;
    /** Connections that authenticated (attempts that failed are not counted). */
    connections: number;
  };
}

export interface ClusterStatus {
  name: string;
  self: { id: number; name: string };
  links: LinkStatus[];
  /** Endpoints bound on other nodes that this node knows of. */
  remoteEndpoints: number;
  /** The cluster file's services, and where each serves now as this node knows it. */
  services: ServiceLocation[];
  /**
   * Moves of endpoints into and out of this node, and calls that still came here for an
   * endpoint that had moved away and were forwarded to its new node.
   */
  migration: { movedIn: number; movedOut: number; forwarded: number };
}

export interface ServiceLocation {
  name: string;
  dc: string;
  endpoint: number;
  /** The node whose agent has it bound; null if no node is known to. */
  node: string | null;
  generation: number | null;
  /** 1 when bound, one more at every move. */
  epoch: number | null;
  /** The nodes its DC spans: where it may move. */
  dcNodes: string[];
}

export interface NodeStatus {
  node: { name: string; backend: BackendKind; pid: number; uptimeSeconds: number; version: string };
  limits: { maxPayload: number; queueLength: number; queueBytes: number };
  dcs: DcStatus[];
  /** Present when the agent is a member of a cluster. */
  cluster?: ClusterStatus;
}
