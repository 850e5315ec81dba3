import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments, stringify } from 'yaml';

const execFileP = promisify(execFile);

/**
 * The capabilities the chart's DaemonSet adds after dropping all: `base` always, `sockops` with
 * datapath.sockops. The e2e tests run the daemons with exactly these.
 */
export const CHART_CAPABILITIES = {
  base: ['BPF', 'PERFMON', 'NET_ADMIN'],
  sockops: ['SYS_ADMIN'],
  synReplay: ['NET_RAW'],
} as const;

/** The chart in the repository. */
export const CHART_DIR = resolve(import.meta.dirname, '../../deploy/helm/meshauth');

/**
 * The helm binary: MESHAUTH_HELM, else the pinned build scripts/build-kubernetes.sh leaves in the
 * cache, else undefined (tests that need it are skipped; `bash scripts/test.sh` builds it first).
 */
export function helmBinary(): string | undefined {
  const candidates = [
    process.env['MESHAUTH_HELM'],
    join(
      process.env['MESHAUTH_KUBE_BIN'] ??
        join(
          process.env['MESHAUTH_CACHE_DIR'] ?? join(homedir(), '.cache', 'meshauth'),
          'kubernetes-v1.37.2',
          'bin',
        ),
      'helm',
    ),
  ];
  return candidates.find((c): c is string => c !== undefined && existsSync(c));
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs helm with `args`; never throws for a non-zero exit (the result says). */
export async function runHelm(helm: string, args: readonly string[]): Promise<HelmResult> {
  try {
    const r = await execFileP(helm, [...args], {
      maxBuffer: 64 * 1024 * 1024,
      // helm keeps caches and repository config under these; nothing here reaches a network
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        HELM_CACHE_HOME: join(tmpdir(), 'meshauth-helm', 'cache'),
        HELM_CONFIG_HOME: join(tmpdir(), 'meshauth-helm', 'config'),
        HELM_DATA_HOME: join(tmpdir(), 'meshauth-helm', 'data'),
      },
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** A Kubernetes object as rendered. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
}

/** Writes `values` to a temporary file and calls `fn` with its path. */
export async function withValuesFile<T>(values: unknown, fn: (file: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'meshauth-values-'));
  try {
    const file = join(dir, 'values.yaml');
    writeFileSync(file, stringify(values));
    return await fn(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `helm template` of the chart with `values` (CRDs included), parsed. Throws with helm's output
 * when rendering fails.
 */
export async function renderChart(
  helm: string,
  values: unknown,
  opts: { release?: string; namespace?: string } = {},
): Promise<K8sObject[]> {
  return withValuesFile(values, async (file) => {
    const r = await runHelm(helm, [
      'template',
      opts.release ?? 'meshauth',
      CHART_DIR,
      '--namespace',
      opts.namespace ?? 'meshauth',
      '--include-crds',
      '--kube-version',
      'v1.37.2',
      '--values',
      file,
    ]);
    if (r.code !== 0) throw new Error(`helm template failed (${r.code}): ${r.stderr}`);
    return parseAllDocuments(r.stdout)
      .map((d) => {
        if (d.errors.length > 0) throw new Error(`helm template output: ${d.errors[0]?.message}`);
        return d.toJS() as K8sObject | null;
      })
      .filter((o): o is K8sObject => o !== null);
  });
}

/** The one object of `kind` (and `name`, when given) among `objs`; throws when not exactly one. */
export function only(objs: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1)
    throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, got ${found.length}`);
  return found[0] as K8sObject;
}
