/**
 * The cluster file: the nodes (id, name, address), the DCs with the nodes they span, the
 * shared secret links authenticate with, the link timing, and the services the agents start.
 * One zod schema validates it; unknown keys are errors and every cross-reference (a DC naming
 * a node, an endpoint range naming a node of its DC, a service naming its DC and node) is
 * checked, so a typo fails at start-up with the path to it.
 */
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import {
  ConfigError,
  limitsSchema,
  loadConfigFile,
  queueBytesSchema,
  queueLengthSchema,
  socketPathSchema,
  validate,
} from '../agent/config.js';

const u32 = z.number().int().min(0).max(0xffff_ffff);
const name = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, "_", "." or "-"');

/** host:port, with an IPv6 host in brackets. */
const address = z
  .string()
  .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/, 'host:port, e.g. 10.0.0.1:7100')
  .refine((a) => {
    const port = Number(a.slice(a.lastIndexOf(':') + 1));
    return port >= 1 && port <= 65535;
  }, 'the port must be 1 to 65535');

/** An endpoint range of a placement, low to high, both included. */
interface Range {
  lo: number;
  hi: number;
}

/** "0-15" or "7": a range of endpoint numbers. */
const range = z
  .string()
  .regex(/^\d+(-\d+)?$/, 'an endpoint number or a range such as "0-15"')
  .transform((r) => {
    const [lo, hi = lo] = r.split('-').map(Number) as [number, number?];
    return { lo, hi };
  })
  .refine((r) => r.lo <= r.hi, 'a range runs from low to high');

const nodeSchema = z.strictObject({
  /** Small integer id, unique in the cluster; it also orders who dials whom. */
  id: z.number().int().min(1).max(65_535),
  name,
  /** Where the node's agent listens for other agents. */
  address,
  /** Where the node's agent listens for local processes (default: as for a lone agent). */
  socket: socketPathSchema.optional(),
});

const dcSchema = z.strictObject({
  id: u32,
  name,
  slots: z.number().int().min(1).max(65_536).default(1024),
  /** The nodes this DC spans, by name. */
  nodes: z.array(name).min(1),
  /**
   * Which node each endpoint number lives on, by node name: ranges such as "0-15". Numbers no
   * range covers may be bound on any node of the DC.
   */
  placement: z.record(name, z.array(range)).default({}),
  /** This DC's queue bounds, if not the cluster's limits. */
  queueLength: queueLengthSchema.optional(),
  queueBytes: queueBytesSchema.optional(),
});

/**
 * A DVK service (lib/service) its node's agent starts at start-up, on an endpoint that may
 * later move: so not one the DC's placement pins to a node.
 */
const serviceSchema = z.strictObject({
  /** The module whose default export is the service; a relative path is the file's. */
  module: z.string().min(1),
  /** The DC, by name. */
  dc: name,
  endpoint: z.number().int().min(0),
  /** The node whose agent starts it, by name. */
  node: name,
});

const linkSchema = z
  .strictObject({
    /** How often an idle link sends a heartbeat. */
    heartbeatMs: z.number().int().min(10).max(60_000).default(500),
    /** Silence after which a link is dropped and redialled. */
    silenceMs: z.number().int().min(50).max(600_000).default(2_000),
    /** Unreachable this long, a node is declared down: calls waiting on it get EHOSTUNREACH. */
    nodeDownMs: z.number().int().min(100).max(3_600_000).default(5_000),
    /** The largest frame a link accepts (bytes). */
    maxFrame: z
      .number()
      .int()
      .min(65_536)
      .max(64 * 1024 * 1024)
      .default(17 * 1024 * 1024),
  })
  .refine((l) => l.silenceMs > l.heartbeatMs, {
    message: 'silenceMs must be longer than heartbeatMs',
    path: ['silenceMs'],
  })
  .refine((l) => l.nodeDownMs >= l.silenceMs, {
    message: 'nodeDownMs must be at least silenceMs',
    path: ['nodeDownMs'],
  });

