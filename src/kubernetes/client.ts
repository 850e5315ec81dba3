/**
 * The real Kubernetes side: a KubeConfig (a kubeconfig file, or the in-cluster service account),
 * informers from @kubernetes/client-node's makeInformer (list + watch, re-list on 410 Gone), and the
 * few writes meshauthd makes: its own Node's annotations, MutualAuthPolicy status conditions and
 * Events. Everything above this file depends only on the interfaces in informer.ts and
 * policy-source.ts.
 */
import { existsSync } from 'node:fs';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  makeInformer,
  setHeaderOptions,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { fileErrorReason, MeshauthError } from '../errors.js';
import { EventRecorder } from './events.js';
import type { ResourceInformer } from './informer.js';
import type { NodeObject, PodObject } from './objects.js';
import type { PolicyCondition } from './policy-object.js';
import type { PolicyObject, PolicyReporter } from './policy-source.js';

/** Kubernetes access failed in a way that stops start-up (bad kubeconfig, rejected credentials). */
export class KubernetesAccessError extends MeshauthError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MESHAUTH_ERR_KUBERNETES_ACCESS', message, options);
  }
}

/** Where the MutualAuthPolicy custom resource lives. */
export interface PolicyResource {
  group: string;
  version: string;
  plural: string;
}

export const IN_CLUSTER_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * Loads the kubeconfig file, or the in-cluster service account when `kubeconfig` is undefined.
 * Throws KubernetesAccessError with what is missing.
 */
export function loadKubeConfig(kubeconfig: string | undefined, env = process.env): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfig !== undefined) {
    if (!existsSync(kubeconfig))
      throw new KubernetesAccessError(`kubernetes: kubeconfig ${kubeconfig} does not exist`);
    try {
      kc.loadFromFile(kubeconfig);
    } catch (err) {
      throw new KubernetesAccessError(
        `kubernetes: cannot read kubeconfig ${kubeconfig}: ${fileErrorReason(err)}`,
        {
          cause: err,
        },
      );
    }
    if (!kc.getCurrentCluster())
      throw new KubernetesAccessError(
        `kubernetes: kubeconfig ${kubeconfig} has no current context with a cluster`,
      );
    return kc;
  }
  if (!env.KUBERNETES_SERVICE_HOST || !env.KUBERNETES_SERVICE_PORT || !existsSync(IN_CLUSTER_TOKEN)) {
    throw new KubernetesAccessError(
      'kubernetes: not running in a pod (no KUBERNETES_SERVICE_HOST/PORT or service-account token at ' +
        `${IN_CLUSTER_TOKEN}); set kubernetes.kubeconfig`,
    );
  }
  kc.loadFromCluster();
  return kc;
}

function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  return typeof e?.code === 'number' ? e.code : typeof e?.statusCode === 'number' ? e.statusCode : undefined;
}

/** A wrapper around one KubeConfig with the calls meshauthd needs. */
export class KubernetesClient {
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;

