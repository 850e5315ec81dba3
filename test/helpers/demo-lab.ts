import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mountBpffs, type Cluster } from '../../demo/cluster.js';
import { NetnsLab } from './netns.js';

/** What a demo cluster is built in: namespaces, a work directory and a bpffs mounted in it. */
export interface DemoLabParts {
  lab: NetnsLab;
  workDir: string;
  /** The bpffs mount point (workDir/bpffs) for the daemons' pins. */
  bpffs: string;
  /** Hands the cluster to teardown (which stops its daemons); returns it. */
  own(cluster: Cluster): Cluster;
}

/**
 * Creates a namespace lab and a work directory named after `prefix`, mounts a bpffs in it, and
 * runs `build`. teardown stops the owned cluster, removes the namespaces, unmounts the bpffs and
 * deletes the work directory; it is safe after a failed start. If `build` throws, everything is
 * torn down and the error rethrown.
 */
export async function buildInDemoLab<T extends object>(
  prefix: string,
  build: (parts: DemoLabParts) => Promise<T>,
): Promise<T & { lab: NetnsLab; workDir: string; teardown(): Promise<void> }> {
  const lab = new NetnsLab(prefix);
  const workDir = mkdtempSync(join(tmpdir(), `meshauth-${prefix}-`));
  const bpffs = join(workDir, 'bpffs');
  let unmount: () => void = () => {};
  let cluster: Cluster | undefined;
  const teardown = async (): Promise<void> => {
    await cluster?.stopAll();
    await lab.cleanup();
    unmount();
    rmSync(workDir, { recursive: true, force: true });
  };
  try {
    unmount = mountBpffs(bpffs);
    const own = (c: Cluster): Cluster => (cluster = c);
    const built = await build({ lab, workDir, bpffs, own });
    return { ...built, lab, workDir, teardown };
  } catch (err) {
    await teardown();
    throw err;
  }
}
