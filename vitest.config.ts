import path from 'node:path';
import { defineConfig, type Plugin } from 'vitest/config';
import { instrumentWrites, WRITES_MODULE } from './server/sandbox/instrument-writes.ts';

/**
 * Test files named `*.instrumented.test.ts` get the write rewrite the bundler gives designer
 * scripts (server/sandbox/instrument-writes.ts): their assignments to world objects are journaled
 * as they would be in an isolate, so the journaled world is tested with plain assignments.
 */
function instrumentedTests(): Plugin {
  const writes = path.resolve('server/sandbox/runtime/writes.ts');
  return {
    name: 'moonpatch-instrumented-tests',
    enforce: 'pre',
    resolveId: (id) => (id === WRITES_MODULE ? writes : null),
    transform(code, id) {
      if (!id.endsWith('.instrumented.test.ts')) return null;
      const out = instrumentWrites(id, code);
      if (out === null) throw new Error(`${id} does not parse`);
      return { code: out.code, map: null };
    },
  };
}

export default defineConfig({
  plugins: [instrumentedTests()],
  test: {
    // The engine's tests, and the designers' tests of their games (scripts/tests).
    include: ["test/**/*.test.ts", "scripts/tests/**/*.test.ts"],
    // isolated-vm asks for --no-node-snapshot on Node 20+; forks give each test file its own process.
    pool: 'forks',
    execArgv: ['--no-node-snapshot'],
    globalSetup: ['test/helpers/global-redis.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
