#!/usr/bin/env node
// `npx moonpatch ...`: runs the TypeScript command line (cli/moonpatch.ts) through tsx.
// isolated-vm asks for --no-node-snapshot on Node 20+: re-run with it when it is missing.
import { spawnSync } from 'node:child_process';

if (!process.execArgv.includes('--no-node-snapshot')) {
  const r = spawnSync(process.execPath, ['--no-node-snapshot', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
const { register } = await import('tsx/esm/api');
register();
await import('../cli/moonpatch.ts');
