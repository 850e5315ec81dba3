export {
  Relay,
  decodeRelayToken,
  eventProblem,
  RelayTokenError,
  type NodeFailure,
  type RelayOptions,
  type RelayPage,
} from './relay.js';
export { tcpNodeApi, type NodeApi, type RelayNode } from './node-api.js';
export { relayAuditHandlers } from './service.js';
export {
  readRelayTls,
  startRelay,
  type RelayServer,
  type RelayTls,
  type StartRelayOptions,
} from './start.js';
export { parseNodeList, staticNodes } from './nodes.js';
export { checkNodeIdTemplate, KubernetesNodeSource, type KubernetesNodeSourceOptions } from './kube-nodes.js';
