import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, describeOptions, loadConfig, parseDuration } from '../../../src/config/index.js';

const dir = mkdtempSync(join(tmpdir(), 'meshauth-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MINIMAL = `node: node-a
datapath:
  attach:
    - { type: tc, interface: eth0, hook: egress }
inventory: { file: inventory.yaml }
policy: { file: policy.yaml }
`;

const TCP_IDENTITY = `api:
  tcp: { listen: "0.0.0.0:4251", allowedIds: ["spiffe://cluster.test/ops/admin"], identity: "spiffe://cluster.test/meshauth/node/node-a" }
`;

let n = 0;
function writeConfig(text: string): string {
  const sub = join(dir, `c${n++}`);
  mkdirSync(sub);
  const file = join(sub, 'config.yaml');
  writeFileSync(file, text);
  return file;
}

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('MESHAUTH_ERR_CONFIG');
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig: defaults', () => {
  it('fills every default from a minimal file', () => {
    const file = writeConfig(MINIMAL);
    const c = loadConfig({ file });
    const here = resolve(file, '..');
    expect(c.file).toBe(file);
    expect(c.node).toBe('node-a');
    expect(c.stateDir).toBe('/var/lib/meshauth');
    expect(c.bpf.pinDir).toBe('/sys/fs/bpf/meshauth');
    expect(c.bpf.object).toMatch(/\/bpf\/meshauth\.bpf\.o$/);
    expect(c.datapath).toEqual({
      attach: [{ type: 'tc', interface: 'eth0', hook: 'egress', semantics: 'egress' }],
      signalThrottleMs: 250,
      strictWireguard: false,
      synRtoMs: 8,
      synReplay: true,
      maps: { auth: 65536, ipcache: 65536, policy: 16384, throttle: 65536, signalRingBytes: 1048576 },
    });
    expect(c.handshake).toEqual({
      listen: '0.0.0.0',
      port: 4250,
      timeoutMs: 5000,
      maxConnections: 256,
      perPeerRate: 50,
      perPeerBurst: 100,
      maxEntryTtlMs: 3_600_000,
    });
    expect(c.auth).toEqual({
      maxConcurrent: 16,
      queueSize: 4096,
      retryBaseMs: 200,
      retryMaxMs: 30_000,
      reauthAt: 0.8,
      gcIntervalMs: 5000,
      preauthenticate: false,
      mode: 'per-pair',
      channel: { port: 4253, nodeId: 'spiffe://{trustDomain}/meshauth/node/{node}', maxChannels: 1000 },
    });
    expect(c.identity).toEqual({
      source: 'dev-ca',
      devCa: {
        trustDomain: 'demo.local',
        caCert: '/var/lib/meshauth/dev-ca/ca.crt',
        caKey: '/var/lib/meshauth/dev-ca/ca.key',
        svidTtlMs: 3_600_000,
      },
      spire: { adminSocket: '/run/spire/admin/admin.sock', maxMessageBytes: 4194304 },
      workloadApi: { address: 'unix:///run/spire/agent.sock' },
      files: undefined,
    });
    expect(c.inventory.file).toBe(join(here, 'inventory.yaml'));
    expect(c.policy.file).toBe(join(here, 'policy.yaml'));
    expect(c.audit).toEqual({
      path: '/var/lib/meshauth/audit.db',
      maxAgeMs: 30 * 86_400_000,
      maxEvents: 10_000_000,
      witnesses: [],
      headIntervalMs: 60_000,
      witnessMaxSkewMs: 300_000,
      otlpEndpoint: undefined,
      otlpBatchSize: 512,
      otlpTimeoutMs: 10_000,
    });
    expect(c.api).toEqual({ socket: '/run/meshauth/api.sock', socketMode: 0o600, tcp: undefined });
    expect(c.metrics.listen).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(c.wireguard).toEqual({
      enabled: false,
      interface: 'meshauth0',
      listenPort: 51820,
      address: undefined,
      privateKeyFile: '/var/lib/meshauth/wireguard/private.key',
      userspaceBinary: 'wireguard-go',
    });
    expect(c.log.level).toBe('info');
  });

  it('derives state paths from stateDir', () => {
    const c = loadConfig({ file: writeConfig(`${MINIMAL}stateDir: /srv/ma\n`) });
    expect(c.audit.path).toBe('/srv/ma/audit.db');
    expect(c.identity.devCa.caCert).toBe('/srv/ma/dev-ca/ca.crt');
    expect(c.wireguard.privateKeyFile).toBe('/srv/ma/wireguard/private.key');
  });

  it('describeOptions defaults agree with what loadConfig produces', () => {
    const c = loadConfig({ file: writeConfig(MINIMAL) }) as unknown as Record<string, unknown>;
    const opts = describeOptions();
    expect(opts[0]?.flag).toBe('--config');
    let checked = 0;
    for (const o of opts) {
      if (o.path === undefined || o.default === undefined) continue;
      const parts = o.path.split('.');
      const leaf = parts.pop() as string;
      let node = c;
      for (const p of parts) node = node[p] as Record<string, unknown>;
      const raw = o.kind === 'duration' ? node[`${leaf}Ms`] : node[leaf];
      let value: unknown = raw;
      if (o.path === 'metrics.listen') {
        const hp = raw as { host: string; port: number };
        value = `${hp.host}:${hp.port}`;
      }
      let expected: unknown = o.default;
      if (o.kind === 'duration') expected = parseDuration(o.default);
      else if (o.kind === 'int' || o.kind === 'number') expected = Number(o.default);
      else if (o.kind === 'bool') expected = o.default === 'true';
      if (o.path === 'api.socketMode') expected = parseInt(o.default, 8);
      expect(value, o.path).toEqual(expected);
      checked++;
    }
    expect(checked).toBeGreaterThan(30);
  });

  it('names flags and environment variables consistently', () => {
    const port = describeOptions().find((o) => o.path === 'handshake.maxConnections');
    expect(port).toMatchObject({
      flag: '--handshake-max-connections',
      env: 'MESHAUTH_HANDSHAKE_MAX_CONNECTIONS',
      attributeName: 'handshakeMaxConnections',
    });
    const ca = describeOptions().find((o) => o.path === 'identity.devCa.caCert');
    expect(ca).toMatchObject({ flag: '--identity-dev-ca-ca-cert', env: 'MESHAUTH_IDENTITY_DEV_CA_CA_CERT' });
    for (const o of describeOptions()) expect(o.description.length).toBeGreaterThan(10);
  });
});

describe('loadConfig: bad files', () => {
  const cases: Array<[string, string, string]> = [
    [
      'port not a number',
      `${MINIMAL}handshake: { port: abc }\n`,
      'handshake.port: must be an integer between 1 and 65535 (got "abc")',
    ],
    [
      'port out of range',
      `${MINIMAL}handshake: { port: 70000 }\n`,
      'handshake.port: must be an integer between 1 and 65535 (got 70000)',
    ],
    [
      'unknown key with hint',
      `${MINIMAL}handshake: { tmeout: 5s }\n`,
      'handshake.tmeout: unknown key (did you mean "timeout"?)',
    ],
    [
      'unknown top-level key',
      `${MINIMAL}inventroy: {}\n`,
      'inventroy: unknown key (did you mean "inventory"?)',
    ],
    [
      'bad duration',
      `${MINIMAL}handshake: { timeout: 5 minutes }\n`,
      'handshake.timeout: must be a duration like "250ms", "5s", "1h", "30d" or a number of milliseconds (got "5 minutes")',
    ],
    [
      'zero duration',
      `${MINIMAL}auth: { gcInterval: 0s }\n`,
      'auth.gcInterval: must be between 100ms and 1h (got "0s")',
    ],
    [
      'bad enum',
      `${MINIMAL}identity: { source: vault }\n`,
      'identity.source: must be one of "dev-ca", "spire-delegated", "workload-api", "files" (got "vault")',
    ],
    [
      'bad attach type',
      MINIMAL.replace('type: tc', 'type: xdp'),
      'datapath.attach[0].type: must be one of "tc", "cgroup", "sockops" (got "xdp")',
    ],
    [
      'synRto over one second',
      MINIMAL.replace('datapath:\n', 'datapath:\n  synRto: 2s\n'),
      'datapath.synRto: must be between 1ms and 1s (got "2s")',
    ],
    [
      'synRto of zero',
      MINIMAL.replace('datapath:\n', 'datapath:\n  synRto: 0ms\n'),
      'datapath.synRto: must be between 1ms and 1s (got "0ms")',
    ],
    [
      'signal ring that is not a power of two',
      MINIMAL.replace('datapath:\n', 'datapath:\n  maps: { signalRingBytes: 12288 }\n'),
      'datapath.maps.signalRingBytes: must be a power of two between 4096 and 1073741824 (got 12288)',
    ],
    [
      'bad hook',
      MINIMAL.replace('hook: egress', 'hook: both'),
      'datapath.attach[0].hook: must be one of "ingress", "egress" (got "both")',
    ],
    [
      'interface name too long',
      MINIMAL.replace('eth0', 'a-very-long-interface-name'),
      'datapath.attach[0].interface: is not a valid interface name: must be 1 to 15 characters (got "a-very-long-interface-name")',
    ],
    [
      'empty attach list',
      MINIMAL.replace(/attach:\n.*\n/, 'attach: []\n'),
      'datapath.attach: must have at least 1 item(s)',
    ],
    ['missing node', MINIMAL.replace('node: node-a\n', ''), 'node: is required'],
    [
      'missing inventory',
      MINIMAL.replace('inventory: { file: inventory.yaml }\n', ''),
      'inventory: is required',
    ],
    [
      'bad listen address',
      `${MINIMAL}handshake: { listen: 300.1.1.1 }\n`,
      'handshake.listen: must be an IPv4 or IPv6 address (got "300.1.1.1")',
    ],
    [
      'numeric socket mode',
      `${MINIMAL}api: { socketMode: 0600 }\n`,
      'api.socketMode: must be an octal mode in quotes, like "0600" (got 600)',
    ],
    [
      'tcp api without allow-list',
      `${MINIMAL}api: { tcp: { listen: "127.0.0.1:4251", allowedIds: [] } }\n`,
      'api.tcp.allowedIds: must have at least 1 item(s)',
    ],
    [
      'bad allowed id',
      `${MINIMAL}api: { tcp: { listen: "127.0.0.1:4251", allowedIds: ["spiffe://Demo/x"] } }\n`,
      'api.tcp.allowedIds[0]: is not a valid SPIFFE ID: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores (got "spiffe://Demo/x")',
    ],
    [
      'metrics listen without port',
      `${MINIMAL}metrics: { listen: localhost }\n`,
      'metrics.listen: must be "host:port" with a port between 1 and 65535, or "" to disable (got "localhost")',
    ],
    [
      'bool as string',
      MINIMAL.replace('datapath:\n', 'datapath:\n  strictWireguard: "yes"\n'),
      'datapath.strictWireguard: must be true or false (got "yes")',
    ],
    ['section not a mapping', `${MINIMAL}auth: 5\n`, 'auth: must be a mapping (got 5)'],
    [
      'bad auth mode',
      `${MINIMAL}auth: { mode: both }\n`,
      'auth.mode: must be one of "per-pair", "channel" (got "both")',
    ],
    [
      'no room for a single node channel',
      `${MINIMAL}auth: { channel: { maxChannels: 0 } }\n`,
      'auth.channel.maxChannels: must be an integer between 1 and 1000000 (got 0)',
    ],
    [
      'node id template without {node}',
      `${MINIMAL}auth: { channel: { nodeId: "spiffe://td/meshauth/node" } }\n`,
      'auth.channel.nodeId: must be a spiffe:// ID template whose path contains {node}',
    ],
    [
      'a node address type that holds no IP address',
      `${MINIMAL}kubernetes: { nodeAddressType: InternalDNS }\n`,
      'kubernetes.nodeAddressType: must be one of "InternalIP", "ExternalIP" (got "InternalDNS")',
    ],
    [
      'a Kubernetes trust domain with capitals',
      `${MINIMAL}kubernetes: { trustDomain: Example.org }\n`,
      'kubernetes.trustDomain: must be a trust domain of a-z 0-9 . - _ (got "Example.org")',
    ],
    [
      'bad log level',
      `${MINIMAL}log: { level: loud }\n`,
      'log.level: must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent" (got "loud")',
    ],
    [
      'reauthAt out of range',
      `${MINIMAL}auth: { reauthAt: 1.5 }\n`,
      'auth.reauthAt: must be 0 (off) or a number greater than 0 and at most 0.99 (got 1.5)',
    ],
    [
      'node name with capitals',
      MINIMAL.replace('node-a', 'Node_A'),
      'node: must be a node name of lower-case letters, digits, "-" and "." (got "Node_A")',
    ],
    [
      'OTLP endpoint that is not a URL',
      `${MINIMAL}audit: { otlpEndpoint: "collector 4318" }\n`,
      'audit.otlpEndpoint: must be an http:// or https:// URL (got "collector 4318")',
    ],
    [
      'witness clock skew above a day',
      `${MINIMAL}audit: { witnessMaxSkew: 2d }\n`,
      'audit.witnessMaxSkew: must be between 1s and 1d (got "2d")',
    ],
    [
      'OTLP batch size of zero',
      `${MINIMAL}audit: { otlpBatchSize: 0 }\n`,
      'audit.otlpBatchSize: must be an integer between 1 and 10000 (got 0)',
    ],
    [
      'OTLP endpoint of another scheme',
      `${MINIMAL}audit: { otlpEndpoint: "grpc://collector:4317" }\n`,
      'audit.otlpEndpoint: must be an http:// or https:// URL (got "grpc://collector:4317")',
    ],
    [
      'witness listed twice',
      `${MINIMAL}audit: { witnesses: ["10.0.0.2:4251", "10.0.0.2:4251"] }\n${TCP_IDENTITY}`,
      'audit.witnesses[1]: 10.0.0.2:4251 is listed twice',
    ],
  ];
  it.each(cases)('%s', (_name, text, expected) => {
    const file = writeConfig(text);
    const err = errorOf(() => loadConfig({ file }));
    expect(err.problems).toEqual([`config ${file}: ${expected}`]);
    expect(err.message).toBe(`config ${file}: ${expected}`);
  });

  // F stands for the file's path
  const conflicts: Array<[string, string, string]> = [
    [
      'retryMax below retryBase',
      `${MINIMAL}auth: { retryBase: 2s, retryMax: 1s }\n`,
      'conflict between auth.retryMax (file F) and auth.retryBase (file F): auth.retryMax (1s) must be at least auth.retryBase (2s)',
    ],
    [
      'files source without files',
      `${MINIMAL}identity: { source: files }\n`,
      'conflict between identity.files (not set) and identity.source (file F): identity.source "files" needs identity.files (bundle and svids)',
    ],
    [
      'a dev CA certificate without its key',
      `${MINIMAL}identity: { devCa: { caCert: ca.crt } }\n`,
      'conflict between identity.devCa.caCert (file F) and identity.devCa.caKey (not set): the development CA certificate and its key are given together or not at all',
    ],
    [
      'policy from a file without the file',
      MINIMAL.replace('policy: { file: policy.yaml }', 'policy: { source: file }'),
      'conflict between policy.file (not set) and policy.source (file F): policy.source "file" needs policy.file',
    ],
    [
      'wireguard enabled without address',
      `${MINIMAL}wireguard: { enabled: true }\n`,
      "conflict between wireguard.address (not set) and wireguard.enabled (file F): wireguard.enabled: true needs wireguard.address (this node's tunnel address, like 10.99.0.1/32)",
    ],
    [
      'strict wireguard without wireguard',
      MINIMAL.replace('datapath:\n', 'datapath:\n  strictWireguard: true\n'),
      'conflict between datapath.strictWireguard (file F) and wireguard.enabled (default): strictWireguard drops pod traffic between nodes that did not come through WireGuard: it needs wireguard.enabled: true',
    ],
    [
      'api.tcp on the handshake port',
      `${MINIMAL}api: { tcp: { listen: "0.0.0.0:4250", allowedIds: ["spiffe://example.org/relay"] } }\n`,
      'conflict between api.tcp.listen (file F) and handshake.port (default): both would listen on TCP port 4250: give each its own port',
    ],
    [
      'api.tcp on the node channel port',
      `${MINIMAL}auth: { mode: channel, channel: { port: 4260 } }\napi: { tcp: { listen: "0.0.0.0:4260", allowedIds: ["spiffe://example.org/relay"] } }\n`,
      'conflict between api.tcp.listen (file F) and auth.channel.port (file F): both would listen on TCP port 4260: give each its own port',
    ],
    [
      'channel port equal to the handshake port',
      `${MINIMAL}auth: { mode: channel, channel: { port: 4250 } }\n`,
      'conflict between auth.channel.port (file F) and handshake.port (default): both would listen on TCP port 4250: give each its own port',
    ],
    [
      'metrics on the handshake port (loopback inside the wildcard)',
      `${MINIMAL}metrics: { listen: "127.0.0.1:4250" }\n`,
      'conflict between metrics.listen (file F) and handshake.port (default): both would listen on TCP port 4250 (addresses 127.0.0.1 and 0.0.0.0 overlap): give each its own port',
    ],
    [
      'metrics on the TCP API port',
      `${MINIMAL}metrics: { listen: "0.0.0.0:4251" }\n${TCP_IDENTITY}`,
      'conflict between metrics.listen (file F) and api.tcp.listen (file F): both would listen on TCP port 4251: give each its own port',
    ],
    [
      'node id template with {trustDomain} outside the dev CA',
      `${MINIMAL}auth: { mode: channel }\nidentity: { source: workload-api }\n`,
      'conflict between auth.channel.nodeId (default), identity.source (file F) and auth.mode (file F): with auth.mode "channel" and identity.source "workload-api", auth.channel.nodeId must name the trust domain, not {trustDomain} (only the dev CA fills it in)',
    ],
    [
      'witnesses without the identity that signs the head',
      `${MINIMAL}audit: { witnesses: ["10.0.0.2:4251"] }\n`,
      'conflict between audit.witnesses (file F) and api.tcp.identity (not set): witnesses need api.tcp.identity (the SVID that signs the audit head)',
    ],
  ];
  it.each(conflicts)(
    'reports %s as a conflict naming each setting and its origin',
    (_name, text, expected) => {
      const file = writeConfig(text);
      const err = errorOf(() => loadConfig({ file }));
      expect(err.problems).toEqual([`config: ${expected.replaceAll('file F', `file ${file}`)}`]);
    },
  );

  it('accepts metrics on a specific IPv6 address and the handshake port on the IPv4 wildcard (both bind)', () => {
    const file = writeConfig(`${MINIMAL}metrics: { listen: "[::1]:9090" }\n`);
    const c = loadConfig({ file, argvOverrides: { handshakePort: '9090' } });
    expect(c.handshake.port).toBe(9090);
    expect(c.metrics.listen).toEqual({ host: '::1', port: 9090 });
  });

  it('names a flag or the environment as the origin of a conflicting value', () => {
    const file = writeConfig(`${MINIMAL}metrics: { listen: "127.0.0.1:9100" }\n`);
    expect(errorOf(() => loadConfig({ file, argvOverrides: { handshakePort: '9100' } })).problems).toEqual([
      `config: conflict between metrics.listen (file ${file}) and handshake.port (flag --handshake-port): both would listen on TCP port 9100 (addresses 127.0.0.1 and 0.0.0.0 overlap): give each its own port`,
    ]);
    expect(
      errorOf(() =>
        loadConfig({
          env: {
            MESHAUTH_HANDSHAKE_PORT: '4253',
            MESHAUTH_AUTH_MODE: 'channel',
            MESHAUTH_NODE: 'node-a',
            MESHAUTH_DATAPATH_ATTACH: 'tc:eth0:egress',
            MESHAUTH_INVENTORY_FILE: 'i.yaml',
            MESHAUTH_POLICY_FILE: 'p.yaml',
          },
        }),
      ).problems,
    ).toEqual([
      'config: conflict between auth.channel.port (default) and handshake.port (env MESHAUTH_HANDSHAKE_PORT): both would listen on TCP port 4253: give each its own port',
    ]);
  });

  it('lets listeners share a port number on distinct addresses', () => {
    const c = loadConfig({
      file: writeConfig(
        `${MINIMAL}handshake: { listen: 10.0.0.1, port: 9090 }\nmetrics: { listen: "127.0.0.1:9090" }\n`,
      ),
    });
    expect(c.handshake.port).toBe(9090);
    expect(c.metrics.listen).toEqual({ host: '127.0.0.1', port: 9090 });
  });

  it('refuses an API socket mode that lets other users connect, naming the field and why', () => {
    for (const mode of ['0666', '0602', '0604', '0601', '777']) {
      const file = writeConfig(`${MINIMAL}api: { socketMode: "${mode}" }\n`);
      expect(errorOf(() => loadConfig({ file })).problems).toEqual([
        `config ${file}: api.socketMode: must give other users no access (last digit 0, like "0600" or "0660"): any local user could then call the API (read the audit trail, flush auth entries, have heads signed) (got "${mode}")`,
      ]);
    }
    for (const [mode, bits] of [
      ['0600', 0o600],
      ['0660', 0o660],
      ['0640', 0o640],
    ] as const) {
      expect(
        loadConfig({ file: writeConfig(`${MINIMAL}api: { socketMode: "${mode}" }\n`) }).api.socketMode,
      ).toBe(bits);
    }
    // the flag is checked the same way
    expect(
      errorOf(() => loadConfig({ file: writeConfig(MINIMAL), argvOverrides: { apiSocketMode: '0666' } }))
        .problems[0],
    ).toMatch(/^config flag --api-socket-mode: api\.socketMode: must give other users no access/);
  });

  it.each([
    ['handshake.timeout', 'handshake: { timeout: 100d }', 'must be between 100ms and 5m (got "100d")'],
    ['handshake.maxEntryTtl', 'handshake: { maxEntryTtl: 30d }', 'must be between 1s and 7d (got "30d")'],
    [
      'datapath.signalThrottle',
      'datapath_: { signalThrottle: 2m }',
      'must be between 10ms and 1m (got "2m")',
    ],
    ['auth.retryBase', 'auth: { retryBase: 2m, retryMax: 1h }', 'must be between 10ms and 1m (got "2m")'],
    ['auth.retryMax', 'auth: { retryMax: 2h }', 'must be between 10ms and 1h (got "2h")'],
    ['auth.gcInterval', 'auth: { gcInterval: 1d }', 'must be between 100ms and 1h (got "1d")'],
    [
      'identity.devCa.svidTtl',
      'identity: { devCa: { svidTtl: 8d } }',
      'must be between 1m and 7d (got "8d")',
    ],
    ['audit.maxAge', 'audit: { maxAge: 3651d }', 'must be between 1m and 3650d (got "3651d")'],
    ['audit.headInterval', 'audit: { headInterval: 2d }', 'must be between 1s and 1d (got "2d")'],
    ['audit.otlpTimeout', 'audit: { otlpTimeout: 6m }', 'must be between 100ms and 5m (got "6m")'],
    [
      'handshake.timeout',
      'handshake: { timeout: 600000 }',
      'must be between 100ms and 5m (got 600000: a bare number is milliseconds)',
    ],
  ])('bounds %s above, saying the range and what it got', (path, yaml, expected) => {
    const text = yaml.startsWith('datapath_')
      ? MINIMAL.replace('datapath:\n', `datapath:\n  ${yaml.slice('datapath_: { '.length, -2)}\n`)
      : `${MINIMAL}${yaml}\n`;
    const file = writeConfig(text);
    expect(errorOf(() => loadConfig({ file })).problems).toEqual([`config ${file}: ${path}: ${expected}`]);
  });

  it.each([
    ['handshake.timeout', 'handshake: { timeout: 99ms }', 'must be between 100ms and 5m (got "99ms")'],
    [
      'handshake.timeout',
      'handshake: { timeout: 1 }',
      'must be between 100ms and 5m (got 1: a bare number is milliseconds)',
    ],
    [
      'datapath.signalThrottle',
      'datapath_: { signalThrottle: 9ms }',
      'must be between 10ms and 1m (got "9ms")',
    ],
    ['auth.retryBase', 'auth: { retryBase: 9ms, retryMax: 1s }', 'must be between 10ms and 1m (got "9ms")'],
    ['auth.retryMax', 'auth: { retryBase: 10ms, retryMax: 9ms }', 'must be between 10ms and 1h (got "9ms")'],
    ['auth.gcInterval', 'auth: { gcInterval: 99ms }', 'must be between 100ms and 1h (got "99ms")'],
  ])('bounds %s below where the daemon would be useless or busy with itself', (path, yaml, expected) => {
    const text = yaml.startsWith('datapath_')
      ? MINIMAL.replace('datapath:\n', `datapath:\n  ${yaml.slice('datapath_: { '.length, -2)}\n`)
      : `${MINIMAL}${yaml}\n`;
    const file = writeConfig(text);
    expect(errorOf(() => loadConfig({ file })).problems).toEqual([`config ${file}: ${path}: ${expected}`]);
  });

  it('accepts each duration at its lower bound', () => {
    const c = loadConfig({
      file: writeConfig(
        `${MINIMAL.replace('datapath:\n', 'datapath:\n  signalThrottle: 10ms\n')}handshake: { timeout: 100ms }\nauth: { retryBase: 10ms, retryMax: 10ms, gcInterval: 100ms }\n`,
      ),
    });
    expect(c.handshake.timeoutMs).toBe(100);
    expect(c.datapath.signalThrottleMs).toBe(10);
    expect(c.auth).toMatchObject({ retryBaseMs: 10, retryMaxMs: 10, gcIntervalMs: 100 });
  });

  it('accepts each duration at its upper bound', () => {
    const c = loadConfig({
      file: writeConfig(
        `${MINIMAL}handshake: { timeout: 5m, maxEntryTtl: 7d }\nauth: { retryBase: 1m, retryMax: 1h, gcInterval: 1h }\naudit: { maxAge: 3650d, headInterval: 1d, otlpTimeout: 5m }\n`,
      ),
    });
    expect(c.handshake).toMatchObject({ timeoutMs: 300_000, maxEntryTtlMs: 604_800_000 });
    expect(c.auth).toMatchObject({ retryBaseMs: 60_000, retryMaxMs: 3_600_000, gcIntervalMs: 3_600_000 });
    expect(c.audit).toMatchObject({
      maxAgeMs: 3650 * 86_400_000,
      headIntervalMs: 86_400_000,
      otlpTimeoutMs: 300_000,
    });
  });

  it('says why a WireGuard address is refused', () => {
    for (const [addr, why] of [
      ['10.99.0.1/24', 'a /24 is a subnet, not one address'],
      ['10.99.0.0/24', 'a /24 is a subnet, not one address'],
      ['fd00:99::1/64', 'a /64 is a subnet, not one address'],
      ['10.99.0.1/33', 'bad prefix length (0..32)'],
      ['10.99.0/32', ''],
      // a bare string that is no address is not taken for one
      ['10.99.0', 'has no prefix length'],
      ['node-a', 'has no prefix length'],
    ] as const) {
      const file = writeConfig(`${MINIMAL}wireguard: { enabled: true, address: "${addr}" }\n`);
      const [line] = errorOf(() => loadConfig({ file })).problems;
      expect(line).toMatch(
        `config ${file}: wireguard.address: must be this node's tunnel address as /32 (IPv4) or /128 (IPv6), like 10.99.0.1/32 or fd00:99::1/128 (got "${addr}"${why ? `: ${why}` : ''}`,
      );
    }
  });

  it('accepts a WireGuard tunnel address as /32 or /128', () => {
    for (const addr of ['10.99.0.1/32', 'fd00:99::1/128']) {
      const file = writeConfig(`${MINIMAL}wireguard: { enabled: true, address: "${addr}" }\n`);
      expect(loadConfig({ file }).wireguard.address).toBe(addr);
    }
  });

  it('takes a bare WireGuard address as its host prefix, /32 for IPv4 and /128 for IPv6', () => {
    for (const [addr, want] of [
      ['10.99.0.1', '10.99.0.1/32'],
      ['fd00:99::1', 'fd00:99::1/128'],
      ['FD00:99:0:0::1', 'fd00:99::1/128'],
      ['::ffff:10.99.0.1', '10.99.0.1/32'],
    ] as const) {
      const file = writeConfig(`${MINIMAL}wireguard: { enabled: true, address: "${addr}" }\n`);
      expect(loadConfig({ file }).wireguard.address, addr).toBe(want);
    }
    // as the Helm chart gives it: the node's status.hostIP through the environment
    const file = writeConfig(`${MINIMAL}wireguard: { enabled: true }\n`);
    expect(loadConfig({ file, env: { MESHAUTH_WIREGUARD_ADDRESS: 'fd00:10::3' } }).wireguard.address).toBe(
      'fd00:10::3/128',
    );
  });

  it('reports every problem, one line each', () => {
    const file = writeConfig(`${MINIMAL}handshake: { port: 0, timeout: x }\nlog: { levle: info }\n`);
    const err = errorOf(() => loadConfig({ file }));
    expect(err.problems).toEqual([
      `config ${file}: handshake.port: must be an integer between 1 and 65535 (got 0)`,
      `config ${file}: handshake.timeout: must be a duration like "250ms", "5s", "1h", "30d" or a number of milliseconds (got "x")`,
      `config ${file}: log.levle: unknown key (did you mean "level"?)`,
    ]);
    expect(err.message.split('\n')).toHaveLength(3);
  });

  it('checks datapath map sizes: bounds, and a power of two for the signal ring', () => {
    const ok = loadConfig({
      file: writeConfig(
        MINIMAL.replace('datapath:\n', 'datapath:\n  maps: { auth: 1024, signalRingBytes: 8192 }\n'),
      ),
    });
    expect(ok.datapath.maps).toMatchObject({ auth: 1024, signalRingBytes: 8192, policy: 16384 });
    const err = (() => {
      try {
        loadConfig({
          file: writeConfig(
            MINIMAL.replace(
              'datapath:\n',
              'datapath:\n  maps: { auth: 0, signalRingBytes: 12288, lpm: 5 }\n',
            ),
          ),
        });
      } catch (e) {
        return e as Error;
      }
      throw new Error('loaded');
    })();
    expect(err.message).toMatch(/datapath\.maps\.auth/);
    expect(err.message).toMatch(/datapath\.maps\.signalRingBytes.*power of two/);
    expect(err.message).toMatch(/lpm/);
  });

  it('gives line and column of YAML syntax errors', () => {
    const file = writeConfig('node: node-a\nhandshake:\n\tport: 4250\n');
    const err = errorOf(() => loadConfig({ file }));
    expect(err.problems).toEqual([
      `config ${file}: line 3, column 1: YAML syntax error: Tabs are not allowed as indentation`,
    ]);
    const file2 = writeConfig('node: node-a\nlog: { level: "info }\n');
    expect(errorOf(() => loadConfig({ file: file2 })).message).toMatch(
      new RegExp(`^config ${file2}: line 3, column 1: YAML syntax error: Missing closing "quote`),
    );
  });

  it('rejects duplicate keys with their position', () => {
    const file = writeConfig(`${MINIMAL}log: { level: info }\nlog: { level: debug }\n`);
    const err = errorOf(() => loadConfig({ file }));
    expect(err.message).toMatch(
      new RegExp(`^config ${file}: line 8, column 1: YAML syntax error: Map keys must be unique$`),
    );
  });

  it('rejects a document that is not a mapping', () => {
    const file = writeConfig('- a\n- b\n');
    expect(errorOf(() => loadConfig({ file })).message).toBe(
      `config ${file}: (top level): must be a mapping of settings`,
    );
  });

  it('reports a missing file', () => {
    const file = join(dir, 'nope.yaml');
    expect(errorOf(() => loadConfig({ file })).message).toBe(`config ${file}: cannot read: file not found`);
  });
});

