import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // test/fuzz (fast-check, a fixed few seconds per target; MESHAUTH_FUZZ_SECONDS for longer runs)
    // runs with the rest: see RELIABILITY.md. So does test/faults (real daemons in network
    // namespaces: crashes, full maps and disks, load; the soak runs MESHAUTH_SOAK_MINUTES, 3 by default).
    include: ['test/**/*.test.ts'],
    // Integration and e2e tests share kernel state (netns, bpffs, ports): run files one at a time.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