export const clusterSchema = z
  .strictObject({
    cluster: z.strictObject({
      name,
      /** The shared secret every agent proves it knows (HMAC); at least 16 characters. */
      secret: z.string().min(16, 'the secret must have at least 16 characters'),
    }),
    link: linkSchema.default({
      heartbeatMs: 500,
      silenceMs: 2_000,
      nodeDownMs: 5_000,
      maxFrame: 17 * 1024 * 1024,
    }),
    /** The same on every node: a message one node accepts, every node can deliver. */
    limits: limitsSchema,
    nodes: z.array(nodeSchema).min(1),
    dcs: z.array(dcSchema).default([]),
    /** Services the agents start, by name. */
    services: z.record(name, serviceSchema).default({}),
  })
  .superRefine((c, ctx) => {
    const unique = (what: string, values: unknown[], key: string, list: string) => {
      const seen = new Set<unknown>();
      values.forEach((v, i) => {
        if (seen.has(v)) {
          ctx.addIssue({
            code: 'custom',
            message: `duplicate ${what} ${String(v)}`,
            path: [list, i, key],
          });
        }
        seen.add(v);
      });
    };
    unique(
      'node id',
      c.nodes.map((n) => n.id),
      'id',
      'nodes',
    );
    unique(
      'node name',
      c.nodes.map((n) => n.name),
      'name',
      'nodes',
    );
    unique(
      'node address',
      c.nodes.map((n) => n.address),
      'address',
      'nodes',
    );
    unique(
      'DC id',
      c.dcs.map((d) => d.id),
      'id',
      'dcs',
    );
    unique(
      'DC name',
      c.dcs.map((d) => d.name),
      'name',
      'dcs',
    );
    // A frame carries a record header (56 bytes) and a link header (32) around a payload.
    if (c.link.maxFrame < c.limits.maxPayload + 1024) {
      ctx.addIssue({
        code: 'custom',
        message: `must exceed limits.maxPayload (${c.limits.maxPayload}) by at least 1024 bytes of headers`,
        path: ['link', 'maxFrame'],
      });
    }
    const nodeNames = new Set(c.nodes.map((n) => n.name));
    c.dcs.forEach((dc, i) => {
      dc.nodes.forEach((n, j) => {
        if (!nodeNames.has(n)) {
          ctx.addIssue({
            code: 'custom',
            message: `no node named ${n}`,
            path: ['dcs', i, 'nodes', j],
          });
        }
      });
      const owner = new Map<number, string>();
      for (const [node, ranges] of Object.entries(dc.placement)) {
        if (!dc.nodes.includes(node)) {
          ctx.addIssue({
            code: 'custom',
            message: `${node} is not a node of DC ${dc.name}`,
            path: ['dcs', i, 'placement', node],
          });
        }
        ranges.forEach((r, j) => {
          if (r.hi >= dc.slots) {
            ctx.addIssue({
              code: 'custom',
              message: `range ${r.lo}-${r.hi} goes past the DC's ${dc.slots} slots`,
              path: ['dcs', i, 'placement', node, j],
            });
            return;
          }
          for (let e = r.lo; e <= r.hi; e++) {
            const other = owner.get(e);
            if (other !== undefined && other !== node) {
              ctx.addIssue({
                code: 'custom',
                message: `endpoint ${e} is placed on both ${other} and ${node}`,
                path: ['dcs', i, 'placement', node, j],
              });
              return;
            }
            owner.set(e, node);
          }
        });
      }
    });
    checkServices(c, ctx);
  });

/** What checkServices reads of a parsed file (spelled out: the schema's type needs the check). */
interface ServicesInput {
  nodes: { name: string }[];
  dcs: { name: string; slots: number; nodes: string[]; placement: Record<string, Range[]> }[];
  services: Record<string, z.output<typeof serviceSchema>>;
}