  constructor(
    readonly kc: KubeConfig,
    readonly policyResource: PolicyResource,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  /** The API server's URL, for messages. */
  get server(): string {
    return this.kc.getCurrentCluster()?.server ?? '(none)';
  }

  /**
   * Checks that the credentials are accepted and may list what the inventory needs (a list of
   * Nodes restricted to this node: the ClusterRole grants list and watch, not get), and that
   * this node exists. Throws KubernetesAccessError on 401/403, for an unknown node, or when the
   * server cannot be reached.
   */
  async checkAccess(nodeName: string): Promise<void> {
    try {
      await this.ownNode(nodeName);
    } catch (err) {
      const code = statusOf(err);
      const what =
        code === 401
          ? 'credentials rejected (401 Unauthorized): check the kubeconfig or service-account token'
          : code === 403
            ? `not allowed to read Node ${nodeName} (403 Forbidden): check the ClusterRole binding`
            : code === 404
              ? `Node ${nodeName} does not exist (node name: --node / node)`
              : (err as Error).message;
      throw new KubernetesAccessError(`kubernetes: ${this.server}: ${what}`, { cause: err });
    }
  }

  /** Pods of all namespaces (optionally only those matching `fieldSelector`). */
  podInformer(fieldSelector?: string): ResourceInformer<PodObject> {
    const inf = makeInformer(this.kc, '/api/v1/pods', () =>
      this.core.listPodForAllNamespaces(fieldSelector ? { fieldSelector } : {}),
    );
    return inf as unknown as ResourceInformer<PodObject>;
  }

  nodeInformer(): ResourceInformer<NodeObject> {
    return makeInformer(this.kc, '/api/v1/nodes', () =>
      this.core.listNode(),
    ) as unknown as ResourceInformer<NodeObject>;
  }

  policyInformer(): ResourceInformer<PolicyObject> {
    const { group, version, plural } = this.policyResource;
    const inf = makeInformer<KubernetesObject>(this.kc, `/apis/${group}/${version}/${plural}`, () =>
      this.custom.listClusterCustomObject({ group, version, plural }),
    );
    return inf as unknown as ResourceInformer<PolicyObject>;
  }

  /** Merge-patches annotations of one Node (null removes one). */
  async annotateNode(name: string, annotations: Record<string, string | null>): Promise<void> {
    await this.core.patchNode(
      { name, body: { metadata: { annotations } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  /** This node's Node object, through a list with a field selector (throws a 404-coded error). */
  private async ownNode(name: string): Promise<NodeObject> {
    const list = await this.core.listNode({ fieldSelector: `metadata.name=${name}` });
    const n = list.items[0];
    if (!n) throw Object.assign(new Error(`Node ${name} not found`), { code: 404 });
    return n;
  }

  /** Reads this node's annotations. */
  async nodeAnnotations(name: string): Promise<Record<string, string>> {
    return (await this.ownNode(name)).metadata?.annotations ?? {};
  }

  /**
   * Status conditions and Events of MutualAuthPolicy objects. Events name `component` and the node
   * as their reporter, and identical ones are aggregated (count, lastTimestamp) by an
   * EventRecorder (events.ts).
   */
  policyReporter(component: string, nodeName: string): PolicyReporter {
    const { group, version, plural } = this.policyResource;
    const recorder = new EventRecorder({
      component,
      instance: nodeName,
      api: {
        create: async (namespace, body) =>
          (await this.core.createNamespacedEvent({ namespace, body })).metadata?.name ?? '',
        patch: async (namespace, name, body) => {
          await this.core.patchNamespacedEvent(
            { name, namespace, body },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          );
        },
      },
    });
    return {
      setCondition: async (obj: PolicyObject, c: PolicyCondition) => {
        const others = (obj.status?.conditions ?? []).filter((x) => x.type !== c.type);
        const body = {
          status: {
            conditions: [...others, c],
            ...(c.observedGeneration !== undefined ? { observedGeneration: c.observedGeneration } : {}),
          },
        };
        const opts = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
        const name = obj.metadata?.name ?? '';
        const namespace = obj.metadata?.namespace;
        if (namespace)
          await this.custom.patchNamespacedCustomObjectStatus(
            { group, version, plural, namespace, name, body },
            opts,
          );
        else await this.custom.patchClusterCustomObjectStatus({ group, version, plural, name, body }, opts);
      },
      event: (obj, type, reason, message) =>
        recorder.record(
          {
            apiVersion: `${group}/${version}`,
            kind: 'MutualAuthPolicy',
            name: obj.metadata?.name ?? '',
            ...(obj.metadata?.namespace ? { namespace: obj.metadata.namespace } : {}),
            ...(obj.metadata?.uid ? { uid: obj.metadata.uid } : {}),
          },
          type,
          reason,
          'Validate',
          message,
        ),
    };
  }
}
