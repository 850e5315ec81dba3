import { dirname, isAbsolute, join, resolve } from 'node:path';
import { ConfigError } from './errors.js';
import { settingOptions, type OptionDescription } from './options.js';
import { packageRoot } from '../package-root.js';
import { configSchema, type ParsedConfig } from './schema.js';
import type { AttachPoint, DaemonConfig, HostPort } from './types.js';
import { formatPath, readYamlFile, validateDocument, type DocPath } from './yaml-document.js';
import { levenshtein } from './validate.js';

/** A value given on the command line: commander gives strings, booleans, or arrays for repeats. */
export type OverrideValue = string | number | boolean | readonly string[] | undefined;

export interface LoadConfigOptions {
  /** YAML configuration file. Optional: everything may come from flags and environment. */
  file?: string;
  /**
   * Command-line values, keyed by config path ("handshake.port"), flag ("--handshake-port") or
   * commander attribute name ("handshakePort"). Undefined values are ignored, so do not give the
   * flags defaults in commander: defaults live here.
   */
  argvOverrides?: Readonly<Record<string, OverrideValue>>;
  /** Environment (MESHAUTH_*); defaults to none (pass process.env explicitly). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Base for relative paths given by flags or environment; defaults to process.cwd(). */
  cwd?: string;
}

/** Settings holding file-system paths; relative ones are resolved. `*` stands for a list index. */
const PATH_FIELDS = [
  'stateDir',
  'bpf.pinDir',
  'bpf.object',
  'datapath.attach.*.path',
  'identity.devCa.caCert',
  'identity.devCa.caKey',
  'identity.spire.adminSocket',
  'identity.files.bundle',
  'identity.files.svids.*.cert',
  'identity.files.svids.*.key',
  'inventory.file',
  'policy.file',
  'kubernetes.kubeconfig',
  'audit.path',
  'api.socket',
  'wireguard.privateKeyFile',
];

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function setPath(root: Obj, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = root;
  for (const p of parts.slice(0, -1)) {
    if (!isObj(cur[p])) cur[p] = {};
    cur = cur[p] as Obj;
  }
  cur[parts[parts.length - 1] as string] = value;
}

function parseAttachSpec(spec: string): Obj {
  const colon = spec.indexOf(':');
  const type = colon < 0 ? spec : spec.slice(0, colon);
  const rest = colon < 0 ? '' : spec.slice(colon + 1);
  if (type === 'tc') {
    const [iface, hook, semantics, ...extra] = rest.split(':');
    const out: Obj = { type, interface: iface, hook };
    if (semantics !== undefined) out['semantics'] = semantics;
    if (extra.length > 0) out['extra'] = extra.join(':');
    return out;
  }
  if (type === 'cgroup') {
    const m = /^(.*):(ingress|egress)$/.exec(rest);
    return m ? { type, path: m[1], hook: m[2] } : { type, path: rest };
  }
  if (type === 'sockops') return { type, path: rest };
  return { type };
}

function coerce(opt: OptionDescription, value: Exclude<OverrideValue, undefined>): unknown {
  const list = (v: typeof value): string[] =>
    (Array.isArray(v) ? (v as string[]) : [String(v)])
      .flatMap((s) => s.split(','))
      .map((s) => s.trim())
      .filter((s) => s !== '');
  switch (opt.kind) {
    case 'list':
      return list(value);
    case 'attach':
      return list(value).map(parseAttachSpec);
    case 'int':
    case 'number':
      return typeof value === 'string' && /^-?\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : value;
    case 'bool':
      if (typeof value !== 'string') return value;
      if (/^(true|1|yes|on)$/i.test(value)) return true;
      if (/^(false|0|no|off)$/i.test(value)) return false;
      return value;
    default:
      return Array.isArray(value) ? value[value.length - 1] : value;
  }
}

function findOption(key: string, options: ReturnType<typeof settingOptions>) {
  return options.find(
    (o) => o.path === key || o.flag === key || o.attributeName === key || o.flag === `--${key}`,
  );
}

function resolvePaths(doc: Obj, baseFor: (path: string) => string): void {
  for (const field of PATH_FIELDS) {
    const walk = (node: unknown, parts: string[], at: string[]): void => {
      if (parts.length === 0) return;
      const [head, ...tail] = parts as [string, ...string[]];
      if (head === '*') {
        if (Array.isArray(node)) node.forEach((item, i) => walk(item, tail, [...at, String(i)]));
        return;
      }
      if (!isObj(node)) return;
      if (tail.length === 0) {
        const v = node[head];
        if (typeof v === 'string' && v !== '' && !isAbsolute(v))
          node[head] = resolve(baseFor([...at, head].join('.')), v);
        return;
      }
      walk(node[head], tail, [...at, head]);
    };
    walk(doc, field.split('.'), []);
  }
}

