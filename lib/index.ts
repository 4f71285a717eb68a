/**
 * DVK: endpoint IPC for services across a cluster. Start at `openNode`.
 *
 * @example
 * const node = openNode();
 * const server = await node.bind({ dc: 'default', endpoint: 1 });
 * for await (const request of server) await server.reply(request, { payload: request.payload });
 */
export type {
  Backend,
  BackendKind,
  BoundEndpoint,
  CallControl,
  ClusterStatus,
  DcStatus,
  EndpointStatus,
  LinkStatus,
  MigrationReport,
  NodeStatus,
  ServiceLocation,
} from './backend.js';
export { Endpoint } from './endpoint.js';
export { DvkError, type ErrorCode, type ErrorContext, isDvkError } from './errors.js';
export {
  type CallOptions,
  type EndpointAddress,
  type Message,
  MessageFlags,
  type MessageKind,
  type OutgoingMessage,
  type ReceiveOptions,
  type Target,
} from './message.js';
export { type BindOptions, DvkNode, type NodeOptions, openNode } from './node.js';
export { defineService, type ServiceContext, type ServiceDefinition } from './service/define.js';
export { defaultSocketPath } from './user/socket-path.js';
