import { existsSync } from 'node:fs';
import type { Backend, BackendKind, NodeStatus } from './backend.js';
import { Endpoint } from './endpoint.js';
import { DvkError } from './errors.js';
import { DEVICE_PATH, KernelBackend } from './kernel/backend.js';
import { UserBackend } from './user/client.js';
import { defaultSocketPath } from './user/socket-path.js';

export interface NodeOptions {
  /**
   * `auto` (the default) picks the kernel module when /dev/dvk exists and no `socketPath` is
   * given, else the node agent. Also settable with the DVK_BACKEND environment variable.
   */
  readonly backend?: BackendKind | 'auto';
  /** The node agent's socket (user backend). Default: DVK_SOCKET, else the agent's default. */
  readonly socketPath?: string;
  /** Milliseconds blocking calls wait when they are not given a timeout. Default: Infinity. */
  readonly defaultTimeout?: number;
}

/** DC names, as the agent's configuration schema (lib/agent/config.ts) defines them. */
const DC_NAME = /^[A-Za-z0-9_.-]{1,63}$/;

export interface BindOptions {
  /**
   * The DC, by id (an integer in 0..2^32-1) or by name (1 to 63 letters, digits, "_", "." or
   * "-").
   */
  readonly dc: number | string;
  /** The endpoint number to bind. */
  readonly endpoint: number;
}

/**
 * This process's handle on the DVK node it runs on. Opening is cheap and does no I/O; each
 * `bind` makes one endpoint.
 */
export class DvkNode {
  readonly backend: Backend;
  private readonly defaultTimeout: number;

  constructor(options: NodeOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw new DvkError('EINVAL', 'options must be an object');
    }
    this.backend = chooseBackend(options);
    this.defaultTimeout = options.defaultTimeout ?? Number.POSITIVE_INFINITY;
    if (typeof this.defaultTimeout !== 'number' || !(this.defaultTimeout >= 0)) {
      throw new DvkError('EINVAL', 'defaultTimeout must be a number of milliseconds >= 0');
    }
  }

  /**
   * Binds an endpoint in a DC. Fails with EADDRINUSE if it is bound already, ENOENT for an
   * unknown DC, EINVAL for a number outside the DC, EPERM if the DC does not admit this user,
   * EHOSTUNREACH or EACCES if the node cannot be reached. Bad options fail with EINVAL before
   * anything leaves the process.
   */
  async bind(options: BindOptions): Promise<Endpoint> {
    let dc: unknown;
    let endpoint: unknown;
    try {
      ({ dc, endpoint } = typeof options === 'object' && options !== null ? options : {});
    } catch (err) {
      throw new DvkError('EINVAL', `bad bind options: ${(err as Error)?.message ?? String(err)}`, {
        call: 'bind',
      });
    }
    const context = {
      call: 'bind',
      endpoint: typeof endpoint === 'number' ? endpoint : undefined,
      dc: typeof dc === 'number' ? dc : undefined,
    };
    if (typeof dc === 'string' && !DC_NAME.test(dc)) {
      throw new DvkError(
        'EINVAL',
        'a DC name is 1 to 63 letters, digits, "_", "." or "-"',
        context,
      );
    }
    if (typeof dc !== 'string' && !isU32(dc)) {
      throw new DvkError('EINVAL', 'dc must be a DC id (an integer in 0..2^32-1) or name', context);
    }
    if (!isU32(endpoint) || endpoint === 0xffff_ffff) {
      throw new DvkError('EINVAL', 'endpoint must be an integer in 0..2^32-2', context);
    }
    try {
      return new Endpoint(await this.backend.bind(dc, endpoint), this.defaultTimeout);
    } catch (err) {
      if (err instanceof DvkError) throw err.withContext(context);
      throw err;
    }
  }

  /** Endpoints, queue depths and counters of this node. */
  status(): Promise<NodeStatus> {
    return this.backend.status();
  }

  /**
   * Moves the service that serves an endpoint to another node of its DC, while its clients
   * keep calling it (docs/migration.md); resolves once the endpoint serves there. This node's
   * agent coordinates the move, wherever the endpoint is. EOPNOTSUPP if no service of the
   * cluster file serves it; EBUSY if it is moving already; a failed move rolls back and
   * rejects with why.
   */
  async migrate(target: { dc: number | string; endpoint: number }, options: { to: string }) {
    const context = { call: 'migrate', endpoint: target?.endpoint };
    const { dc, endpoint } = target ?? {};
    if ((typeof dc !== 'string' || !DC_NAME.test(dc)) && !isU32(dc)) {
      throw new DvkError('EINVAL', 'dc must be a DC id or name', context);
    }
    if (!isU32(endpoint) || endpoint === 0xffff_ffff) {
      throw new DvkError('EINVAL', 'endpoint must be an integer in 0..2^32-2', context);
    }
    if (typeof options?.to !== 'string' || options.to.length === 0) {
      throw new DvkError('EINVAL', 'options.to must name a node', context);
    }
    try {
      return await this.backend.migrate(dc, endpoint, options.to);
    } catch (err) {
      if (err instanceof DvkError) throw err.withContext(context);
      throw err;
    }
  }
}

function isU32(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;
}

/** Opens this process's handle on the local DVK node. */
export function openNode(options: NodeOptions = {}): DvkNode {
  return new DvkNode(options);
}

function chooseBackend(options: NodeOptions): Backend {
  const wanted = options.backend ?? (process.env.DVK_BACKEND as NodeOptions['backend']) ?? 'auto';
  switch (wanted) {
    case 'auto':
      // A socket path names an agent: the caller asked for it.
      return existsSync(DEVICE_PATH) && options.socketPath === undefined
        ? new KernelBackend()
        : new UserBackend(options.socketPath ?? defaultSocketPath());
    case 'user':
      return new UserBackend(options.socketPath ?? defaultSocketPath());
    case 'kernel':
      return new KernelBackend();
    default:
      throw new DvkError('EINVAL', `unknown backend ${JSON.stringify(wanted)}`);
  }
}