function finalize(p: ParsedConfig, file: string | undefined): DaemonConfig {
  const attach: AttachPoint[] = p.datapath.attach.map((a): AttachPoint => {
    if (a.type === 'tc')
      return { type: 'tc', interface: a.interface, hook: a.hook, semantics: a.semantics ?? a.hook };
    if (a.type === 'sockops') return { type: 'sockops', path: a.path };
    return { type: 'cgroup', path: a.path, hook: a.hook, semantics: a.hook };
  });
  return {
    file,
    node: p.node,
    stateDir: p.stateDir,
    bpf: { pinDir: p.bpf.pinDir, object: p.bpf.object ?? join(packageRoot(), 'bpf', 'meshauth.bpf.o') },
    datapath: {
      attach,
      signalThrottleMs: p.datapath.signalThrottle,
      strictWireguard: p.datapath.strictWireguard,
      synRtoMs: p.datapath.synRto,
      synReplay: p.datapath.synReplay,
      maps: { ...p.datapath.maps },
    },
    handshake: {
      listen: p.handshake.listen,
      port: p.handshake.port,
      timeoutMs: p.handshake.timeout,
      maxConnections: p.handshake.maxConnections,
      perPeerRate: p.handshake.perPeerRate,
      perPeerBurst: p.handshake.perPeerBurst,
      maxEntryTtlMs: p.handshake.maxEntryTtl,
    },
    auth: {
      maxConcurrent: p.auth.maxConcurrent,
      queueSize: p.auth.queueSize,
      retryBaseMs: p.auth.retryBase,
      retryMaxMs: p.auth.retryMax,
      reauthAt: p.auth.reauthAt,
      gcIntervalMs: p.auth.gcInterval,
      preauthenticate: p.auth.preauthenticate,
      mode: p.auth.mode,
      channel: {
        port: p.auth.channel.port,
        nodeId: p.auth.channel.nodeId,
        maxChannels: p.auth.channel.maxChannels,
      },
    },
    identity: {
      source: p.identity.source,
      devCa: {
        trustDomain: p.identity.devCa.trustDomain,
        caCert: p.identity.devCa.caCert ?? join(p.stateDir, 'dev-ca', 'ca.crt'),
        caKey: p.identity.devCa.caKey ?? join(p.stateDir, 'dev-ca', 'ca.key'),
        svidTtlMs: p.identity.devCa.svidTtl,
      },
      spire: { ...p.identity.spire },
      workloadApi: { ...p.identity.workloadApi },
      files: p.identity.files
        ? { bundle: p.identity.files.bundle, svids: p.identity.files.svids.map((s) => ({ ...s })) }
        : undefined,
    },
    inventory: { source: p.inventory.source, file: p.inventory.file },
    policy: { source: p.policy.source, file: p.policy.file },
    kubernetes: {
      kubeconfig: p.kubernetes.kubeconfig,
      trustDomain: p.kubernetes.trustDomain ?? p.identity.devCa.trustDomain,
      spiffeIdTemplate: p.kubernetes.spiffeIdTemplate,
      nodeAddressType: p.kubernetes.nodeAddressType,
      publishWireguardKey: p.kubernetes.publishWireguardKey,
      reportPolicyStatus: p.kubernetes.reportPolicyStatus,
    },
    audit: {
      path: p.audit.path ?? join(p.stateDir, 'audit.db'),
      maxAgeMs: p.audit.maxAge,
      maxEvents: p.audit.maxEvents,
      witnesses: p.audit.witnesses.filter((w): w is HostPort => w !== null),
      headIntervalMs: p.audit.headInterval,
      witnessMaxSkewMs: p.audit.witnessMaxSkew,
      otlpEndpoint: p.audit.otlpEndpoint,
      otlpBatchSize: p.audit.otlpBatchSize,
      otlpTimeoutMs: p.audit.otlpTimeout,
    },
    api: {
      socket: p.api.socket,
      socketMode: p.api.socketMode,
      tcp: p.api.tcp
        ? {
            listen: p.api.tcp.listen as NonNullable<typeof p.api.tcp.listen>,
            allowedIds: [...p.api.tcp.allowedIds],
            identity: p.api.tcp.identity
              ?.replaceAll('{node}', p.node)
              .replaceAll('{trustDomain}', p.identity.devCa.trustDomain),
          }
        : undefined,
    },
    metrics: { listen: p.metrics.listen },
    wireguard: {
      enabled: p.wireguard.enabled,
      interface: p.wireguard.interface,
      listenPort: p.wireguard.listenPort,
      address: p.wireguard.address,
      privateKeyFile: p.wireguard.privateKeyFile ?? join(p.stateDir, 'wireguard', 'private.key'),
      userspaceBinary: p.wireguard.userspaceBinary,
    },
    log: { level: p.log.level },
  };
}

/**
 * MESHAUTH_* names that are not configuration settings but are read by meshauth itself: the CLI's
 * socket, the file given by --config, and the host IP the Helm chart exports for
 * MESHAUTH_WIREGUARD_ADDRESS to expand.
 */
