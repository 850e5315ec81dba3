import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';

/** Where the cgroup v2 hierarchy is mounted (hybrid systems mount it under /sys/fs/cgroup/unified). */
export function cgroup2Root(): string {
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mountPoint, type] = line.split(' ');
    if (type === 'cgroup2' && mountPoint) return mountPoint;
  }
  throw new Error('no cgroup2 hierarchy is mounted');
}

/**
 * Network namespaces for privileged tests. Every namespace and host-side link made through a
 * NetnsLab is removed by cleanup(), which is safe to call more than once and never throws.
 * Names carry a random suffix so concurrent or crashed runs cannot collide.
 */
export class NetnsLab {
  readonly tag: string;
  private readonly namespaces: string[] = [];
  private readonly hostLinks: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private readonly cleanups: Array<() => void | Promise<void>> = [];

  constructor(prefix = 'ma') {
    this.tag = `${prefix}${randomBytes(3).toString('hex')}`;
  }

  /** Creates a namespace named `<tag>-<name>` with loopback up and returns its full name. */
  addNamespace(name: string): string {
    const ns = `${this.tag}-${name}`;
    run('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    this.exec(ns, 'ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Links two namespaces with a veth pair and assigns addresses ("10.0.0.1/24"). */
  link(
    a: { ns: string; ifname: string; addr?: string | string[] },
    b: { ns: string; ifname: string; addr?: string | string[] },
  ): void {
    const tmpA = `v${randomBytes(4).toString('hex')}`;
    const tmpB = `v${randomBytes(4).toString('hex')}`;
    run('ip', ['link', 'add', tmpA, 'type', 'veth', 'peer', 'name', tmpB]);
    this.hostLinks.push(tmpA);
    run('ip', ['link', 'set', tmpA, 'netns', a.ns]);
    run('ip', ['link', 'set', tmpB, 'netns', b.ns]);
    for (const [end, tmp] of [
      [a, tmpA],
      [b, tmpB],
    ] as const) {
      this.exec(end.ns, 'ip', ['link', 'set', tmp, 'name', end.ifname]);
      for (const addr of end.addr === undefined ? [] : Array.isArray(end.addr) ? end.addr : [end.addr]) {
        this.exec(end.ns, 'ip', ['addr', 'add', addr, 'dev', end.ifname]);
      }
      this.exec(end.ns, 'ip', ['link', 'set', end.ifname, 'up']);
    }
  }

  /** Runs a command inside a namespace and returns stdout; throws with stderr on failure. */
  exec(ns: string, cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
    return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
  }

  /**
   * Creates a cgroup v2 directory `<root>/<tag>-<name>` and returns its path; cleanup() kills what
   * is left in it and removes it.
   */
  addCgroup(name: string): string {
    const dir = join(cgroup2Root(), `${this.tag}-${name}`);
    mkdirSync(dir);
    this.onCleanup(() => {
      try {
        for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
      } catch {
        /* already gone */
      }
      for (let i = 0; i < 50; i++) {
        try {
          rmdirSync(dir);
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
          execFileSync('sleep', ['0.05']);
        }
      }
    });
    return dir;
  }

  /** The argv that runs `cmd` in a namespace, optionally from inside a cgroup. */
  argv(ns: string, cmd: string, args: string[], cgroup?: string): [string, string[]] {
    if (!cgroup) return ['ip', ['netns', 'exec', ns, cmd, ...args]];
    // Join the cgroup before `ip netns exec`, which remounts /sys and would hide it.
    return [
      'sh',
      ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, 'ip', 'netns', 'exec', ns, cmd, ...args],
    ];
  }

  /** Starts a long-running process inside a namespace; it is killed by cleanup(). */
  spawn(
    ns: string,
    cmd: string,
    args: string[],
    opts: SpawnOptions & { cgroup?: string } = {},
  ): ChildProcess {
    const { cgroup, ...spawnOpts } = opts;
    const [file, argv] = this.argv(ns, cmd, args, cgroup);
    const child = spawn(file, argv, { stdio: 'pipe', ...spawnOpts });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Registers extra cleanup work (unpinning, removing files); runs before namespaces are deleted. */
  onCleanup(fn: () => void | Promise<void>): void {
    this.cleanups.push(fn);
  }

  async cleanup(): Promise<void> {
    for (const child of [...this.children]) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 2000);
          child.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    }
    this.children.clear();
    for (const fn of this.cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // best effort: keep cleaning
      }
    }
    for (const ns of this.namespaces.splice(0).reverse()) {
      try {
        // kill anything still running inside before deleting the namespace
        const pids = run('ip', ['netns', 'pids', ns]).split(/\s+/).filter(Boolean);
        for (const pid of pids) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
        run('ip', ['netns', 'del', ns]);
      } catch {
        /* already gone */
      }
    }
    for (const link of this.hostLinks.splice(0)) {
      try {
        run('ip', ['link', 'del', link]);
      } catch {
        /* moved into a namespace and gone with it */
      }
    }
  }
}

export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
  try {
    return execFileSync(cmd, args, {
      encoding: 'utf8',
      input: opts.input,
      timeout: opts.timeoutMs ?? 30_000,
      stdio: ['pipe', 'pipe', 'pipe'],
      // bpftool's JSON dump of a map of 100,000 entries is tens of MiB.
      maxBuffer: 256 * 2 ** 20,
    });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(e.stderr || e.stdout || e.message).trim()}`, {
      cause: err,
    });
  }
}

/** True when the process may create namespaces and load BPF (root). */
export function isPrivileged(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}
