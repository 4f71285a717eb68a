import { constants } from 'node:os';

/**
 * The errno names DVK reports, the same on every backend. The contract (DESIGN.md, "Primitives")
 * lists their meaning; {@link errorMessages} gives the text used when a backend supplies none.
 */
export type ErrorCode =
  | 'ENOENT'
  | 'ETIMEDOUT'
  | 'EHOSTUNREACH'
  | 'EADDRINUSE'
  | 'EADDRNOTAVAIL'
  | 'EMSGSIZE'
  | 'EINVAL'
  | 'EPERM'
  | 'EACCES'
  | 'ESRCH'
  | 'ECANCELED'
  | 'EAGAIN'
  | 'EBADF'
  | 'EPROTO'
  | 'EOPNOTSUPP'
  | 'EBUSY';

const errorMessages: Record<ErrorCode, string> = {
  ENOENT: 'no such endpoint',
  ETIMEDOUT: 'timed out',
  EHOSTUNREACH: 'node unreachable',
  EADDRINUSE: 'endpoint already bound',
  EADDRNOTAVAIL: 'endpoint is placed on another node',
  EMSGSIZE: 'message too long',
  EINVAL: 'invalid argument',
  EPERM: 'operation not permitted',
  EACCES: 'permission denied',
  ESRCH: 'peer died with the call pending',
  ECANCELED: 'cancelled',
  EAGAIN: 'would block',
  EBADF: 'endpoint is closed',
  EPROTO: 'protocol error',
  EOPNOTSUPP: 'not supported by this backend',
  EBUSY: 'busy: a migration of the endpoint is in progress',
};

const codeByErrno = new Map<number, ErrorCode>(
  (Object.keys(errorMessages) as ErrorCode[]).map((code) => [constants.errno[code], code]),
);

/** Where an error happened: the endpoint that made the call and, if any, the peer it addressed. */
export interface ErrorContext {
  /** DC id of the calling endpoint. */
  dc?: number;
  /** The calling endpoint's number. */
  endpoint?: number;
  /** The endpoint the call addressed (destination, `from` filter, or the requester of a reply). */
  peer?: number;
  /** The primitive that failed: `send`, `receive`, `sendrec`, `reply`, `notify`, `bind`, ... */
  call?: string;
}

/**
 * Every failure DVK reports. `code` is an errno name; `errno` the matching positive number.
 * The endpoint fields say which call failed, so a log line alone locates the problem.
 */
export class DvkError extends Error {
  override readonly name = 'DvkError';
  readonly code: ErrorCode;
  readonly errno: number;
  readonly dc: number | undefined;
  readonly endpoint: number | undefined;
  readonly peer: number | undefined;
  readonly call: string | undefined;
  /** The reason without the code and location prefix. */
  readonly detail: string;

  constructor(code: ErrorCode, detail?: string, context: ErrorContext = {}) {
    const text = detail ?? errorMessages[code];
    super(describe(code, text, context));
    this.detail = text;
    this.code = code;
    this.errno = constants.errno[code];
    this.dc = context.dc;
    this.endpoint = context.endpoint;
    this.peer = context.peer;
    this.call = context.call;
  }

  /** Builds an error from a positive errno as returned by the agent or the kernel. */
  static fromErrno(errno: number, message?: string, context: ErrorContext = {}): DvkError {
    const code = codeByErrno.get(errno);
    if (code) return new DvkError(code, message, context);
    return new DvkError('EPROTO', `${message ?? 'unexpected error'} (errno ${errno})`, context);
  }

  /** The same error with the caller's context filled in where the backend left it blank. */
  withContext(context: ErrorContext): DvkError {
    return new DvkError(this.code, this.detail, {
      dc: this.dc ?? context.dc,
      endpoint: this.endpoint ?? context.endpoint,
      peer: this.peer ?? context.peer,
      call: this.call ?? context.call,
    });
  }
}

function describe(code: ErrorCode, detail: string, ctx: ErrorContext): string {
  const where: string[] = [];
  if (ctx.call) where.push(ctx.call);
  if (ctx.endpoint !== undefined) where.push(`${ctx.dc ?? '?'}/${ctx.endpoint}`);
  if (ctx.peer !== undefined) where.push(`peer ${ctx.peer}`);
  const prefix = where.length ? `${code} (${where.join(', ')})` : code;
  return `${prefix}: ${detail}`;
}

/** The positive errno for a code, for wire formats that carry numbers. */
export function errnoOf(code: ErrorCode): number {
  return constants.errno[code];
}

export function isDvkError(err: unknown, code?: ErrorCode): err is DvkError {
  return err instanceof DvkError && (code === undefined || err.code === code);
}
