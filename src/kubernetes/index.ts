/** Public face of the Kubernetes sources: inventory and policy from the API, node key publication. */
export {
  KubernetesClient,
  KubernetesAccessError,
  loadKubeConfig,
  IN_CLUSTER_TOKEN,
  type PolicyResource,
} from './client.js';
export { KeptInformer, type ResourceInformer, type SyncState, type WatchStatus } from './informer.js';
export { EventRecorder, type EventApi, type EventRecorderOptions } from './events.js';
export { buildInventory, type Exclusion, type PodEntry } from './inventory-builder.js';
export {
  KubernetesInventorySource,
  type InventorySourceObserver,
  type KubernetesInventorySourceOptions,
} from './inventory-source.js';
export { KubernetesMetrics, type KubernetesMetricsSource } from './metrics.js';
export { nodeToInventoryNode, type NodeConversion, type NodeResult } from './node.js';
export { publishNodeKey, type NodeAnnotator, type NodeKeyPublication } from './node-key.js';
export { ANNOTATIONS, objectKey, type NodeObject, type ObjectMeta, type PodObject } from './objects.js';
export {
  DEFAULT_SPIFFE_ID_TEMPLATE,
  podToWorkload,
  spiffeIdTemplateProblem,
  type PodConversion,
  type PodResult,
} from './pod.js';
export {
  CONDITION_VALID,
  KubernetesPolicySource,
  type PolicyConverter,
  type PolicyObject,
  type PolicyReporter,
} from './policy-source.js';
export {
  MUTUAL_AUTH_POLICY,
  PolicyObjectError,
  combinePolicyObjects,
  policyFromObject,
  spireShorthandId,
  validCondition,
  type CombinedPolicies,
  type CompiledPolicyObject,
  type MutualAuthPolicyMode,
  type MutualAuthPolicyObject,
  type MutualAuthPolicyPeer,
  type MutualAuthPolicyRuleSpec,
  type PolicyCondition as PolicyObjectCondition,
  type PolicyObjectOptions,
  type ShorthandIdFn,
} from './policy-object.js';
export { mutualAuthPolicyConverter } from './policy-converter.js';
