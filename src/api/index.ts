export type { DaemonView, EntryView, FlushRequest, StatusView } from './daemon-view.js';
export {
  DEFAULT_SOCKET_PATH,
  startApiServer,
  type ApiServer,
  type ApiServerOptions,
  type AuditHandlers,
  type TcpIdentity,
  type TcpListenerOptions,
  type UnixListenerOptions,
} from './server.js';
export type { AuditQueueView } from './audit-service.js';
export { writeMessage } from './stream-write.js';
export { ApiClient, type ApiClientOptions, type ApiClientTls, type EventPage } from './client.js';
export { ApiClientError, ApiServerError } from './errors.js';
export { MAX_PAGE_SIZE } from './convert.js';
export { AUDIT_SERVICE, loadApiPackageDefinition, protoDir, WITNESS_SERVICE } from './proto.js';
export { witnessServiceHandlers, type WitnessView } from './witness-service.js';
export { peerSpiffeIdOf } from './tcp-auth.js';
export type {
  EntryMsg,
  EventFilterMsg,
  EventMsg,
  FlushEntriesRequestMsg,
  FollowEventsRequestMsg,
  ListEntriesResponseMsg,
  NodeAnswerMsg,
  PageEndMsg,
  SignedHeadMsg,
  SubmitHeadResponseMsg,
  WitnessedHeadMsg,
  QueryEventsRequestMsg,
  StatusMsg,
} from './messages.js';
export type { BundleMap } from './tcp-auth.js';
