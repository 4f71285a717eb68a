#!/usr/bin/env node
/**
 * The `dvk` command: run the node agent, inspect a node.
 * Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad configuration.
 */
import { existsSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { Agent, type ClusterMembership } from '../agent/agent.js';
import { ConfigError, loadConfigFile, parseConfig } from '../agent/config.js';
import type { MigrationReport } from '../backend.js';
import { nodeAgentInput, parseCluster, resolveServiceModules } from '../cluster/config.js';
import { StaticDirectory } from '../cluster/directory.js';
import { DvkError } from '../errors.js';
import { DEVICE_PATH } from '../kernel/backend.js';
import { openNode } from '../node.js';
import { VERSION } from '../version.js';
import { formatStatus } from './status-table.js';

function integer(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('not an integer');
  return n;
}

/** `--dc 1:shop` or `--dc 1:shop:4096` (id, name, slots). */
function dcSpec(value: string, previous: unknown[] = []): unknown[] {
  const [id, name, slots, ...rest] = value.split(':');
  if (!id || !name || rest.length) throw new InvalidArgumentError('expected ID:NAME[:SLOTS]');
  const dc: Record<string, unknown> = { id: integer(id), name };
  if (slots) dc.slots = integer(slots);
  return [...previous, dc];
}

interface AgentFlags {
  config?: string;
  node?: string;
  listen?: string;
  name?: string;
  socket?: string;
  socketMode?: string;
  socketGroup?: string;
  dc?: unknown[];
  maxPayload?: number;
  queueLength?: number;
  queueBytes?: number;
  logLevel?: string;
  backend?: 'user' | 'kernel';
}

/**
 * Layers flags over the file: defaults < file < flags. A file with a `cluster` key is a cluster
 * file: the node named by --node takes its part of it (lib/cluster/config.ts).
 */
async function agentConfig(flags: AgentFlags) {
  let file = flags.config ? await loadConfigFile(flags.config) : {};
  if (file !== null && (typeof file !== 'object' || Array.isArray(file))) {
    throw new ConfigError(`${flags.config}: the top level must be a mapping`);
  }
  let cluster: ClusterMembership | undefined;
  if (file && 'cluster' in file) {
    const source = flags.config ?? 'cluster file';
    if (!flags.node)
      throw new ConfigError(`${source} is a cluster file: say which node with --node`);
    const fromFile = [flags.dc, flags.name, flags.maxPayload, flags.queueLength, flags.queueBytes];
    if (fromFile.some((f) => f !== undefined)) {
      throw new ConfigError(
        '--dc, --name, --max-payload, --queue-length and --queue-bytes do not apply to a ' +
          'cluster node: the cluster file sets them, the same for every node',
      );
    }
    const parsed = parseCluster(file, source);
    const config = flags.config ? resolveServiceModules(parsed, flags.config) : parsed;
    file = nodeAgentInput(config, flags.node);
    cluster = {
      config,
      directory: new StaticDirectory(config, flags.node),
      listen: flags.listen,
      // Where dvk.ko is loaded, the node's endpoints are its.
      backend: flags.backend ?? (existsSync(DEVICE_PATH) ? 'kernel' : 'user'),
    };
  } else if (flags.node || flags.listen || flags.backend) {
    throw new ConfigError('--node, --listen and --backend need a cluster file (--config)');
  }
  const input = { ...(file as Record<string, Record<string, unknown> | undefined>) };
  const layer = (key: string, values: Record<string, unknown>) => {
    const set = Object.entries(values).filter(([, v]) => v !== undefined);
    if (set.length) input[key] = { ...(input[key] ?? {}), ...Object.fromEntries(set) };
  };
  layer('node', { name: flags.name });
  layer('socket', { path: flags.socket, mode: flags.socketMode, group: flags.socketGroup });
  layer('limits', {
    maxPayload: flags.maxPayload,
    queueLength: flags.queueLength,
    queueBytes: flags.queueBytes,
  });
  layer('log', { level: flags.logLevel });
  const merged: Record<string, unknown> = { ...input };
  if (flags.dc) merged.dcs = flags.dc;
  return { config: parseConfig(merged, flags.config ?? 'flags'), cluster };
}

async function runAgent(flags: AgentFlags): Promise<void> {
  const { config, cluster } = await agentConfig(flags);
  const agent = new Agent(config, undefined, cluster);
  try {
    await agent.start();
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    // A port or socket that is taken, say: one line that says so, not a stack.
    process.stderr.write(`dvk: the agent cannot start: ${(err as Error).message}\n`);
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    agent.log.info({ signal }, 'shutting down');
    agent.stop().then(
      () => process.exit(0),
      (err) => {
        agent.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function runStatus(flags: { socket?: string; json?: boolean }): Promise<void> {
  const status = await openNode({ backend: 'user', socketPath: flags.socket }).status();
  process.stdout.write(flags.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
}

/** "dc/endpoint", the DC by name or id. */
function endpointSpec(value: string): { dc: string | number; endpoint: number } {
  const m = /^([A-Za-z0-9_.-]+)\/(\d+)$/.exec(value);
  if (!m) throw new InvalidArgumentError('expected <dc>/<endpoint>, e.g. demo/10');
  const [, dc = '', endpoint = ''] = m;
  return { dc: /^\d+$/.test(dc) ? Number(dc) : dc, endpoint: Number(endpoint) };
}

function describeMove(r: MigrationReport): string {
  const ms = (n: number) => n.toFixed(1);
  return (
    `moved ${r.service} (${r.dc}/${r.endpoint}) ${r.from} -> ${r.to} in ${ms(r.ms.total)} ms ` +
    `(prepare ${ms(r.ms.prepare)}, freeze and transfer ${ms(r.ms.transfer)}, ` +
    `commit ${ms(r.ms.commit)}; state ${r.stateBytes} B; epoch ${r.epoch})`
  );
}

async function runMigrate(
  target: { dc: string | number; endpoint: number },
  flags: { to: string; socket?: string; json?: boolean },
): Promise<void> {
  const node = openNode({ backend: 'user', socketPath: flags.socket });
  if (!flags.json)
    process.stdout.write(`moving ${target.dc}/${target.endpoint} to ${flags.to} ...\n`);
  const report = await node.migrate(target, { to: flags.to });
  process.stdout.write(
    flags.json ? `${JSON.stringify(report, null, 2)}\n` : `${describeMove(report)}\n`,
  );
}

/**
 * Moves every service off a node, one at a time, each to the node of its DC that serves the
 * fewest services (a node that is down never gets one). A move that fails is reported and the
 * others go on; the exit status says whether all moved.
 */
async function runDrain(nodeName: string, flags: { socket?: string; json?: boolean }) {
  const node = openNode({ backend: 'user', socketPath: flags.socket });
  const cluster = (await node.status()).cluster;
  if (!cluster) throw new DvkError('EOPNOTSUPP', 'the agent is not a member of a cluster');
  const up = new Set(cluster.links.filter((l) => l.state !== 'down').map((l) => l.name));
  up.add(cluster.self.name);
  if (!up.has(nodeName) && !cluster.links.some((l) => l.name === nodeName)) {
    throw new DvkError('EINVAL', `no node named ${nodeName}`);
  }
  const load = new Map<string, number>();
  for (const s of cluster.services) if (s.node) load.set(s.node, (load.get(s.node) ?? 0) + 1);
  const moving = cluster.services.filter((s) => s.node === nodeName);
  const reports: unknown[] = [];
  let failed = 0;
  if (!flags.json) process.stdout.write(`draining ${nodeName}: ${moving.length} services\n`);
  for (const s of moving) {
    const to = [...up]
      .filter((n) => n !== nodeName && s.dcNodes.includes(n))
      .sort((a, b) => (load.get(a) ?? 0) - (load.get(b) ?? 0) || a.localeCompare(b))[0];
    try {
      if (!to) throw new DvkError('EHOSTUNREACH', `no other node of DC ${s.dc} is up`);
      const report = await node.migrate({ dc: s.dc, endpoint: s.endpoint }, { to });
      load.set(to, (load.get(to) ?? 0) + 1);
      reports.push(report);
      if (!flags.json) process.stdout.write(`${describeMove(report)}\n`);
    } catch (err) {
      failed++;
      const message = err instanceof Error ? err.message : String(err);
      reports.push({ service: s.name, error: message });
      if (!flags.json) process.stdout.write(`could not move ${s.name}: ${message}\n`);
    }
  }
  if (flags.json) process.stdout.write(`${JSON.stringify(reports, null, 2)}\n`);
  else
    process.stdout.write(
      `drained ${nodeName}: ${moving.length - failed} moved, ${failed} failed\n`,
    );
  if (failed) process.exitCode = 1;
}

export function program(): Command {
  const cli = new Command('dvk')
    .description('DVK: endpoint IPC across a cluster, with live migration')
    .version(VERSION);

  cli
    .command('agent')
    .description("run the node agent: it owns this node's endpoints and serves local processes")
    .option('-c, --config <file>', 'YAML configuration file, or a cluster file (with --node)')
    .option('--node <name>', 'the node of the cluster file this agent runs as')
    .option(
      '--listen <host:port>',
      "where to accept other nodes' links (default: the node's address)",
    )
    .option('--name <name>', 'node name')
    .addOption(new Option('--socket <path>', 'Unix socket to listen on').env('DVK_SOCKET'))
    .option('--socket-mode <mode>', 'socket permissions, octal (0600 owner only, 0660 group)')
    .option('--socket-group <group>', 'group that owns the socket (name or gid)')
    .option(
      '--dc <id:name[:slots]>',
      "a DC to serve (repeatable; replaces the file's list)",
      dcSpec,
    )
    .option('--max-payload <bytes>', 'largest message payload', integer)
    .option('--queue-length <n>', 'messages an endpoint queue holds before senders wait', integer)
    .option(
      '--queue-bytes <n>',
      'payload bytes an endpoint queue holds before senders wait',
      integer,
    )
    .addOption(
      new Option(
        '--backend <kind>',
        "where a cluster node's endpoints live (default: kernel if /dev/dvk exists, else user)",
      ).choices(['user', 'kernel']),
    )
    .addOption(
      new Option('--log-level <level>', 'log level').choices([
        'fatal',
        'error',
        'warn',
        'info',
        'debug',
        'trace',
        'silent',
      ]),
    )
    .action(runAgent);

  cli
    .command('status')
    .description('show the endpoints of this node, with queue depths')
    .addOption(new Option('--socket <path>', "the agent's Unix socket").env('DVK_SOCKET'))
    .option('--json', 'print JSON instead of a table')
    .action(runStatus);

  cli
    .command('migrate')
    .description('move the service serving an endpoint to another node while it is being called')
    .argument('<dc/endpoint>', 'the endpoint, e.g. demo/10 (the DC by name or id)', endpointSpec)
    .requiredOption('--to <node>', 'the node to move it to')
    .addOption(new Option('--socket <path>', "the agent's Unix socket").env('DVK_SOCKET'))
    .option('--json', 'print the report as JSON')
    .action(runMigrate);

  cli
    .command('drain')
    .description('move every service off a node (for maintenance), reporting each move')
    .argument('<node>', 'the node to empty')
    .addOption(new Option('--socket <path>', "the agent's Unix socket").env('DVK_SOCKET'))
    .option('--json', 'print the reports as JSON')
    .action(runDrain);

  return cli;
}

async function main(): Promise<void> {
  try {
    await program().parseAsync(process.argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`dvk: ${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof DvkError) {
      process.stderr.write(`dvk: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

await main();