describe('loadConfig: environment and flags', () => {
  it('environment overrides the file, flags override the environment', () => {
    const file = writeConfig(`${MINIMAL}handshake: { port: 1000, timeout: 1s }\n`);
    const c = loadConfig({
      file,
      env: { MESHAUTH_HANDSHAKE_PORT: '2000', MESHAUTH_HANDSHAKE_TIMEOUT: '3s', MESHAUTH_LOG_LEVEL: 'debug' },
      argvOverrides: {
        handshakePort: '3000',
        '--auth-max-concurrent': '4',
        'datapath.strictWireguard': undefined,
      },
    });
    expect(c.handshake.port).toBe(3000);
    expect(c.handshake.timeoutMs).toBe(3000);
    expect(c.log.level).toBe('debug');
    expect(c.auth.maxConcurrent).toBe(4);
  });

  it('coerces booleans, lists and attach specs', () => {
    const c = loadConfig({
      env: {
        MESHAUTH_NODE: 'node-b',
        MESHAUTH_INVENTORY_FILE: '/etc/meshauth/inventory.yaml',
        MESHAUTH_POLICY_FILE: '/etc/meshauth/policy.yaml',
        MESHAUTH_WIREGUARD_ENABLED: 'true',
        MESHAUTH_WIREGUARD_ADDRESS: '10.99.0.2/32',
        MESHAUTH_DATAPATH_STRICT_WIREGUARD: 'yes',
      },
      argvOverrides: {
        datapathAttach: ['tc:eth0:egress', 'tc:veth1:ingress:egress,cgroup:/sys/fs/cgroup/unified/pods'],
        apiTcpListen: '[::1]:4251',
        apiTcpAllowedIds: 'spiffe://demo.local/ops/cli, spiffe://demo.local/ops/ui',
        apiTcpIdentity: 'spiffe://demo.local/meshauthd/node-b',
      },
    });
    expect(c.file).toBeUndefined();
    expect(c.wireguard.enabled).toBe(true);
    expect(c.datapath.strictWireguard).toBe(true);
    expect(c.datapath.attach).toEqual([
      { type: 'tc', interface: 'eth0', hook: 'egress', semantics: 'egress' },
      { type: 'tc', interface: 'veth1', hook: 'ingress', semantics: 'egress' },
      { type: 'cgroup', path: '/sys/fs/cgroup/unified/pods', hook: 'egress', semantics: 'egress' },
    ]);
    expect(c.api.tcp).toEqual({
      listen: { host: '::1', port: 4251 },
      allowedIds: ['spiffe://demo.local/ops/cli', 'spiffe://demo.local/ops/ui'],
      identity: 'spiffe://demo.local/meshauthd/node-b',
    });
    expect(
      errorOf(() =>
        loadConfig({
          env: { MESHAUTH_NODE: 'n', MESHAUTH_INVENTORY_FILE: '/i', MESHAUTH_POLICY_FILE: '/p' },
          argvOverrides: {
            datapathAttach: 'tc:eth0:egress',
            apiTcpListen: '127.0.0.1:4251',
            apiTcpAllowedIds: 'spiffe://d/x',
            apiTcpIdentity: 'nope',
          },
        }),
      ).message,
    ).toMatch(/^config flag --api-tcp-identity: api\.tcp\.identity: is not a valid SPIFFE ID/);
  });

  it('resolves {node} and {trustDomain} in api.tcp.identity per node (one DaemonSet config for all)', () => {
    const load = (node: string, identity: string, source?: string) =>
      loadConfig({
        env: {
          MESHAUTH_NODE: node,
          MESHAUTH_INVENTORY_FILE: '/i',
          MESHAUTH_POLICY_FILE: '/p',
          ...(source ? { MESHAUTH_IDENTITY_SOURCE: source } : {}),
        },
        argvOverrides: {
          datapathAttach: 'tc:eth0:egress',
          apiTcpListen: '127.0.0.1:4251',
          apiTcpAllowedIds: 'spiffe://d/x',
          apiTcpIdentity: identity,
        },
      });
    const template = 'spiffe://{trustDomain}/meshauth/node/{node}';
    expect(load('node-a', template).api.tcp?.identity).toBe('spiffe://demo.local/meshauth/node/node-a');
    expect(load('node-b', template).api.tcp?.identity).toBe('spiffe://demo.local/meshauth/node/node-b');
    expect(load('node-b', 'spiffe://example.org/node/{node}').api.tcp?.identity).toBe(
      'spiffe://example.org/node/node-b',
    );
    expect(errorOf(() => load('n', 'spiffe://example.org/a/{node}/../b')).message).toMatch(
      /api\.tcp\.identity: is not a valid SPIFFE ID or template/,
    );
  });

  it('names the environment variable or flag when its value is bad', () => {
    const file = writeConfig(MINIMAL);
    expect(errorOf(() => loadConfig({ file, env: { MESHAUTH_HANDSHAKE_PORT: 'abc' } })).message).toBe(
      'config env MESHAUTH_HANDSHAKE_PORT: handshake.port: must be an integer between 1 and 65535 (got "abc")',
    );
    expect(errorOf(() => loadConfig({ file, argvOverrides: { handshakePort: '-1' } })).message).toBe(
      'config flag --handshake-port: handshake.port: must be an integer between 1 and 65535 (got -1)',
    );
    expect(errorOf(() => loadConfig({ file, argvOverrides: { datapathAttach: 'tc:eth0:up' } })).message).toBe(
      'config flag --datapath-attach: datapath.attach[0].hook: must be one of "ingress", "egress" (got "up")',
    );
    // out-of-range durations from flags and the environment say what they got, like the file's
    expect(errorOf(() => loadConfig({ file, argvOverrides: { datapathSynRto: '5s' } })).message).toBe(
      'config flag --datapath-syn-rto: datapath.synRto: must be between 1ms and 1s (got "5s")',
    );
    expect(
      errorOf(() => loadConfig({ file, env: { MESHAUTH_AUDIT_WITNESS_MAX_SKEW: '500ms' } })).message,
    ).toBe(
      'config env MESHAUTH_AUDIT_WITNESS_MAX_SKEW: audit.witnessMaxSkew: must be between 1s and 1d (got "500ms")',
    );
    expect(errorOf(() => loadConfig({ file, argvOverrides: { handshakeMaxEntryTtl: '10ms' } })).message).toBe(
      'config flag --handshake-max-entry-ttl: handshake.maxEntryTtl: must be between 1s and 7d (got "10ms")',
    );
    expect(
      errorOf(() => loadConfig({ file, argvOverrides: { datapathMapsSignalRingBytes: '5000' } })).message,
    ).toBe(
      'config flag --datapath-maps-signal-ring-bytes: datapath.maps.signalRingBytes: must be a power of two between 4096 and 1073741824 (got 5000)',
    );
    expect(errorOf(() => loadConfig({ file, argvOverrides: { handshakePrt: '1' } })).message).toBe(
      'config flags: unknown option "handshakePrt"',
    );
  });

  it('refuses a MESHAUTH_* variable that is a near miss of a setting, naming the setting', () => {
    const err = errorOf(() =>
      loadConfig({
        file: writeConfig(MINIMAL),
        env: { MESHAUTH_HANDSHAKE_PROT: '4300', MESHAUTH_LOG_LEVLE: 'debug', MESHAUTH_NODE: 'node-b' },
      }),
    );
    expect(err.problems).toEqual([
      'config env MESHAUTH_HANDSHAKE_PROT: not a setting (did you mean MESHAUTH_HANDSHAKE_PORT?)',
      'config env MESHAUTH_LOG_LEVLE: not a setting (did you mean MESHAUTH_LOG_LEVEL?)',
    ]);
  });

  it("accepts the MESHAUTH_* names meshauth reads outside the configuration and the scripts' knobs", () => {
    const c = loadConfig({
      file: writeConfig(MINIMAL),
      env: {
        MESHAUTH_SOCKET: '/run/meshauth/api.sock',
        MESHAUTH_HOST_IP: '10.0.0.7',
        MESHAUTH_CONFIG: 'x.yaml',
        MESHAUTH_SPIRE_BIN: '/opt/spire/bin',
        MESHAUTH_KUBE_BIN: '/opt/kube/bin',
        MESHAUTH_CNI_BIN: '/opt/cni/bin',
        MESHAUTH_GRPCURL: '/opt/grpcurl',
        MESHAUTH_NODE_DIR: '/opt/node',
        MESHAUTH_CACHE_DIR: '/var/cache/meshauth',
        MESHAUTH_BENCH_SMOKE: '1',
        MESHAUTH_FUZZ_SEED: '7',
      },
    });
    expect(c.node).toBe('node-a');
  });

  it('ignores unrelated environment variables', () => {
    const c = loadConfig({ file: writeConfig(MINIMAL), env: { MESHAUTH_SOMETHING_ELSE: 'x', PATH: '/bin' } });
    expect(c.node).toBe('node-a');
  });
});

