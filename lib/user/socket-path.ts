import { join } from 'node:path';

/**
 * Where the node agent listens unless told otherwise: `DVK_SOCKET`, else /run/dvk/agent.sock for
 * root, else under $XDG_RUNTIME_DIR, else /tmp/dvk-<uid>. Agent and clients share this rule so
 * that neither needs configuring on a single-user machine.
 */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DVK_SOCKET) return env.DVK_SOCKET;
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return '/run/dvk/agent.sock';
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'dvk', 'agent.sock');
  return join('/tmp', `dvk-${uid}`, 'agent.sock');
}
