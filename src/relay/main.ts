/**
 * meshauth-relay: the cluster-wide audit API. Serves meshauth.v1.Audit for every node at once and
 * witnesses the nodes' signed audit heads. Exit codes: 0 clean stop, 1 runtime failure, 2 usage or
 * configuration (a TLS file missing or invalid), as meshauthd.
 */
import { Command, CommanderError } from 'commander';
import { createLogger } from '../log.js';
import { parseSpiffeId } from '../spiffe/index.js';
import { ConfigError, formatDuration, parseDuration } from '../config/index.js';
import { configureUsage, exitStatusHelp, USAGE_EXIT, usageErrorText, type UsageOutput } from '../usage.js';
import { VERSION } from '../version.js';
import { KubernetesClient, loadKubeConfig, MUTUAL_AUTH_POLICY } from '../kubernetes/index.js';
import { systemClock } from '../time.js';
import { checkNodeIdTemplate, KubernetesNodeSource } from './kube-nodes.js';
import type { RelayNode } from './node-api.js';
import { parseNodeList, staticNodes } from './nodes.js';
import { startRelay } from './start.js';
import { invokedDirectly } from '../invoked-directly.js';

function hostPort(v: string): { host: string; port: number } {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535)
    throw new Error(`--listen: must be host:port with a port between 0 and 65535 (got ${JSON.stringify(v)})`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

/**
 * A duration flag's value in milliseconds: a duration with its unit (`250ms`, `5s`, `2m`, `1h`,
 * `1d`, as everywhere else in meshauth) or a bare number of seconds (`300`, `1.5`), the form these
 * flags took before they accepted units and that existing command lines and the Helm chart pass.
 * Throws an Error naming the flag, the accepted range and the value when the value is not one of
 * these forms or falls outside [minMs, maxMs].
 */
export function secondsOrDuration(flag: string, value: string, minMs: number, maxMs: number): number {
  const v = value.trim();
  const ms = /^[0-9]+(\.[0-9]+)?$/.test(v) ? Math.round(Number(v) * 1000) : parseDuration(v);
  if (ms === undefined || !(ms >= minMs && ms <= maxMs))
    throw new Error(
      `${flag}: must be a duration between ${formatDuration(minMs)} and ${formatDuration(maxMs)} ` +
        `(e.g. 30s, 5m; a bare number is seconds) (got ${JSON.stringify(value)})`,
    );
  return ms;
}

export function buildRelayProgram(output?: UsageOutput): Command {
  return configureUsage(
    new Command('meshauth-relay')
      .description(
        'Cluster-wide meshauth audit API: queries fan out to every node and merge by time, follow ' +
          'streams all nodes, answers name the node of every event and say when a node is missing. ' +
          "Also witnesses the nodes' signed audit heads in its own audit trail.",
      )
      .version(VERSION, '-V, --version')
      .option('--listen <host:port>', 'mTLS TCP listener of the relay API', '0.0.0.0:4252')
      .option(
        '--node <name=host:port[=spiffe-id]>',
        "a node's meshauthd TCP API (repeatable, or comma-separated)",
        (v: string, prev: string[] = []) => [...prev, v],
      )
      .option(
        '--nodes-file <file>',
        'node list file, one name=host:port[=spiffe-id] per line; re-read when it changes',
      )
      .option(
        '--kubernetes',
        'find the nodes from the Kubernetes Node objects (watched: nodes joining and leaving are ' +
          'picked up): each node API at its InternalIP and --api-port. Needs list/watch on nodes',
      )
      .option('--kubeconfig <file>', 'kubeconfig for --kubernetes (default: the in-cluster service account)')
      .option(
        '--api-port <port>',
        "meshauthd's TCP API port on every node (port of api.tcp.listen), with --kubernetes",
      )
      .option(
        '--node-id-template <spiffe-id>',
        "SPIFFE ID a node's API must present, {node} = Node name, with --kubernetes " +
          '(e.g. spiffe://example.org/meshauth/node/{node}; default: any ID of the trust domain)',
      )
      // required, but checked after parsing: commander reports a missing required option before an
      // unknown one, so `--bogus` would be answered with "--tls-cert not specified"
      .option(
        '--tls-cert <file>',
        "the relay's X509-SVID chain (PEM); its SPIFFE ID must be on each node's api.tcp.allowedIds (required)",
      )
      .option('--tls-key <file>', 'its private key (PEM) (required)')
      .option('--tls-bundle <file>', 'trust bundle CA certificates (PEM) (required)')
      .option(
        '--allow <spiffe-id>',
        'query client SPIFFE ID allowed to call the Audit API and list witnessed heads (repeatable; ' +
          'operators, `meshauth --relay`, `audit verify --witnesses`); cannot submit heads (required)',
        (v: string, prev: string[] = []) => [...prev, v],
      )
      .option(
        '--witness-allow <spiffe-id>',
        'node SPIFFE ID allowed to submit signed audit heads (repeatable), besides the SPIFFE ID ' +
          'given for each node (--node, --nodes-file, --node-id-template); cannot query',
        (v: string, prev: string[] = []) => [...prev, v],
      )
      .option(
        '--witness-max-skew <duration>',
        "refuse a submitted head dated further than this from the relay's clock (1s..1d; " +
          'a bare number is seconds)',
        '5m',
      )
      .option(
        '--audit-db <file>',
        "the relay's own audit trail (witnessed heads)",
        '/var/lib/meshauth-relay/audit.db',
      )
      .option(
        '--node-deadline <duration>',
        'how long one node may take to answer (up to 10m; a bare number is seconds)',
        '5s',
      )
      .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
      .allowExcessArguments(false)
      .addHelpText(
        'after',
        exitStatusHelp(
          'stopped cleanly',
          'runtime failure (e.g. the port is taken, the audit trail cannot be opened)',
          'usage or configuration error (bad option; a TLS file missing or invalid)',
        ),
      ),
    output,
  );
}

/** Entry point of the `meshauth-relay` binary. */
export async function main(argv = process.argv.slice(2), output?: UsageOutput): Promise<number> {
  const program = buildRelayProgram(output);
  const writeErr = output?.err ?? ((t: string) => void process.stderr.write(t));
  let o: {
    listen: string;
    node?: string[];
    nodesFile?: string;
    kubernetes?: boolean;
    kubeconfig?: string;
    apiPort?: string;
    nodeIdTemplate?: string;
    tlsCert?: string;
    tlsKey?: string;
    tlsBundle?: string;
    allow?: string[];
    witnessAllow?: string[];
    witnessMaxSkew: string;
    auditDb: string;
    nodeDeadline: string;
    logLevel: string;
  };
  let listen: { host: string; port: number };
  let flagNodes;
  let deadlineMs: number;
  let skewMs: number;
  let tls: { certFile: string; keyFile: string; bundleFile: string };
  let apiPort = 0;
  try {
    program.parse(argv, { from: 'user' });
    o = program.opts();
    const missing = (['--tls-cert', '--tls-key', '--tls-bundle'] as const).filter(
      (f) => !{ '--tls-cert': o.tlsCert, '--tls-key': o.tlsKey, '--tls-bundle': o.tlsBundle }[f],
    );
    if (missing.length > 0)
      throw new Error(
        `${missing.join(', ')}: required (the relay's X509-SVID, its key and the trust bundle)`,
      );
    tls = { certFile: o.tlsCert!, keyFile: o.tlsKey!, bundleFile: o.tlsBundle! };
    listen = hostPort(o.listen);
    flagNodes = parseNodeList((o.node ?? []).join('\n'));
    deadlineMs = secondsOrDuration('--node-deadline', o.nodeDeadline, 1, 600_000);
    if (!o.allow?.length) throw new Error('--allow: required (at least one query client SPIFFE ID)');
    for (const [flag, ids] of [
      ['--allow', o.allow],
      ['--witness-allow', o.witnessAllow ?? []],
    ] as const) {
      for (const id of ids) {
        try {
          parseSpiffeId(id);
        } catch (err) {
          throw new Error(`${flag} ${id}: ${(err as Error).message}`, { cause: err });
        }
      }
    }
    const both = o.allow.filter((id) => o.witnessAllow?.includes(id));
    if (both.length > 0)
      throw new Error(
        `--allow and --witness-allow both list ${both.join(', ')}: a query client and a node submitting heads are different identities`,
      );
    skewMs = secondsOrDuration('--witness-max-skew', o.witnessMaxSkew, 1_000, 86_400_000);
    if (!LOG_LEVELS.includes(o.logLevel))
      throw new Error(`--log-level ${o.logLevel}: expected one of ${LOG_LEVELS.join(', ')}`);
    if (o.kubernetes) {
      if (flagNodes.length > 0 || o.nodesFile)
        throw new Error('--kubernetes: do not combine with --node or --nodes-file');
      apiPort = /^[0-9]{1,5}$/.test(o.apiPort ?? '') ? Number(o.apiPort) : NaN;
      if (!(apiPort >= 1 && apiPort <= 65535))
        throw new Error(
          `--api-port: must be a port between 1 and 65535 with --kubernetes (got ${o.apiPort === undefined ? 'none' : JSON.stringify(o.apiPort)})`,
        );
      if (o.nodeIdTemplate !== undefined) checkNodeIdTemplate(o.nodeIdTemplate);
    } else {
      if (o.kubeconfig || o.apiPort || o.nodeIdTemplate)
        throw new Error('--kubeconfig, --api-port and --node-id-template need --kubernetes');
      if (flagNodes.length === 0 && !o.nodesFile)
        throw new Error('give --node, --nodes-file or --kubernetes');
    }
  } catch (err) {
    // --help and --version exit 0; any other commander error is a usage error
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : USAGE_EXIT;
    writeErr(usageErrorText(program, (err as Error).message));
    return USAGE_EXIT;
  }
  const logger = createLogger({ level: o.logLevel as 'info' }).child({ component: 'relay' });
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  let kubeNodes: KubernetesNodeSource | undefined;
  let nodes: () => readonly RelayNode[];
  if (o.kubernetes) {
    try {
      const client = new KubernetesClient(loadKubeConfig(o.kubeconfig), MUTUAL_AUTH_POLICY);
      kubeNodes = new KubernetesNodeSource({
        informer: client.nodeInformer(),
        apiPort,
        ...(o.nodeIdTemplate !== undefined ? { nodeIdTemplate: o.nodeIdTemplate } : {}),
        clock: systemClock,
        logger,
      }).start();
    } catch (err) {
      writeErr(`meshauth-relay: could not start: ${(err as Error).message}\n`);
      return 1;
    }
    const source = kubeNodes;
    nodes = () => source.nodes();
    // Serve only once the Nodes are listed: an answer from an empty set before the first list
    // would look complete. The informer retries until the API server answers.
    const synced = await Promise.race([source.synced.then(() => true), stopped.then(() => false)]);
    if (!synced) {
      await source.close();
      return 0;
    }
  } else {
    try {
      nodes = staticNodes(flagNodes, o.nodesFile, (err) =>
        logger.warn(
          { event: 'relay_nodes_file_failed', err },
          'node list file unreadable; keeping the previous list',
        ),
      );
      if (nodes().length === 0)
        throw new ConfigError([`--nodes-file ${o.nodesFile}: lists no nodes (and no --node given)`]);
    } catch (err) {
      // one line, exit 2: the file is named on the command line, for its caller to fix
      writeErr(`meshauth-relay: could not start: ${(err as Error).message}\n`);
      return USAGE_EXIT;
    }
  }
  let server;
  try {
    server = await startRelay({
      listen,
      tls,
      allow: o.allow!,
      witnessAllow: o.witnessAllow ?? [],
      witness: { maxSkewMs: skewMs },
      nodes,
      auditPath: o.auditDb,
      nodeDeadlineMs: deadlineMs,
      logger,
    });
  } catch (err) {
    // expected start-up failures (a TLS file missing or not an X509-SVID, the port taken, the
    // audit trail unwritable) are one line naming the cause, without a stack trace, printed once:
    // on stderr, not also as a log line (both end up on the same terminal or in `kubectl logs`)
    writeErr(`meshauth-relay: could not start: ${(err as Error).message}\n`);
    await kubeNodes?.close();
    // a file named on the command line that is missing or wrong is for its caller to change
    return err instanceof ConfigError ? USAGE_EXIT : 1;
  }
  logger.info(
    {
      event: 'relay_started',
      port: server.port,
      local_id: server.spiffeId,
      nodes: nodes().length,
      node_deadline_ms: deadlineMs,
      witness_max_skew_ms: skewMs,
    },
    'meshauth-relay serving',
  );
  await stopped;
  await server.close();
  await kubeNodes?.close();
  return 0;
}

if (invokedDirectly(import.meta.url)) process.exitCode = await main();