describe('loadConfig: paths', () => {
  it('resolves relative paths in the file against its directory and flag paths against cwd', () => {
    const file = writeConfig(
      `${MINIMAL}stateDir: state\nidentity:\n  source: files\n  files:\n    bundle: certs/bundle.pem\n    svids:\n      - { spiffeId: "spiffe://demo.local/ns/demo/sa/web", cert: certs/web.pem, key: /abs/web.key }\n`,
    );
    const here = resolve(file, '..');
    const c = loadConfig({ file, cwd: '/opt/work', argvOverrides: { policyFile: 'p.yaml' } });
    expect(c.stateDir).toBe(join(here, 'state'));
    expect(c.audit.path).toBe(join(here, 'state', 'audit.db'));
    expect(c.inventory.file).toBe(join(here, 'inventory.yaml'));
    expect(c.policy.file).toBe('/opt/work/p.yaml');
    expect(c.identity.files).toEqual({
      bundle: join(here, 'certs/bundle.pem'),
      svids: [
        {
          spiffeId: 'spiffe://demo.local/ns/demo/sa/web',
          cert: join(here, 'certs/web.pem'),
          key: '/abs/web.key',
        },
      ],
    });
  });

  it('loads the example configuration', () => {
    const c = loadConfig({ file: 'examples/config.yaml' });
    expect(c.node).toBe('node-a');
    expect(c.inventory.file).toBe(resolve('examples/inventory.yaml'));
    expect(c.identity.devCa.caCert).toBe(resolve('examples/dev-ca/ca.crt'));
    expect(c.datapath.attach).toHaveLength(2);
  });
});

describe('loadConfig: sockops attach points', () => {
  it('reads a sockops cgroup from the file and from a flag', () => {
    const file = writeConfig(
      MINIMAL.replace('hook: egress }', 'hook: egress }\n    - { type: sockops, path: /sys/fs/cgroup/pods }'),
    );
    expect(loadConfig({ file }).datapath.attach[1]).toEqual({ type: 'sockops', path: '/sys/fs/cgroup/pods' });
    const viaFlag = loadConfig({
      file,
      argvOverrides: { 'datapath.attach': 'tc:eth0:egress,sockops:/sys/fs/cgroup/x' },
    });
    expect(viaFlag.datapath.attach).toEqual([
      { type: 'tc', interface: 'eth0', hook: 'egress', semantics: 'egress' },
      { type: 'sockops', path: '/sys/fs/cgroup/x' },
    ]);
  });
});
