/** Node's timers hold at most 2^31-1 ms (about 24.8 days); longer delays would fire at once. */
const MAX_DELAY_MS = 0x7fff_ffff;

export interface Deadline {
  clear(): void;
}

/**
 * Calls `fire` once an absolute CLOCK_MONOTONIC deadline (ns, as `process.hrtime.bigint()`) has
 * passed, however far away it is. Returns undefined for 0n, which means "no deadline".
 */
export function deadlineTimer(deadline: bigint, fire: () => void): Deadline | undefined {
  if (deadline === 0n) return undefined;
  let timer: NodeJS.Timeout;
  const arm = () => {
    const left = deadline - process.hrtime.bigint();
    if (left <= 0n) {
      timer = setTimeout(fire, 0);
      return;
    }
    const ms = Math.ceil(Number(left) / 1e6);
    // The loop's clock may run a little behind: check the deadline again when the timer fires.
    timer = setTimeout(arm, Math.min(ms, MAX_DELAY_MS));
  };
  arm();
  return { clear: () => clearTimeout(timer) };
}