/** A service's DC, node and endpoint exist, agree, are not placed, and are its alone. */
function checkServices(c: ServicesInput, ctx: z.RefinementCtx): void {
  const nodeNames = new Set(c.nodes.map((n) => n.name));
  const taken = new Map<string, string>();
  for (const [service, s] of Object.entries(c.services)) {
    const issue = (key: string, message: string) =>
      ctx.addIssue({ code: 'custom', message, path: ['services', service, key] });
    if (!nodeNames.has(s.node)) issue('node', `no node named ${s.node}`);
    const dc = c.dcs.find((d) => d.name === s.dc);
    if (!dc) {
      issue('dc', `no DC named ${s.dc}`);
      continue;
    }
    if (nodeNames.has(s.node) && !dc.nodes.includes(s.node)) {
      issue('node', `${s.node} is not a node of DC ${dc.name}`);
    }
    if (s.endpoint >= dc.slots) {
      issue('endpoint', `endpoint ${s.endpoint} is outside DC ${dc.name}'s ${dc.slots} slots`);
      continue;
    }
    for (const [node, ranges] of Object.entries(dc.placement)) {
      if (ranges.some((r) => s.endpoint >= r.lo && s.endpoint <= r.hi)) {
        issue(
          'endpoint',
          `endpoint ${s.endpoint} of DC ${dc.name} is placed on ${node}: a service's endpoint ` +
            'must be free to move, so it cannot be in a placement range',
        );
      }
    }
    const where = `${dc.name}/${s.endpoint}`;
    const other = taken.get(where);
    if (other === undefined) taken.set(where, service);
    else issue('endpoint', `services ${other} and ${service} are both on ${where}`);
  }
}

export type ClusterConfig = z.output<typeof clusterSchema>;
export type ClusterNode = ClusterConfig['nodes'][number];
export type ClusterDc = ClusterConfig['dcs'][number];
export type ClusterService = ClusterConfig['services'][string];

/** Validates a cluster configuration object. Throws ConfigError listing every problem. */
export function parseCluster(input: unknown, source = 'cluster file'): ClusterConfig {
  return validate(clusterSchema, input, source);
}

/** Reads, parses and validates a cluster YAML file; service modules get absolute paths. */
export async function loadCluster(path: string): Promise<ClusterConfig> {
  return resolveServiceModules(parseCluster(await loadConfigFile(path), path), path);
}

/**
 * The configuration with each service's module as an absolute path: a relative one is taken
 * from the directory of the cluster file at `file`, not from wherever the agent was started.
 */
export function resolveServiceModules(config: ClusterConfig, file: string): ClusterConfig {
  const dir = dirname(resolve(file));
  const services = Object.entries(config.services).map(
    ([name, s]) => [name, { ...s, module: resolve(dir, s.module) }] as const,
  );
  return { ...config, services: Object.fromEntries(services) };
}

/** The services whose instances the agent of `nodeName` starts, with their names. */
export function servicesOf(
  config: ClusterConfig,
  nodeName: string,
): (ClusterService & { name: string })[] {
  return Object.entries(config.services)
    .filter(([, s]) => s.node === nodeName)
    .map(([name, s]) => ({ name, ...s }));
}

/**
 * The agent configuration input of one node of a cluster: its name, its socket, the cluster's
 * limits and the DCs that span it. Flags are layered over it like over an agent file.
 */
export function nodeAgentInput(cluster: ClusterConfig, nodeName: string): Record<string, unknown> {
  const node = cluster.nodes.find((n) => n.name === nodeName);
  if (!node) {
    const known = cluster.nodes.map((n) => n.name).join(', ');
    throw new ConfigError(`no node named ${nodeName} in the cluster file (nodes: ${known})`);
  }
  const dcs = cluster.dcs
    .filter((d) => d.nodes.includes(nodeName))
    .map((d) => ({
      id: d.id,
      name: d.name,
      slots: d.slots,
      ...(d.queueLength ? { queueLength: d.queueLength } : {}),
      ...(d.queueBytes ? { queueBytes: d.queueBytes } : {}),
    }));
  if (!dcs.length) throw new ConfigError(`node ${nodeName} is in no DC of the cluster file`);
  return {
    node: { name: nodeName },
    ...(node.socket ? { socket: { path: node.socket } } : {}),
    limits: cluster.limits,
    dcs,
  };
}
