/** Clients of the SPIFFE Workload API and of the SPIRE agent's Delegated Identity API. */
export {
  parseWorkloadEndpoint,
  resolveWorkloadEndpoint,
  SPIFFE_ENDPOINT_SOCKET_ENV,
  type WorkloadEndpoint,
} from './address.js';
export {
  WorkloadApiError,
  WorkloadEndpointError,
  type ResponseRejection,
  type ResponseRejectReason,
} from './errors.js';
export { parseSelector, formatSelector, selectorSetKey, SelectorError, type Selector } from './selector.js';
export { DEFAULT_RETRY, type RetryPolicy, type StreamState, type StreamWatch } from './stream-watch.js';
export { DEFAULT_MAX_MESSAGE_BYTES } from './channel.js';
export { decodeBundleMap, type ReceivedX509Svid } from './decode.js';
export {
  WorkloadApiClient,
  type WorkloadApiClientOptions,
  type X509Context,
  type X509BundlesUpdate,
} from './workload-client.js';
export {
  DelegatedIdentityClient,
  type DelegatedIdentityClientOptions,
  type DelegatedX509Update,
} from './delegated-client.js';
export { serviceDefinitions, WORKLOAD_API_HEADER } from './proto.js';
