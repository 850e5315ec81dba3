import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // test/fuzz (fast-check, a fixed few seconds per target; MESHAUTH_FUZZ_SECONDS for longer runs)
    // runs with the rest: see RELIABILITY.md.
    include: ['test/**/*.test.ts'],
    // Integration and e2e tests share kernel state (netns, bpffs, ports): run files one at a time.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
