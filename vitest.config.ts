import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // isolated-vm asks for --no-node-snapshot on Node 20+; forks give each test file its own process.
    pool: 'forks',
    execArgv: ['--no-node-snapshot'],
    globalSetup: ['test/helpers/global-redis.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
