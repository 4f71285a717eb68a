import type { Backend, BackendKind, NodeStatus } from './backend.js';
import { Endpoint } from './endpoint.js';
import { DvkError } from './errors.js';
import { UserBackend } from './user/client.js';
import { defaultSocketPath } from './user/socket-path.js';

export interface NodeOptions {
  /**
   * `auto` (the default) picks the kernel module when /dev/dvk exists, else the node agent.
   * Also settable with the DVK_BACKEND environment variable.
   */
  readonly backend?: BackendKind | 'auto';
  /** The node agent's socket (user backend). Default: DVK_SOCKET, else the agent's default. */
  readonly socketPath?: string;
  /** Milliseconds blocking calls wait when they are not given a timeout. Default: Infinity. */
  readonly defaultTimeout?: number;
}

export interface BindOptions {
  /** The DC, by id or by name. */
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
    this.backend = chooseBackend(options);
    this.defaultTimeout = options.defaultTimeout ?? Number.POSITIVE_INFINITY;
    if (!(this.defaultTimeout >= 0)) {
      throw new DvkError('EINVAL', 'defaultTimeout must be a number of milliseconds >= 0');
    }
  }

  /**
   * Binds an endpoint in a DC. Fails with EADDRINUSE if it is bound already, ENOENT for an
   * unknown DC, EINVAL for a number outside the DC, EPERM if the DC does not admit this user,
   * EHOSTUNREACH or EACCES if the node cannot be reached.
   */
  async bind(options: BindOptions): Promise<Endpoint> {
    const { dc, endpoint } = options ?? {};
    const context = { call: 'bind', endpoint, dc: typeof dc === 'number' ? dc : undefined };
    if (!(typeof dc === 'string' ? dc.length > 0 : Number.isInteger(dc) && dc >= 0)) {
      throw new DvkError('EINVAL', 'dc must be a DC id or name', context);
    }
    if (!Number.isInteger(endpoint) || endpoint < 0 || endpoint >= 0xffff_ffff) {
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
}

/** Opens this process's handle on the local DVK node. */
export function openNode(options: NodeOptions = {}): DvkNode {
  return new DvkNode(options);
}

function chooseBackend(options: NodeOptions): Backend {
  const wanted = options.backend ?? (process.env.DVK_BACKEND as NodeOptions['backend']) ?? 'auto';
  switch (wanted) {
    case 'auto':
    case 'user':
      // The kernel backend joins `auto` with the addon's /dev/dvk bindings.
      return new UserBackend(options.socketPath ?? defaultSocketPath());
    case 'kernel':
      throw new DvkError('EINVAL', 'the kernel backend is not part of this build yet');
    default:
      throw new DvkError('EINVAL', `unknown backend ${JSON.stringify(wanted)}`);
  }
}
