/**
 * The one place that loads the native addon. `DVK_NATIVE_PATH` points at a specific build
 * (a directory holding build/ or prebuilds/, or the .node file itself).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A message header as the kernel wrote it (`struct dvk_msg`, less the payload pointer). */
export interface NativeMessage {
  peer: number;
  peerGen: number;
  type: number;
  flags: number;
  requestId: bigint;
  size: number;
  bits: number;
}

/**
 * Owns an open /dev/dvk file: calls `onReadable(status)` on this thread's event loop while
 * started and the file is readable. `close()` closes the file, as the thread's exit does.
 */
export interface NativePoller {
  start(): void;
  stop(): void;
  close(): void;
}

/**
 * The addon: typed wrappers over SO_PEERCRED and the ioctls of /dev/dvk. Each throws an Error
 * whose `code` is the errno name (and `errno` its number).
 */
export interface NativeAddon {
  /** SO_PEERCRED of a connected Unix socket: who the kernel says is on the other end. */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  /** DVK_IOC_VERSION on an open /dev/dvk; ENOTTY for another file. */
  dvkVersion(fd: number): {
    abi: number;
    maxPayload: number;
    features: bigint;
    queueLength: number;
    queueBytes: number;
  };
  dcCreate(
    fd: number,
    id: number,
    slots: number,
    name: string,
    queueLength: number,
    queueBytes: number,
  ): void;
  dcDestroy(fd: number, id: number): void;
  bind(fd: number, dc: number | string, endpoint: number): { dc: number; generation: number };
  /**
   * DVK_IOC_SUBMIT: starts a call; returns its token. `payload` is null for a receive or a
   * notify; `flags` is DVK_CALL_NONBLOCK or 0; `bits` are a notify's.
   */
  submit(
    fd: number,
    op: number,
    peer: number,
    peerGen: number,
    type: number,
    payload: Uint8Array | null,
    from: number,
    fromGen: number,
    flags: number,
    bits: number,
  ): number;
  /** DVK_IOC_REAP into `buffer`; EAGAIN with nothing to reap, EMSGSIZE with `needed`. */
  reap(fd: number, buffer: Uint8Array): { count: number; size: number };
  /** DVK_IOC_CANCEL: true if the call was undone, false if it had completed. */
  cancel(fd: number, token: number): boolean;
  /** Blocks this thread. The payload lands in `buffer`. */
  receiveSync(
    fd: number,
    from: number,
    fromGen: number,
    deadline: bigint,
    nonblock: boolean,
    buffer: Uint8Array,
  ): NativeMessage;
  /** Blocks this thread. The reply's payload lands in `replyBuffer`. */
  sendrecSync(
    fd: number,
    peer: number,
    peerGen: number,
    type: number,
    payload: Uint8Array,
    deadline: bigint,
    replyBuffer: Uint8Array,
  ): NativeMessage;
  reply(
    fd: number,
    peer: number,
    peerGen: number,
    requestId: bigint,
    type: number,
    payload: Uint8Array,
  ): void;
  notify(fd: number, peer: number, peerGen: number, bits: number): void;
  /** DVK_IOC_PROXY_ATTACH: the file becomes the node's proxy (flags: abi.proxy.claims). */
  proxyAttach(fd: number, node: number, flags: number): void;
  /** DVK_IOC_REMOTE_ADD: an endpoint incarnation of another node. */
  remoteAdd(fd: number, dc: number, endpoint: number, generation: number, node: number): void;
  /** DVK_IOC_REMOTE_DEL (flags: abi.proxy.nodeDown). */
  remoteDel(fd: number, dc: number, endpoint: number, generation: number, flags: number): void;
  /** DVK_IOC_PROXY_DRAIN without waiting; count 0 when nothing waits; EMSGSIZE with `needed`. */
  proxyDrain(fd: number, buffer: Uint8Array): { count: number; size: number };
  /** DVK_IOC_PROXY_INJECT: records and bytes taken, and the errno name it stopped at. */
  proxyInject(
    fd: number,
    records: Uint8Array,
  ): { count: number; size: number; error: string | null };
  Poller: new (fd: number, onReadable: (status: number) => void) => NativePoller;
  /** The uAPI header's constants this build was compiled with. */
  readonly abi: {
    readonly version: number;
    readonly nameMax: number;
    readonly slotsMax: number;
    readonly any: number;
    readonly parkedMax: number;
    readonly asyncMax: number;
    readonly featureAsync: bigint;
    /** sizeof(struct dvk_completion): the header of each reaped record. */
    readonly completionSize: number;
    readonly ops: {
      readonly send: number;
      readonly receive: number;
      readonly sendrec: number;
      readonly notify: number;
    };
    /** DVK_CALL_NONBLOCK. */
    readonly callNonblock: number;
    readonly messageFlags: {
      readonly request: number;
      readonly notify: number;
      readonly reply: number;
    };
    readonly proxy: {
      /** sizeof(struct dvk_proxy_msg): the header of each proxy record. */
      readonly recordSize: number;
      readonly claims: number;
      readonly verdicts: number;
      readonly featureClaims: bigint;
      readonly featureVerdicts: bigint;
      readonly nodeDown: number;
      /** DVK_PROXY_NONBLOCK, in a drained record's flags. */
      readonly nonblock: number;
      readonly kinds: {
        readonly message: number;
        readonly request: number;
        readonly reply: number;
        readonly notify: number;
        readonly fail: number;
        readonly claim: number;
        readonly bound: number;
        readonly unbound: number;
        readonly claimed: number;
        readonly sent: number;
        readonly cancel: number;
      };
    };
  };
}

const require = createRequire(import.meta.url);
// dist/lib/native.js -> the package root, where binding.gyp and build/ live.
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

let cached: NativeAddon | undefined;

export function native(): NativeAddon {
  if (cached) return cached;
  const override = process.env.DVK_NATIVE_PATH;
  try {
    if (override?.endsWith('.node')) {
      cached = require(override) as NativeAddon;
    } else {
      const load = require('node-gyp-build') as (dir: string) => NativeAddon;
      cached = load(override ?? packageRoot);
    }
  } catch (err) {
    throw new Error(
      `cannot load the DVK native addon (${(err as Error).message}). ` +
        'Build it with `npm rebuild` (needs python3, make and g++), ' +
        'or set DVK_NATIVE_PATH to a directory or .node file that holds a build.',
      { cause: err },
    );
  }
  return cached;
}
