/**
 * The Helm chart (deploy/helm/meshauth) checked with the pinned helm: `helm lint`, `helm template`
 * over a matrix of values, values.schema.json rejecting bad values with a message naming the value,
 * and the rendered daemon configuration accepted by meshauthd's own loader.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DURATION_LIMITS, loadConfig } from '../../../src/config/index.js';
import {
  CHART_CAPABILITIES,
  CHART_DIR,
  helmBinary,
  only,
  renderChart,
  runHelm,
  withValuesFile,
  type K8sObject,
} from '../../helpers/helm.js';
import { DEV_CA_CERT, DEV_CA_KEY, HELM_VALUE_CASES } from './value-cases.js';

const helm = helmBinary();
const VALUE_CASES = HELM_VALUE_CASES;
/** relay values an operator enables the relay with; cases change one of them. */
const RELAY_OK = {
  enabled: true,
  tls: { secretName: 'meshauth-relay-svid' },
  allowedIds: ['spiffe://cluster.local/ops/admin'],
  nodes: ['node-a=10.0.0.1:4251=spiffe://cluster.local/meshauth/node/node-a'],
};

type Container = {
  name: string;
  env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>;
  securityContext: {
    privileged: boolean;
    capabilities: { drop: string[]; add: string[] };
    readOnlyRootFilesystem: boolean;
  };
  volumeMounts: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  readinessProbe?: { httpGet: { path: string } };
  livenessProbe?: { httpGet: { path: string } };
};
type PodSpec = {
  hostNetwork: boolean;
  priorityClassName: string;
  tolerations: unknown[];
  containers: Container[];
  volumes: Array<{ name: string; hostPath?: { path: string }; secret?: { secretName: string } }>;
};

const podSpec = (objs: K8sObject[]): PodSpec =>
  (only(objs, 'DaemonSet').spec as { template: { spec: PodSpec } }).template.spec;
const container = (objs: K8sObject[]): Container => podSpec(objs).containers[0] as Container;
const configText = (objs: K8sObject[]): string =>
  (only(objs, 'ConfigMap').data as Record<string, string>)['config.yaml'] as string;

/** The container's environment as the kubelet would give it on node `node-a` with IP `hostIP`. */
function containerEnv(c: Container, hostIP = '10.1.2.3'): Record<string, string> {
  const field: Record<string, string> = { 'spec.nodeName': 'node-a', 'status.hostIP': hostIP };
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const path = e.valueFrom?.fieldRef?.fieldPath;
    if (path !== undefined) {
      expect(field[path], `fieldRef ${path}`).toBeDefined();
      env[e.name] = field[path] as string;
    } else {
      // $(VAR) refers to an earlier variable of the same container (Kubernetes expansion)
      env[e.name] = (e.value ?? '').replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v: string) => env[v] ?? m);
    }
  }
  return env;
}

