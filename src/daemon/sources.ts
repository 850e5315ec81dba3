import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { DaemonConfig } from '../config/index.js';
import {
  assertNodeListed,
  loadInventoryFile,
  watchInventoryFile,
  type Inventory,
} from '../inventory/index.js';
import {
  KubernetesClient,
  KubernetesInventorySource,
  KubernetesMetrics,
  KubernetesPolicySource,
  loadKubeConfig,
  MUTUAL_AUTH_POLICY,
  mutualAuthPolicyConverter,
  publishNodeKey,
  type NodeKeyPublication,
  type PolicyConverter,
  type PolicyResource,
  type WatchStatus,
} from '../kubernetes/index.js';
import { FileReloadMetrics } from '../metrics/index.js';
import { loadPolicyFile, watchPolicyFile, type Policy } from '../policy/index.js';

/**
 * Where inventory and policy come from, behind one shape for the daemon: the current values, a
 * change signal, readiness and status. File sources read the files at start and re-read them when
 * they change (a bad new file is logged and the last good content stays); Kubernetes sources watch
 * the API server through informers.
 */
export interface DaemonSources {
  /** Stable object; its content is replaced in place (listen with inventory.onChange). */
  inventory: Inventory;
  policy: { current: Policy };
  /**
   * Called after policy.current changed; `cb` throws when acting on the change failed (a followed
   * policy file then reports the reload as taken but failed). Returns the unsubscribe function.
   */
  onPolicyChange(cb: () => void): () => void;
  /**
   * The daemon acted on the current inventory and policy (its maps match them): a followed file
   * whose content was taken but not acted on stops failing (meshauth_file_reload_failing 0).
   */
  acted(): void;
  /**
   * Whether addresses inside pod CIDRs without a workload entry fail closed (IDENTITY_UNRESOLVED):
   * true with the Kubernetes inventory, where pods appear all the time.
   */
  unresolvedPodCidrs: boolean;
  /** Publishes this node's WireGuard key on its Node object (Kubernetes inventory only). */
  publishWireguardKey(publicKey: string, port: number): void;
  /** Reason the sources are not ready, or undefined. */
  notReady(): string | undefined;
  /** Numbers for the status API. */
  status(): Record<string, number>;
  /** Registers the sources' metrics (datapath full syncs read through `fullSyncs`). */
  registerMetrics(registry: Registry, fullSyncs: () => number): void;
  close(): Promise<void>;
}

export interface OpenSourcesOptions {
  /** Converts MutualAuthPolicy objects (policy.source kubernetes). Default: mutualAuthPolicyConverter. */
  policyConverter?: PolicyConverter;
  policyResource?: PolicyResource;
  /** How long start-up waits for the first full list. Default 60 s. */
  syncTimeoutMs?: number;
}

