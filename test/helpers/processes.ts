/**
 * Processes seen from /proc (Linux): whether one still runs, and its parent. A zombie does not
 * count as running: its exit has happened, and only its parent's wait is missing.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** State letter and parent pid of `pid`, or undefined if there is no such process. */
function stat(pid: number): { state: string; ppid: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ')'.
  const [state = '', ppid = ''] = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state, ppid: Number(ppid) };
}

/** Whether `pid` is a live process (not gone, not a zombie). */
export function isRunning(pid: number): boolean {
  const s = stat(pid);
  return s !== undefined && s.state !== 'Z' && s.state !== 'X';
}

/** The parent of `pid`, or undefined if there is no such process. */
export function parentOf(pid: number): number | undefined {
  return stat(pid)?.ppid;
}

/** The live child processes of `pid` (not zombies). */
export function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((child) => {
      const s = stat(child);
      return s !== undefined && s.ppid === pid && s.state !== 'Z' && s.state !== 'X';
    });
}
