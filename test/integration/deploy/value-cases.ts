/** The values matrix the chart is checked with (helm.test.ts, helm-apiserver.test.ts). */

/** A development CA (PEM) for the dev-ca case; only its shape matters to the chart. */
export const DEV_CA_CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
export const DEV_CA_KEY = '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n';

/** The values matrix: each case is installed as is by an operator. */
export const HELM_VALUE_CASES: Record<string, Record<string, unknown>> = {
  defaults: {},
  'cgroup attach': { datapath: { attach: 'cgroup', cgroup: { subPath: 'kubepods.slice' } } },
  'tc attach': { datapath: { attach: 'tc', tc: { interface: 'ens5' }, sockops: false } },
  'wireguard strict': { wireguard: { enabled: true }, strict: true },
  'spire delegated': {
    trustDomain: 'prod.example.com',
    identity: { source: 'spire-delegated', spire: { adminSocketHostDir: '/run/spire/agent-sockets-admin' } },
    metrics: { serviceMonitor: { enabled: true, labels: { release: 'prometheus' } } },
  },
  'dev CA': { identity: { source: 'dev-ca', devCa: { caCert: DEV_CA_CERT, caKey: DEV_CA_KEY } } },
  'no own-node admission policy': { rbac: { ownNodePolicy: false } },
  // every daemon setting the chart maps, away from its default: witnessed heads, OTLP, node
  // channels, the TCP API, map sizes, handshake and auth-manager limits
  'cluster audit': {
    identity: { source: 'workload-api' },
    datapath: {
      maps: { auth: 131072, ipcache: 32768, policy: 4096, throttle: 8192, signalRingBytes: 1048576 },
      synRto: '20ms',
      synReplay: false,
    },
    handshake: { maxConnections: 512, perPeerRate: 20, perPeerBurst: 40 },
    auth: {
      mode: 'channel',
      channel: { port: 4260, nodeId: 'spiffe://{trustDomain}/meshauth/nodes/{node}', maxChannels: 64 },
      maxConcurrent: 32,
      queueSize: 8192,
      retryBase: '100ms',
      retryMax: '1m',
      gcInterval: '10s',
    },
    audit: {
      witnesses: ['meshauth-relay.meshauth.svc:4252', '10.0.0.2:4251'],
      headInterval: '30s',
      witnessMaxSkew: '2m',
      otlpEndpoint: 'http://otel-collector.observability:4318/v1/logs',
      otlpBatchSize: 256,
      otlpTimeout: '5s',
    },
    api: {
      socketMode: '0660',
      tcp: {
        enabled: true,
        port: 4251,
        identity: 'spiffe://example.org/ns/meshauth/sa/meshauth',
        allowedIds: ['spiffe://example.org/meshauth/relay', 'spiffe://example.org/ns/meshauth/sa/meshauth'],
      },
    },
  },
};
