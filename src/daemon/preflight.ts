import { accessSync, constants, existsSync, statfsSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ConfigError, type DaemonConfig } from '../config/index.js';
import { interfaceIndex } from '../datapath/index.js';
import { makeDirsSync } from '../make-dirs.js';

/** statfs(2) f_type of a cgroup v2 mount (linux/magic.h CGROUP2_SUPER_MAGIC). */
const CGROUP2_SUPER_MAGIC = 0x63677270;

/**
 * Everything a start can find wrong with the configuration and the node before it touches anything:
 * configured files exist and are readable, attach points resolve (interface → ifindex, cgroup v2
 * directory), and the TCP listeners can bind. Runs before any pinned map is written or program
 * replaced, so a configuration mistake never changes the enforcement a previous run left attached.
 *
 * Throws ConfigError (exit 2) with one line per problem, each naming the setting:
 * "<setting>: <value>: <reason>". A listener is only probed (bound and closed again): another
 * process may still take the port before the daemon binds it, which then fails the start late.
 */
export async function preflight(config: DaemonConfig): Promise<void> {
  const problems = [
    ...checkStateDir(config),
    ...checkFiles(config),
    ...checkAttachPoints(config),
    ...(await checkListeners(config)),
  ];
  if (problems.length > 0) throw new ConfigError(problems);
}

/**
 * stateDir exists as a directory or can be made (it is made here, as the start would make it next):
 * a start that cannot make it failed later with a bare "ENOENT ... mkdir" naming no setting.
 */
function checkStateDir(config: DaemonConfig): string[] {
  try {
    makeDirsSync(config.stateDir, 0o700);
    return [];
  } catch (err) {
    return [`stateDir: ${config.stateDir}: cannot create it: ${reason(err)}`];
  }
}

function fileProblem(setting: string, path: string): string | undefined {
  try {
    if (!statSync(path).isFile()) return `${setting}: ${path}: not a regular file`;
    accessSync(path, constants.R_OK);
    return undefined;
  } catch (err) {
    return `${setting}: ${path}: ${reason(err)}`;
  }
}

function checkFiles(config: DaemonConfig): string[] {
  const files: Array<[string, string]> = [['bpf.object', config.bpf.object]];
  const id = config.identity;
  if (id.source === 'files' && id.files) {
    files.push(['identity.files.bundle', id.files.bundle]);
    id.files.svids.forEach((s, i) => {
      files.push([`identity.files.svids[${i}].cert`, s.cert], [`identity.files.svids[${i}].key`, s.key]);
    });
  }
  const problems: string[] = [];
  if (id.source === 'dev-ca') {
    const { caCert, caKey } = id.devCa;
    // A new development CA is made only at the default paths (<stateDir>/dev-ca/ca.{crt,key}), and
    // only when both are missing; files named in the configuration must exist.
    const defaults = join(config.stateDir, 'dev-ca');
    const atDefaults = caCert === join(defaults, 'ca.crt') && caKey === join(defaults, 'ca.key');
    if (!(atDefaults && !existsSync(caCert) && !existsSync(caKey))) {
      files.push(['identity.devCa.caCert', caCert], ['identity.devCa.caKey', caKey]);
    }
  }
  const usesKubernetes = config.inventory.source === 'kubernetes' || config.policy.source === 'kubernetes';
  if (usesKubernetes && config.kubernetes.kubeconfig !== undefined) {
    files.push(['kubernetes.kubeconfig', config.kubernetes.kubeconfig]);
  }
  for (const [setting, path] of files) {
    const p = fileProblem(setting, path);
    if (p) problems.push(p);
  }
  return problems;
}

function checkAttachPoints(config: DaemonConfig): string[] {
  const problems: string[] = [];
  config.datapath.attach.forEach((a, i) => {
    const setting = `datapath.attach[${i}]`;
    if (a.type === 'tc') {
      // The WireGuard interface is created by this daemon (its wireguard step runs before the
      // datapath's), so it need not exist yet.
      if (config.wireguard.enabled && a.interface === config.wireguard.interface) return;
      try {
        interfaceIndex(a.interface);
      } catch {
        problems.push(
          `${setting} (tc interface ${a.interface}): no such interface in this network namespace`,
        );
      }
      return;
    }
    const where = `${setting} (${a.type} path ${a.path})`;
    try {
      if (!statSync(a.path).isDirectory()) {
        problems.push(`${where}: not a directory`);
      } else if (statfsSync(a.path).type !== CGROUP2_SUPER_MAGIC) {
        problems.push(`${where}: not a cgroup v2 directory`);
      }
    } catch (err) {
      problems.push(`${where}: ${reason(err)}`);
    }
  });
  return problems;
}

async function checkListeners(config: DaemonConfig): Promise<string[]> {
  const listeners: Array<[string, string, number]> = [
    ['handshake.port', config.handshake.listen, config.handshake.port],
  ];
  if (config.auth.mode === 'channel') {
    listeners.push(['auth.channel.port', config.handshake.listen, config.auth.channel.port]);
  }
  if (config.metrics.listen) {
    listeners.push(['metrics.listen', config.metrics.listen.host, config.metrics.listen.port]);
  }
  if (config.api.tcp)
    listeners.push(['api.tcp.listen', config.api.tcp.listen.host, config.api.tcp.listen.port]);
  const problems: string[] = [];
  for (const [setting, host, port] of listeners) {
    if (port === 0) continue;
    const err = await probeListen(host, port);
    // Only a port taken or refused is certain: an address may appear later in start-up (the
    // WireGuard interface's), so EADDRNOTAVAIL and the like are left to the listener itself.
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (err && (code === 'EADDRINUSE' || code === 'EACCES'))
      problems.push(`${setting}: cannot listen on ${formatHostPort(host, port)}: ${reason(err)}`);
  }
  return problems;
}

/** Binds host:port and closes it again; resolves with the bind error, if any. */
function probeListen(host: string, port: number): Promise<Error | undefined> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', (err) => resolve(err));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The system error as one short phrase ("no such file or directory (ENOENT)"). */
function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const known: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    ENOTDIR: 'a path component is not a directory',
    EADDRINUSE: 'address already in use',
  };
  if (e.code && known[e.code]) return `${known[e.code]} (${e.code})`;
  return e.message ?? String(err);
}
