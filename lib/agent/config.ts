/**
 * The agent's configuration: a YAML file validated by one zod schema, overridden by flags.
 * Unknown keys are errors, so a typo never silently falls back to a default.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { defaultSocketPath } from '../user/socket-path.js';

const u32 = z.number().int().min(0).max(0xffff_ffff);

/**
 * The longest socket path, in bytes. A Unix socket path holds at most 107 bytes (sun_path), and
 * the agent first listens on a staging name in the same directory, `.dvk<pid>` (pid up to 7
 * digits), which may be up to 10 bytes longer than the path itself.
 */
export const SOCKET_PATH_MAX = 97;
const SOCKET_PATH_MESSAGE = `at most ${SOCKET_PATH_MAX} bytes: Unix socket paths are limited to 107, and the agent needs room for a staging name (".dvk<pid>") next to the socket`;

const socketMode = z
  .union([z.number().int(), z.string().regex(/^0?[0-7]{3}$/, 'an octal mode such as "0660"')])
  .transform((m) => (typeof m === 'string' ? Number.parseInt(m, 8) : m))
  .refine((m) => m >= 0 && m <= 0o777 && (m & 0o600) === 0o600, {
    message: 'must be a mode from 0600 to 0777 that keeps owner read and write',
  });

/** Messages a queue holds before senders wait. */
export const queueLengthSchema = z.number().int().min(1).max(1_000_000);
/** Payload bytes a queue holds before senders wait. */
export const queueBytesSchema = z
  .number()
  .int()
  .min(1024)
  .max(1024 * 1024 * 1024);

export const dcSchema = z.strictObject({
  id: u32,
  // Clients check names by the same rule before binding (lib/node.ts); the limits are the
  // kernel module's (DVK_NAME_MAX with its NUL, DVK_SLOTS_MAX), so a DC works on both backends.
  name: z
    .string()
    .min(1)
    .max(63)
    .regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, "_", "." or "-"'),
  slots: z.number().int().min(1).max(65_536).default(1024),
  /** This DC's queue bounds, if not the node's (limits.queueLength, limits.queueBytes). */
  queueLength: queueLengthSchema.optional(),
  queueBytes: queueBytesSchema.optional(),
  allow: z
    .strictObject({ uids: z.array(u32).optional(), gids: z.array(u32).optional() })
    .optional(),
});

/** Payload and queue limits; in a cluster, the cluster file sets them for every node. */
export const limitsSchema = z
  .strictObject({
    maxPayload: z
      .number()
      .int()
      .min(65536)
      .max(16 * 1024 * 1024)
      .default(65536),
    queueLength: queueLengthSchema.default(64),
    queueBytes: queueBytesSchema.default(4 * 1024 * 1024),
  })
  .default({ maxPayload: 65536, queueLength: 64, queueBytes: 4 * 1024 * 1024 });

/** A socket path, held to SOCKET_PATH_MAX. */
export const socketPathSchema = z
  .string()
  .min(1)
  .refine((p) => Buffer.byteLength(p) <= SOCKET_PATH_MAX, SOCKET_PATH_MESSAGE);

export const configSchema = z
  .strictObject({
    node: z.strictObject({ name: z.string().min(1).max(64) }).default({ name: 'node0' }),
    socket: z
      .strictObject({
        path: socketPathSchema.optional(),
        mode: socketMode.default(0o600),
        group: z.union([z.string().min(1), u32]).optional(),
      })
      .default({ mode: 0o600 }),
    limits: limitsSchema,
    dcs: z
      .array(dcSchema)
      .min(1)
      .default([{ id: 0, name: 'default', slots: 1024 }]),
    log: z
      .strictObject({
        level: z
          .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
          .default('info'),
      })
      .default({ level: 'info' }),
  })
  .superRefine((config, ctx) => {
    for (const key of ['id', 'name'] as const) {
      const seen = new Set<unknown>();
      config.dcs.forEach((dc, i) => {
        if (seen.has(dc[key])) {
          ctx.addIssue({ code: 'custom', path: ['dcs', i, key], message: `duplicate DC ${key}` });
        }
        seen.add(dc[key]);
      });
    }
  });

export type AgentConfig = z.output<typeof configSchema>;
export type AgentConfigInput = z.input<typeof configSchema>;

/** A configuration that cannot be used; `message` says what and where. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Validates `input` with `schema`. Throws ConfigError listing every problem, by path. */
export function validate<S extends z.ZodType>(
  schema: S,
  input: unknown,
  source: string,
): z.output<S> {
  const result = schema.safeParse(input ?? {});
  if (!result.success) {
    throw new ConfigError(`invalid ${source}:\n${z.prettifyError(result.error)}`);
  }
  return result.data;
}

/** Validates a configuration object. Throws ConfigError listing every problem. */
export function parseConfig(input: unknown, source = 'configuration'): AgentConfig {
  return validate(configSchema, input, source);
}

/** Reads and validates a YAML file. */
export async function loadConfigFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return parseYaml(text);
  } catch (err) {
    if (err instanceof YAMLParseError) throw new ConfigError(`${path}: ${err.message}`);
    throw err;
  }
}

/**
 * The socket path a configuration resolves to. The default (under $XDG_RUNTIME_DIR, say) is
 * held to the same length limit as a configured path.
 */
export function socketPathOf(config: AgentConfig): string {
  const path = config.socket.path ?? defaultSocketPath();
  if (Buffer.byteLength(path) > SOCKET_PATH_MAX) {
    throw new ConfigError(`socket path ${path}: ${SOCKET_PATH_MESSAGE}`);
  }
  return path;
}
