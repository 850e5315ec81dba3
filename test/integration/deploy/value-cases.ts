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
};