export const NON_CONFIG_ENV: readonly string[] = ['MESHAUTH_CONFIG', 'MESHAUTH_SOCKET', 'MESHAUTH_HOST_IP'];

/**
 * Problems for MESHAUTH_* variables that are not a setting but within two edits of one
 * (MESHAUTH_HANDSHAKE_PROT): a typo that would otherwise be ignored while the default applies.
 * Other unknown MESHAUTH_* names are left alone: the prefix is open-ended (build, test and
 * benchmark scripts use it for their own knobs, and they share a shell with meshauthd), so only a
 * near miss of a setting is a sure mistake.
 */
function misspeltEnv(
  env: Readonly<Record<string, string | undefined>>,
  options: ReadonlyArray<{ env: string }>,
): string[] {
  const known = new Set([...options.map((o) => o.env), ...NON_CONFIG_ENV]);
  const problems: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('MESHAUTH_') || known.has(name) || env[name] === undefined) continue;
    let best: string | undefined;
    let bestD = 3;
    for (const k of known) {
      const d = levenshtein(name, k);
      if (d < bestD) [best, bestD] = [k, d];
    }
    if (best !== undefined) problems.push(`config env ${name}: not a setting (did you mean ${best}?)`);
  }
  return problems;
}

/**
 * Loads the daemon configuration: defaults < file < environment (MESHAUTH_*) < flags.
 * Throws ConfigError (MESHAUTH_ERR_CONFIG) whose lines read "config <file>: <path>: <reason>",
 * or "config env MESHAUTH_X: ..." / "config flag --x: ..." when the bad value came from there.
 * Settings valid alone that conflict read "config: conflict between auth.channel.port (file <file>)
 * and handshake.port (default): <reason>", each with where its value came from (file, env, flag,
 * default, not set).
 */
export function loadConfig(opts: LoadConfigOptions = {}): DaemonConfig {
  const cwd = opts.cwd ?? process.cwd();
  const file = opts.file !== undefined ? resolve(cwd, opts.file) : undefined;
  const fileLabel = file !== undefined ? `config ${file}` : 'config';
  const raw: unknown = file !== undefined ? readYamlFile(file, fileLabel) : {};
  if (!isObj(raw)) {
    throw new ConfigError([`${fileLabel}: (top level): must be a mapping of settings`]);
  }
  const doc: Obj = raw;
  const options = settingOptions();
  /** config path -> where its value came from, for overridden paths. */
  const sources = new Map<string, string>();

  for (const opt of options) {
    const v = opts.env?.[opt.env];
    if (v === undefined) continue;
    setPath(doc, opt.path, coerce(opt, v));
    sources.set(opt.path, `config env ${opt.env}`);
  }
  const misspelt = misspeltEnv(opts.env ?? {}, options);
  if (misspelt.length > 0) throw new ConfigError(misspelt);
  const unknownFlags: string[] = [];
  for (const [key, v] of Object.entries(opts.argvOverrides ?? {})) {
    const opt = findOption(key, options);
    if (!opt) {
      unknownFlags.push(`config flags: unknown option "${key}"`);
      continue;
    }
    if (v === undefined) continue;
    setPath(doc, opt.path, coerce(opt, v));
    sources.set(opt.path, `config flag ${opt.flag}`);
  }
  if (unknownFlags.length > 0) throw new ConfigError(unknownFlags);

  const sourceOf = (dotted: string): string | undefined => {
    let best: string | undefined;
    for (const p of sources.keys()) {
      if (
        (dotted === p || dotted.startsWith(`${p}.`) || dotted.startsWith(`${p}[`)) &&
        (!best || p.length > best.length)
      )
        best = p;
    }
    return best === undefined ? undefined : sources.get(best);
  };
  const fileDir = file !== undefined ? dirname(file) : cwd;
  resolvePaths(doc, (dotted) =>
    sourceOf(dotted.replace(/\.(\d+)(?=\.|$)/g, '[$1]')) !== undefined ? cwd : fileDir,
  );

  /** Where a setting's value came from, for conflicts: a flag, the environment, the file, a default. */
  const originOf = (dotted: string): string => {
    const from = sourceOf(dotted);
    if (from !== undefined) return from.replace(/^config /, '');
    let node: unknown = doc; // environment and flags are found above: what is left is the file's

    for (const part of dotted.split('.')) node = isObj(node) ? node[part] : undefined;
    if (node !== undefined) return file !== undefined ? `file ${file}` : 'set';
    return options.find((o) => o.path === dotted)?.default !== undefined ? 'default' : 'not set';
  };
  const parsed = validateDocument(
    configSchema,
    doc,
    (path: DocPath) => sourceOf(formatPath(path)) ?? fileLabel,
    undefined,
    { label: 'config', originOf },
  );
  return finalize(parsed, file);
}