/** Loads the rendered ConfigMap's config.yaml with meshauthd's loader and the container's env. */
function loadRendered(objs: K8sObject[], hostIP?: string): ReturnType<typeof loadConfig> {
  const dir = mkdtempSync(join(tmpdir(), 'meshauth-chart-config-'));
  try {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, configText(objs));
    return loadConfig({ file, env: containerEnv(container(objs), hostIP) });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe.skipIf(!helm)('Helm chart deploy/helm/meshauth', () => {
  const bin = helm as string;

  it('passes helm lint --strict with the defaults and with every case of the matrix', async () => {
    for (const [name, values] of Object.entries(VALUE_CASES)) {
      const r = await withValuesFile(values, (file) =>
        runHelm(bin, ['lint', '--strict', CHART_DIR, '-f', file]),
      );
      expect(r.code, `${name}: ${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  it.each(Object.keys(VALUE_CASES))(
    '%s: renders a DaemonSet with capabilities instead of privileged, and a config meshauthd loads',
    async (name) => {
      const values = VALUE_CASES[name] as Record<string, unknown>;
      const objs = await renderChart(bin, values);
      const kinds = objs.map((o) => o.kind).sort();
      expect(kinds).toEqual(
        expect.arrayContaining([
          'ClusterRole',
          'ClusterRoleBinding',
          'ConfigMap',
          'CustomResourceDefinition',
          'DaemonSet',
          'ServiceAccount',
        ]),
      );
      const pod = podSpec(objs);
      expect(pod.hostNetwork).toBe(true);
      expect(pod.priorityClassName).toBe('system-node-critical');
      expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
      const c = container(objs);
      expect(c.securityContext.privileged).toBe(false);
      expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
      expect(c.securityContext.capabilities.drop).toEqual(['ALL']);
      expect(c.readinessProbe?.httpGet.path).toBe('/readyz');
      expect(c.livenessProbe?.httpGet.path).toBe('/healthz');
      const mounts = Object.fromEntries(c.volumeMounts.map((m) => [m.mountPath, m.name]));
      expect(mounts['/sys/fs/bpf']).toBe('bpffs');
      expect(mounts['/var/lib/meshauth']).toBe('state');
      expect(mounts['/run/meshauth']).toBe('run');

      const config = loadRendered(objs);
      expect(config.node).toBe('node-a');
      expect(config.bpf.pinDir).toBe('/sys/fs/bpf/meshauth');
      expect(config.metrics.listen).toEqual({ host: '0.0.0.0', port: 9464 });
      const caps = c.securityContext.capabilities.add;
      const sockops = config.datapath.attach.some((a) => a.type === 'sockops');
      expect(caps).toEqual([
        ...CHART_CAPABILITIES.base,
        ...(sockops ? CHART_CAPABILITIES.sockops : []),
        ...(config.datapath.synReplay ? CHART_CAPABILITIES.synReplay : []),
      ]);
      // the cgroup v2 hierarchy is mounted exactly when a cgroup or sock_ops attach point uses it
      const cgroupPaths = config.datapath.attach.flatMap((a) => (a.type === 'tc' ? [] : [a.path]));
      for (const p of cgroupPaths) expect(p.startsWith('/host/sys/fs/cgroup')).toBe(true);
      expect(mounts['/host/sys/fs/cgroup'] === 'cgroup').toBe(cgroupPaths.length > 0);
    },
  );

  it('renders each case into the daemon settings it names', async () => {
    const cfg = async (name: string) => loadRendered(await renderChart(bin, VALUE_CASES[name]));

    const defaults = await cfg('defaults');
    expect(defaults.identity.source).toBe('spire-delegated');
    expect(defaults.identity.spire.adminSocket).toBe('/run/spire/admin/admin.sock');
    expect(defaults.datapath.attach).toEqual([
      { type: 'cgroup', path: '/host/sys/fs/cgroup', hook: 'egress', semantics: 'egress' },
      { type: 'cgroup', path: '/host/sys/fs/cgroup', hook: 'ingress', semantics: 'ingress' },
      { type: 'sockops', path: '/host/sys/fs/cgroup' },
    ]);
    expect(defaults.wireguard.enabled).toBe(false);
    expect(defaults.datapath.strictWireguard).toBe(false);

    expect((await cfg('cgroup attach')).datapath.attach[0]).toMatchObject({
      type: 'cgroup',
      path: '/host/sys/fs/cgroup/kubepods.slice',
    });
    expect((await cfg('tc attach')).datapath.attach).toEqual([
      { type: 'tc', interface: 'ens5', hook: 'egress', semantics: 'egress' },
      { type: 'tc', interface: 'ens5', hook: 'ingress', semantics: 'ingress' },
    ]);

    const strict = await cfg('wireguard strict');
    expect(strict.wireguard).toMatchObject({ enabled: true, address: '10.1.2.3/32', listenPort: 51820 });
    expect(strict.datapath.strictWireguard).toBe(true);
    const strictObjs = await renderChart(bin, VALUE_CASES['wireguard strict']);
    // The default address on an IPv6-only node: its IP as a /128, which meshauthd accepts.
    expect(loadRendered(strictObjs, 'fd00:10::3').wireguard.address).toBe('fd00:10::3/128');
    const strictMounts = container(strictObjs).volumeMounts.map((m) => m.mountPath);
    expect(strictMounts).toEqual(expect.arrayContaining(['/dev/net/tun', '/var/run/wireguard']));

    const spireObjs = await renderChart(bin, VALUE_CASES['spire delegated']);
    expect(podSpec(spireObjs).volumes.find((v) => v.name === 'spire-admin')?.hostPath?.path).toBe(
      '/run/spire/agent-sockets-admin',
    );
    expect(only(spireObjs, 'ServiceMonitor').metadata.labels?.['release']).toBe('prometheus');
    only(spireObjs, 'Service', 'meshauth-metrics');

    const devObjs = await renderChart(bin, VALUE_CASES['dev CA']);
    const secret = only(devObjs, 'Secret');
    const data = secret.data as Record<string, string>;
    expect(Buffer.from(data['ca.crt'] as string, 'base64').toString()).toBe(DEV_CA_CERT);
    const dev = loadRendered(devObjs);
    expect(dev.identity.source).toBe('dev-ca');
    expect(dev.identity.devCa).toMatchObject({
      trustDomain: 'example.org',
      caCert: '/etc/meshauth/dev-ca/ca.crt',
      caKey: '/etc/meshauth/dev-ca/ca.key',
    });
    expect(podSpec(devObjs).volumes.find((v) => v.name === 'dev-ca')?.secret?.secretName).toBe(
      secret.metadata.name,
    );

    // the daemon's defaults come through the chart unchanged
    expect(defaults.datapath.maps).toEqual({
      auth: 65536,
      ipcache: 65536,
      policy: 16384,
      throttle: 65536,
      signalRingBytes: 1048576,
    });
    expect(defaults.auth.mode).toBe('per-pair');
    expect(defaults.audit).toMatchObject({
      witnesses: [],
      headIntervalMs: 60_000,
      witnessMaxSkewMs: 300_000,
      otlpEndpoint: undefined,
    });
    expect(defaults.api.tcp).toBeUndefined();
    expect(defaults.api.socketMode).toBe(0o600);

    // every setting of the cluster-audit case reaches the daemon as set
    const full = await cfg('cluster audit');
    expect(full.datapath.maps).toEqual({
      auth: 131072,
      ipcache: 32768,
      policy: 4096,
      throttle: 8192,
      signalRingBytes: 1048576,
    });
    expect(full.datapath.synRtoMs).toBe(20);
    expect(full.datapath.synReplay).toBe(false);
    expect(defaults.datapath.synReplay).toBe(true);
    expect(full.handshake).toMatchObject({ maxConnections: 512, perPeerRate: 20, perPeerBurst: 40 });
    expect(full.auth).toMatchObject({
      mode: 'channel',
      channel: { port: 4260, nodeId: 'spiffe://example.org/meshauth/nodes/{node}', maxChannels: 64 },
      maxConcurrent: 32,
      queueSize: 8192,
      retryBaseMs: 100,
      retryMaxMs: 60_000,
      gcIntervalMs: 10_000,
    });
    expect(full.audit).toMatchObject({
      witnesses: [
        { host: 'meshauth-relay.meshauth.svc', port: 4252 },
        { host: '10.0.0.2', port: 4251 },
      ],
      headIntervalMs: 30_000,
      witnessMaxSkewMs: 120_000,
      otlpEndpoint: 'http://otel-collector.observability:4318/v1/logs',
      otlpBatchSize: 256,
      otlpTimeoutMs: 5_000,
    });
    expect(full.api.socketMode).toBe(0o660);
    expect(full.api.tcp).toEqual({
      listen: { host: '0.0.0.0', port: 4251 },
      identity: 'spiffe://example.org/ns/meshauth/sa/meshauth',
      allowedIds: ['spiffe://example.org/meshauth/relay', 'spiffe://example.org/ns/meshauth/sa/meshauth'],
    });
    const fullPorts = (
      container(await renderChart(bin, VALUE_CASES['cluster audit'])) as unknown as {
        ports: { name: string; containerPort: number }[];
      }
    ).ports;
    expect(fullPorts).toContainEqual(expect.objectContaining({ name: 'api-tcp', containerPort: 4251 }));
  });

  it('changes the pod template when the configuration changes (rolling update)', async () => {
    const hash = (objs: K8sObject[]): string =>
      (only(objs, 'DaemonSet').spec as { template: { metadata: { annotations: Record<string, string> } } })
        .template.metadata.annotations['meshauth.io/config-hash'] as string;
    const a = hash(await renderChart(bin, {}));
    const b = hash(await renderChart(bin, { log: { level: 'debug' } }));
    expect(a).toMatch(/^[0-9a-f]{16}$/);
    expect(b).not.toBe(a);
    const ds = only(await renderChart(bin, {}), 'DaemonSet');
    expect((ds.spec as { updateStrategy: unknown }).updateStrategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 1 },
    });
  });

  it.each([
    ['a wrong type', { handshake: { port: 'fast' } }, /'\/handshake\/port': got string, want integer/],
    [
      'an unknown attach mode',
      { datapath: { attach: 'xdp' } },
      /'\/datapath\/attach': value must be one of 'cgroup', 'tc'/,
    ],
    ['a missing trust domain', { trustDomain: null }, /missing property 'trustDomain'/],
    ['an empty trust domain', { trustDomain: '' }, /'\/trustDomain'/],
    ['an unknown value', { datapath: { atach: 'tc' } }, /atach/],
    [
      'a dev-ca certificate without its key',
      { identity: { source: 'dev-ca', devCa: { caCert: DEV_CA_CERT } } },
      /'\/identity\/devCa\/caKey': minLength/,
    ],
    [
      'a relay node with a port above 65535',
      { relay: { ...RELAY_OK, nodes: ['node-a=10.0.0.1:99999'] } },
      /'\/relay\/nodes\/0': 'node-a=10.0.0.1:99999' does not match/,
    ],
    [
      'a relay client ID that is not a SPIFFE ID',
      { relay: { ...RELAY_OK, allowedIds: ['spiffe://'] } },
      /'\/relay\/allowedIds\/0': 'spiffe:\/\/' does not match/,
    ],
    ['two relay replicas', { relay: { ...RELAY_OK, replicas: 2 } }, /'\/relay\/replicas': maximum/],
    [
      'an unknown auth mode',
      { auth: { mode: 'mesh' } },
      /'\/auth\/mode': value must be one of 'per-pair', 'channel'/,
    ],
    [
      'a signal ring that is not a power of two',
      { datapath: { maps: { signalRingBytes: 100000 } } },
      /'\/datapath\/maps\/signalRingBytes'/,
    ],
    ['a map below 16 entries', { datapath: { maps: { auth: 8 } } }, /'\/datapath\/maps\/auth': minimum/],
    ['a witness without a port', { audit: { witnesses: ['relay.svc'] } }, /'\/audit\/witnesses\/0'/],
    [
      'an OTLP endpoint of another scheme',
      { audit: { otlpEndpoint: 'grpc://collector:4317' } },
      /'\/audit\/otlpEndpoint'/,
    ],
    ['a socket mode that is not octal', { api: { socketMode: '600x' } }, /'\/api\/socketMode'/],
    [
      'a TCP API client ID that is not a SPIFFE ID',
      { api: { tcp: { enabled: true, allowedIds: ['relay'] } } },
      /'\/api\/tcp\/allowedIds\/0'/,
    ],
    [
      'a per-peer handshake rate of 0 (the daemon needs more than 0)',
      { handshake: { perPeerRate: 0 } },
      /'\/handshake\/perPeerRate': exclusiveMinimum/,
    ],
    [
      'extraConfig that is not a mapping',
      { extraConfig: ['node: x'] },
      /'\/extraConfig': got array, want object/,
    ],
    [
      'a relay node submitter ID that is not a SPIFFE ID',
      { relay: { ...RELAY_OK, witnessAllowedIds: ['node-a'] } },
      /'\/relay\/witnessAllowedIds\/0'/,
    ],
  ])('rejects %s at template time with a message naming the value', async (_what, values, naming) => {
    const r = await withValuesFile(values, (file) =>
      runHelm(bin, ['template', 'meshauth', CHART_DIR, '-f', file]),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/values don't meet the specifications of the schema/);
    expect(r.stderr).toMatch(naming);
  });

  it.each([
    [
      'no Secret',
      { ...RELAY_OK, tls: { secretName: '' } },
      /relay\.tls\.secretName: the relay needs a Secret/,
    ],
    ['no client IDs', { ...RELAY_OK, allowedIds: [] }, /relay\.allowedIds: list at least one/],
    [
      'one ID on both allow-lists',
      { ...RELAY_OK, witnessAllowedIds: RELAY_OK.allowedIds },
      /relay\.allowedIds and relay\.witnessAllowedIds both list spiffe:\/\/cluster\.local\/ops\/admin/,
    ],
  ])('refuses an enabled relay with %s, naming the value', async (_what, relay, naming) => {
    const r = await withValuesFile({ relay }, (file) =>
      runHelm(bin, ['template', 'meshauth', CHART_DIR, '-f', file]),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(naming);
  });

  it.each([
    [
      'witnesses without the TCP API',
      { audit: { witnesses: ['10.0.0.2:4251'] } },
      /audit\.witnesses: needs api\.tcp\.enabled and api\.tcp\.identity/,
    ],
    [
      'witnesses without the signing identity',
      {
        audit: { witnesses: ['10.0.0.2:4251'] },
        api: { tcp: { enabled: true, allowedIds: ['spiffe://example.org/meshauth/relay'] } },
      },
      /audit\.witnesses: needs api\.tcp\.enabled and api\.tcp\.identity/,
    ],
    [
      'a TCP API without clients',
      { api: { tcp: { enabled: true } } },
      /api\.tcp\.allowedIds: list at least one/,
    ],
    // the schema's own message would not name strict (helm prints the failed rule's path only)
    ['strict without WireGuard', { strict: true }, /strict: true needs wireguard\.enabled: true/],
    // each node would make a CA of its own and no node could authenticate another
    [
      'dev-ca without the shared CA',
      { identity: { source: 'dev-ca' } },
      /identity\.devCa\.existingSecret: identity\.source dev-ca needs the development CA every node shares/,
    ],
    [
      'the TCP API and the node channel on one port',
      {
        auth: { mode: 'channel', channel: { port: 4251 } },
        api: { tcp: { enabled: true, allowedIds: ['spiffe://example.org/meshauth/relay'] } },
      },
      /auth\.channel\.port and api\.tcp\.port are both 4251: each listener of meshauthd \(on the host network\) needs a port of its own/,
    ],
    // every two TCP listeners on the host network: meshauthd refuses them at config validation
    [
      'the node channel on the handshake port',
      { auth: { mode: 'channel', channel: { port: 4250 } } },
      /handshake\.port and auth\.channel\.port are both 4250: each listener/,
    ],
    [
      'metrics on the handshake port',
      { metrics: { port: 4250 } },
      /handshake\.port and metrics\.port are both 4250: each listener/,
    ],
    [
      'metrics on the TCP API port',
      {
        metrics: { port: 4251 },
        api: { tcp: { enabled: true, allowedIds: ['spiffe://example.org/meshauth/relay'] } },
      },
      /api\.tcp\.port and metrics\.port are both 4251: each listener/,
    ],
    [
      'a WireGuard address that is a subnet',
      { wireguard: { enabled: true, address: '10.99.0.1/24' } },
      /wireguard\.address: must be this node's tunnel address as \/32 \(IPv4\) or \/128 \(IPv6\), like 10\.99\.0\.1\/32 or fd00:99::1\/128 \(got "10\.99\.0\.1\/24": a \/24 is a subnet, not one address\)/,
    ],
    [
      'a WireGuard address with an octet above 255',
      { wireguard: { address: '10.99.0.300/32' } },
      /wireguard\.address: .*\(got "10\.99\.0\.300\/32": each part of an IPv4 address is 0 to 255\)/,
    ],
    [
      'a WireGuard IPv4 prefix longer than 32',
      { wireguard: { address: '10.99.0.1/33' } },
      /wireguard\.address: .*\(got "10\.99\.0\.1\/33": the prefix length of an IPv4 address is 0 to 32\)/,
    ],
    [
      'a WireGuard IPv6 prefix longer than 128',
      { wireguard: { address: 'fd00::1/129' } },
      /wireguard\.address: .*\(got "fd00::1\/129": the prefix length of an IPv6 address is 0 to 128\)/,
    ],
    [
      'a WireGuard address that is no address',
      { wireguard: { address: '10.99/32' } },
      /wireguard\.address: must be this node's tunnel address .*\(got "10\.99\/32"\)/,
    ],
    [
      'an API socket other users may connect to',
      { api: { socketMode: '0666' } },
      /api\.socketMode: must give other users no access \(last digit 0, like "0600" or "0660"\): any local user could then call the API \(got "0666"\)/,
    ],
    [
      'extraConfig setting what the chart sets (handshake.port)',
      { extraConfig: { handshake: { port: 4300 } } },
      /extraConfig\.handshake\.port: the chart sets handshake\.port itself, from its values or the pod's layout: set the chart value it comes from instead/,
    ],
    [
      'extraConfig replacing a section the chart sets (datapath.attach)',
      { extraConfig: { datapath: { attach: [{ type: 'tc', interface: 'eth1', hook: 'egress' }] } } },
      /extraConfig\.datapath\.attach: the chart sets datapath\.attach itself/,
    ],
    [
      'extraConfig replacing a mapping the chart sets by a scalar',
      { extraConfig: { metrics: 'off' } },
      /extraConfig\.metrics: the chart sets metrics itself/,
    ],
    // durations the schema's pattern lets through but meshauthd's loader refuses: each pod would
    // crash-loop on its config instead of the install failing
    [
      'a handshake timeout of 0s',
      { handshake: { timeout: '0s' } },
      /handshake\.timeout: must be at least 100ms \(got "0s"\)/,
    ],
    [
      'an entry lifetime under a second',
      { handshake: { maxEntryTtl: '500ms' } },
      /handshake\.maxEntryTtl: must be at least 1000ms \(got "500ms"\)/,
    ],
    [
      'a SYN RTO over a second',
      { datapath: { synRto: '2s' } },
      /datapath\.synRto: must be at most 1000ms \(got "2s"\)/,
    ],
    [
      'a handshake timeout of 50ms (every handshake would time out)',
      { handshake: { timeout: '50ms' } },
      /handshake\.timeout: must be at least 100ms \(got "50ms"\)/,
    ],
    [
      'a signal throttle of 0s',
      { datapath: { signalThrottle: '0s' } },
      /datapath\.signalThrottle: must be at least 10ms/,
    ],
    [
      'a retry ceiling below the retry base',
      { auth: { retryBase: '1m', retryMax: '30s' } },
      /auth\.retryMax: must be at least auth\.retryBase \(1m, got "30s"\)/,
    ],
    ['a GC interval of 0s', { auth: { gcInterval: '0s' } }, /auth\.gcInterval: must be at least 100ms/],
    [
      'an audit retention under a minute',
      { audit: { maxAge: '30s' } },
      /audit\.maxAge: must be at least 60000ms/,
    ],
    [
      'a head interval of 0s',
      { audit: { headInterval: '0s' } },
      /audit\.headInterval: must be at least 1000ms/,
    ],
    [
      'a witness skew over a day',
      { audit: { witnessMaxSkew: '2d' } },
      /audit\.witnessMaxSkew: must be at most 86400000ms \(got "2d"\)/,
    ],
    [
      'an OTLP timeout under 100ms',
      { audit: { otlpTimeout: '50ms' } },
      /audit\.otlpTimeout: must be at least 100ms/,
    ],
    // every duration has an upper bound (src/config/schema.ts DURATION_LIMITS)
    [
      'a handshake timeout of 100 days',
      { handshake: { timeout: '100d' } },
      /handshake\.timeout: must be at most 300000ms \(got "100d"\)/,
    ],
    [
      'an entry lifetime over a week',
      { handshake: { maxEntryTtl: '8d' } },
      /handshake\.maxEntryTtl: must be at most 604800000ms \(got "8d"\)/,
    ],
    [
      'a retry ceiling over an hour',
      { auth: { retryMax: '2h' } },
      /auth\.retryMax: must be at most 3600000ms \(got "2h"\)/,
    ],
    [
      'an audit retention over ten years',
      { audit: { maxAge: '3651d' } },
      /audit\.maxAge: must be at most 315360000000ms \(got "3651d"\)/,
    ],
    [
      'a signal throttle over a minute',
      { datapath: { signalThrottle: '2m' } },
      /datapath\.signalThrottle: must be at most 60000ms \(got "2m"\)/,
    ],
    [
      'a development SVID lifetime over a week',
      { identity: { source: 'dev-ca', devCa: { caCert: DEV_CA_CERT, caKey: DEV_CA_KEY, svidTtl: '8d' } } },
      /identity\.devCa\.svidTtl: must be at most 604800000ms \(got "8d"\)/,
    ],
    [
      'a development SVID lifetime under a minute',
      { identity: { source: 'dev-ca', devCa: { caCert: DEV_CA_CERT, caKey: DEV_CA_KEY, svidTtl: '30s' } } },
      /identity\.devCa\.svidTtl: must be at least 60000ms \(got "30s"\)/,
    ],
  ])('refuses %s at template time, naming the values', async (_what, values, naming) => {
    const r = await withValuesFile(values, (file) =>
      runHelm(bin, ['template', 'meshauth', CHART_DIR, '-f', file]),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(naming);
  });

  it('bounds every duration as meshauthd does (src/config/schema.ts DURATION_LIMITS)', async () => {
    const devCa = { source: 'dev-ca', devCa: { caCert: DEV_CA_CERT, caKey: DEV_CA_KEY } };
    for (const [path, { minMs, maxMs }] of Object.entries(DURATION_LIMITS)) {
      const valuesWith = (text: string): Record<string, unknown> => {
        const values: Record<string, unknown> = path.startsWith('identity.')
          ? { identity: structuredClone(devCa) }
          : {};
        let node = values;
        const parts = path.split('.');
        for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
        node[parts.at(-1) as string] = text;
        // a retry base at its maximum needs a retry ceiling at least as long
        if (path === 'auth.retryBase') (values['auth'] as Record<string, unknown>)['retryMax'] = '1h';
        return values;
      };
      const config = loadRendered(await renderChart(bin, valuesWith(`${maxMs}ms`)));
      expect(config, path).toBeDefined();
      for (const [ms, naming] of [
        [maxMs + 1, `${path}: must be at most ${maxMs}ms`],
        [minMs - 1, `${path}: must be at least ${minMs}ms`],
      ] as const) {
        const r = await withValuesFile(valuesWith(`${ms}ms`), (file) =>
          runHelm(bin, ['template', 'meshauth', CHART_DIR, '-f', file]),
        );
        expect(r.code, `${path} = ${ms}ms`).not.toBe(0);
        expect(r.stderr).toContain(`${naming} (got "${ms}ms")`);
      }
    }
  });

  it('renders ports that differ, a valid WireGuard address and extraConfig that adds settings, all loaded by meshauthd', async () => {
    const objs = await renderChart(bin, {
      wireguard: { enabled: true, address: '10.99.0.1/32' },
      // per-pair mode: the channel port is not listened on, so equal to nothing
      auth: { mode: 'per-pair', channel: { port: 4250 } },
      extraConfig: {
        bpf: { object: '/opt/meshauth/meshauth.bpf.o' },
        identity: {
          files: {
            bundle: '/etc/x/bundle.pem',
            svids: [{ spiffeId: 'spiffe://example.org/a', cert: '/etc/x/a.pem', key: '/etc/x/a.key' }],
          },
        },
      },
    });
    const config = loadRendered(objs);
    expect(config.wireguard.address).toBe('10.99.0.1/32');
    expect(config.bpf.object).toBe('/opt/meshauth/meshauth.bpf.o');
    expect(config.identity.files?.bundle).toBe('/etc/x/bundle.pem');
    const v6 = loadRendered(
      await renderChart(bin, { wireguard: { enabled: true, address: 'fd00:99::1/128' } }),
    );
    expect(v6.wireguard.address).toBe('fd00:99::1/128');
  });

  it('renders an enabled relay with its nodes and client IDs as flags', async () => {
    const docs = await renderChart(bin, {
      relay: {
        ...RELAY_OK,
        witnessAllowedIds: ['spiffe://cluster.local/meshauth/node/node-z'],
        witnessMaxSkewSeconds: 60,
      },
    });
    const dep = docs.find(
      (d) => d.kind === 'Deployment' && (d.metadata as { name: string }).name.endsWith('-relay'),
    ) as { spec: { template: { spec: { containers: { args: string[] }[] } } } } | undefined;
    expect(dep?.spec.template.spec.containers[0]!.args).toEqual(
      expect.arrayContaining([
        '--allow=spiffe://cluster.local/ops/admin',
        '--witness-allow=spiffe://cluster.local/meshauth/node/node-z',
        '--witness-max-skew=60',
        '--node=node-a=10.0.0.1:4251=spiffe://cluster.local/meshauth/node/node-a',
      ]),
    );
  });

  it('renders a relay without nodes as one that finds them from Kubernetes, under its own ServiceAccount', async () => {
    const docs = await renderChart(bin, { relay: { ...RELAY_OK, nodes: [] } });
    const dep = docs.find(
      (d) => d.kind === 'Deployment' && (d.metadata as { name: string }).name.endsWith('-relay'),
    ) as
      | { spec: { template: { spec: { serviceAccountName?: string; containers: { args: string[] }[] } } } }
      | undefined;
    const args = dep?.spec.template.spec.containers[0]!.args ?? [];
    expect(args).toEqual(expect.arrayContaining(['--kubernetes']));
    expect(args.filter((a) => a.startsWith('--node='))).toEqual([]);
    expect(dep?.spec.template.spec.serviceAccountName).toMatch(/-relay$/);
  });

  it('gives each node its own API identity from a {node} template, and the relay pins it per node', async () => {
    const template = 'spiffe://{trustDomain}/meshauth/node/{node}';
    const docs = await renderChart(bin, {
      trustDomain: 'cluster.local',
      auth: { mode: 'channel' },
      api: { tcp: { enabled: true, identity: template, allowedIds: ['spiffe://cluster.local/ops/admin'] } },
      audit: { witnesses: ['meshauth-relay.meshauth.svc:4252'] },
      relay: { ...RELAY_OK, nodes: [] },
    });
    // the ConfigMap keeps {node}; meshauthd on node-a (the rendered env) resolves it
    expect(configText(docs)).toContain('spiffe://cluster.local/meshauth/node/{node}');
    expect(loadRendered(docs).api.tcp?.identity).toBe('spiffe://cluster.local/meshauth/node/node-a');
    const dep = docs.find(
      (d) => d.kind === 'Deployment' && (d.metadata as { name: string }).name.endsWith('-relay'),
    ) as { spec: { template: { spec: { containers: { args: string[] }[] } } } } | undefined;
    expect(dep?.spec.template.spec.containers[0]!.args).toEqual(
      expect.arrayContaining(['--node-id-template=spiffe://cluster.local/meshauth/node/{node}']),
    );
  });

  it('documents every value of values.yaml in the chart README', () => {
    const values = parse(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8')) as Record<string, unknown>;
    const readme = readFileSync(join(CHART_DIR, 'README.md'), 'utf8');
    const leaves = (o: Record<string, unknown>, prefix: string): string[] =>
      Object.entries(o).flatMap(([k, v]) =>
        v !== null &&
        typeof v === 'object' &&
        !Array.isArray(v) &&
        Object.keys(v).length > 0 &&
        !['resources', 'updateStrategy', 'nodeSelector'].includes(k)
          ? leaves(v as Record<string, unknown>, `${prefix}${k}.`)
          : [`${prefix}${k}`],
      );
    const missing = leaves(values, '').filter((k) => !readme.includes(`| \`${k}\` |`));
    expect(missing).toEqual([]);
  });
});
