#!/usr/bin/env node
/**
 * The `dvk` command: run the node agent, inspect a node.
 * Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad configuration.
 */
import { existsSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { Agent, type ClusterMembership } from '../agent/agent.js';
import { ConfigError, loadConfigFile, parseConfig } from '../agent/config.js';
import { nodeAgentInput, parseCluster } from '../cluster/config.js';
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
    const config = parseCluster(file, source);
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
