/** What a received message is: a plain message, a request awaiting `reply`, or a notification. */
export type MessageKind = 'message' | 'request' | 'notification';

/** An endpoint incarnation: DC, number, and the generation the bind was given. */
export interface EndpointAddress {
  readonly dc: number;
  readonly endpoint: number;
  readonly generation: number;
}

/**
 * A destination or source filter. A bare number means "whatever incarnation is bound there now";
 * with a `generation`, a call to an older or newer incarnation fails with ENOENT instead of
 * reaching a newcomer on the same number.
 */
export type Target = number | { readonly endpoint: number; readonly generation?: number };

/** A message to send. `type` is the application's (a signed 32-bit integer, 0 by default). */
export interface OutgoingMessage {
  readonly type?: number;
  readonly payload?: Uint8Array;
}

/** A received message. */
export interface Message {
  readonly kind: MessageKind;
  /** The sender's endpoint number. */
  readonly source: number;
  /** The sender's generation: reply and targeted sends use it to reach exactly that incarnation. */
  readonly sourceGeneration: number;
  readonly type: number;
  /** The request id for `kind === 'request'` (and on the reply a `sendrec` returns), else 0n. */
  readonly requestId: bigint;
  /** The coalesced notification bits for `kind === 'notification'`, else 0. */
  readonly bits: number;
  readonly payload: Buffer;
}

/** Options every blocking call takes. */
export interface CallOptions {
  /**
   * Milliseconds to wait. `0` makes the call non-blocking (EAGAIN instead of waiting);
   * `Infinity` (the default unless the node sets another) waits until the call completes or
   * the peer goes away.
   */
  readonly timeout?: number;
  /** Cancels the call with ECANCELED. A call cancelled after it completed keeps its result. */
  readonly signal?: AbortSignal;
}

export interface ReceiveOptions extends CallOptions {
  /** Only take messages and notifications from this endpoint (and generation, if given). */
  readonly from?: Target;
}

/** Wire and ABI flag bits of a message header. */
export const MessageFlags = {
  /** The message is a request from `sendrec`; answer it with `reply`. */
  REQUEST: 1 << 0,
  /** The message is a notification; `bits` holds the coalesced mask. */
  NOTIFY: 1 << 1,
  /** The message answers a request (seen only by `sendrec` callers). */
  REPLY: 1 << 2,
} as const;

/** The largest notification mask: notifications carry 32 bits. */
export const NOTIFY_BITS_MAX = 0xffff_ffff;
/** Endpoint numbers are unsigned 32-bit; the top value means "any" in filters. */
export const ENDPOINT_ANY = 0xffff_ffff;

export function kindOf(flags: number): MessageKind {
  if (flags & MessageFlags.NOTIFY) return 'notification';
  if (flags & MessageFlags.REQUEST) return 'request';
  return 'message';
}
