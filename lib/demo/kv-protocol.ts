/** Message types of the demo counter service. The request payload is the key (UTF-8). */
export const KvOp = { INCR: 1, GET: 2 } as const;
/** Notification bit asking the service to print its state. */
export const REPORT_BIT = 1;
