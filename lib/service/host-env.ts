/**
 * The environment an agent sets for a service instance's process (lib/service/host.ts). Kept
 * apart from host.ts, which runs an instance when imported: the agent needs only the names.
 */
export const ServiceEnv = {
  /** The module whose default export is the service: an absolute path. */
  MODULE: 'DVK_SERVICE_MODULE',
  /** The DC, by name. */
  DC: 'DVK_SERVICE_DC',
  ENDPOINT: 'DVK_SERVICE_ENDPOINT',
  /** The agent's socket. */
  SOCKET: 'DVK_SERVICE_SOCKET',
  /** '1' for an instance that takes over a moving endpoint: it waits for a snapshot. */
  INCOMING: 'DVK_SERVICE_INCOMING',
} as const;