export async function openSources(
  config: DaemonConfig,
  logger: Logger,
  opts: OpenSourcesOptions = {},
): Promise<DaemonSources> {
  const log = logger.child({ component: 'kubernetes' });
  const closers: Array<() => void | Promise<void>> = [];
  const policyListeners = new Set<() => void>();
  /** Runs every policy listener; throws (after all ran) when one failed to act on the change. */
  const notifyPolicyListeners = (): void => {
    const errors: unknown[] = [];
    for (const l of [...policyListeners]) {
      try {
        l();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) {
      const text = errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ');
      throw new AggregateError(errors, `${errors.length} policy listeners failed: ${text}`);
    }
  };
  /** Followed files, told when the daemon acted on the content in use (a resync succeeded). */
  const followers: Array<{ acted(): void }> = [];
  let inventory: Inventory;
  let policy: { current: Policy };
  let client: KubernetesClient | undefined;
  let invSource: KubernetesInventorySource | undefined;
  let polSource: KubernetesPolicySource | undefined;
  // Created up front so start-up counts (objects skipped in the first list) are not lost.
  const ownRegistry = new Registry();
  let fullSyncs: () => number = () => 0;
  const watches = (): WatchStatus[] => [
    ...(invSource?.status() ?? []),
    ...(polSource ? [polSource.status()] : []),
  ];
  const metrics = new KubernetesMetrics(ownRegistry, { watches, fullSyncs: () => fullSyncs() });
  const fileMetrics = new FileReloadMetrics(ownRegistry);
  let publication: NodeKeyPublication | undefined;

  try {
    if (config.inventory.source === 'kubernetes' || config.policy.source === 'kubernetes') {
      client = new KubernetesClient(
        loadKubeConfig(config.kubernetes.kubeconfig),
        opts.policyResource ?? {
          group: MUTUAL_AUTH_POLICY.group,
          version: MUTUAL_AUTH_POLICY.version,
          plural: MUTUAL_AUTH_POLICY.plural,
        },
      );
      await client.checkAccess(config.node);
      log.info({ event: 'kubernetes_connected', server: client.server }, 'Kubernetes API reachable');
    }
    const withTimeout = async <T>(p: Promise<T>, what: string): Promise<T> => {
      const ms = opts.syncTimeoutMs ?? 60_000;
      let t: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([
          p,
          new Promise<never>((_, rej) => {
            t = setTimeout(() => rej(new Error(`kubernetes: ${what} not listed after ${ms} ms`)), ms);
          }),
        ]);
      } finally {
        clearTimeout(t);
      }
    };

    if (config.inventory.source === 'kubernetes' && client) {
      const src = new KubernetesInventorySource({
        pods: client.podInformer(),
        nodes: client.nodeInformer(),
        conversion: {
          trustDomain: config.kubernetes.trustDomain,
          spiffeIdTemplate: config.kubernetes.spiffeIdTemplate,
          addressType: config.kubernetes.nodeAddressType,
        },
        logger: log,
        observer: {
          skipped: (kind, reason) => metrics.skipped.inc({ kind, reason }),
          applied: (_events, ms) => metrics.applyDuration.observe(ms / 1000),
        },
      });
      invSource = src;
      closers.push(() => src.close());
      inventory = await withTimeout(src.start(), 'pods and nodes');
      assertNodeListed(inventory, config.node, `Node objects of ${client.server}`);
    } else {
      inventory = loadInventoryFile(config.inventory.file as string);
      assertNodeListed(inventory, config.node, config.file ?? '(flags)');
      // A reloaded file is checked as above (this node listed) before it replaces the inventory.
      const watcher = watchInventoryFile(inventory, config.inventory.file as string, {
        log: logger,
        node: config.node,
        configFile: config.file ?? '(flags)',
        observe: fileMetrics.follow('inventory'),
      });
      followers.push(watcher);
      closers.push(() => watcher.close());
    }

    if (config.policy.source === 'kubernetes' && client) {
      const src = new KubernetesPolicySource({
        informer: client.policyInformer(),
        convert:
          opts.policyConverter ??
          mutualAuthPolicyConverter(config.kubernetes.trustDomain, config.kubernetes.spiffeIdTemplate),
        ...(config.kubernetes.reportPolicyStatus
          ? { reporter: client.policyReporter('meshauth.io/meshauthd', config.node) }
          : {}),
        logger: log,
        observer: { invalid: () => metrics.invalidPolicies.inc() },
      });
      polSource = src;
      closers.push(() => src.close());
      policy = { current: await withTimeout(src.start(), 'mutualauthpolicies') };
      const p = policy;
      closers.push(
        src.onChange((next) => {
          p.current = next;
          log.info({ event: 'policy_changed', rules: next.rules.length }, 'policy changed');
          try {
            notifyPolicyListeners();
          } catch {
            // A listener that failed to act on the change reported it (the daemon's resync logs
            // state_resync_failed); the next change or resync tries again.
          }
        }),
      );
    } else {
      const file = config.policy.file as string;
      policy = { current: loadPolicyFile(file) };
      // Same path as a Kubernetes policy change: the daemon recompiles its maps on the listeners.
      const watcher = watchPolicyFile(policy, file, {
        log: logger,
        onChange: notifyPolicyListeners,
        observe: fileMetrics.follow('policy'),
      });
      followers.push(watcher);
      closers.push(() => watcher.close());
    }
  } catch (err) {
    for (const c of closers.reverse()) await c();
    throw err;
  }

  return {
    inventory,
    policy,
    onPolicyChange(cb) {
      policyListeners.add(cb);
      return () => policyListeners.delete(cb);
    },
    acted() {
      for (const f of followers) f.acted();
    },
    unresolvedPodCidrs: config.inventory.source === 'kubernetes',
    publishWireguardKey(publicKey, port) {
      if (!client || config.inventory.source !== 'kubernetes' || !config.kubernetes.publishWireguardKey)
        return;
      publication?.close();
      publication = publishNodeKey({
        api: client,
        nodeName: config.node,
        publicKey,
        wireguardPort: port,
        logger: log,
      });
    },
    notReady() {
      const w = watches().find((x) => x.lastSyncAtMs === 0);
      return w ? `kubernetes: ${w.resource} not listed yet` : undefined;
    },
    status() {
      const out: Record<string, number> = {};
      for (const w of watches()) {
        out[`kubernetes_${w.resource}_synced`] = w.state === 'synced' ? 1 : 0;
        out[`kubernetes_${w.resource}_last_sync_ms`] = w.lastSyncAtMs;
        out[`kubernetes_${w.resource}_errors`] = w.errors;
      }
      if (invSource) out.kubernetes_excluded_objects = invSource.exclusions().size;
      return out;
    },
    registerMetrics(registry, datapathFullSyncs) {
      fullSyncs = datapathFullSyncs;
      // Kubernetes metrics only with a Kubernetes source; file reload metrics only with a followed file.
      const names = new Set(client ? [] : ['meshauth_datapath_full_syncs_total']);
      if (config.inventory.source !== 'kubernetes' || config.policy.source !== 'kubernetes')
        names.add('meshauth_file_reload_total').add('meshauth_file_reload_failing');
      for (const { name } of ownRegistry.getMetricsAsArray()) {
        const m = ownRegistry.getSingleMetric(name);
        const fileMetric = name.startsWith('meshauth_file_reload_');
        if (m && (fileMetric ? names.has(name) : client || names.has(name))) registry.registerMetric(m);
      }
    },
    async close() {
      publication?.close();
      for (const c of closers.reverse()) await c();
    },
  };
}
