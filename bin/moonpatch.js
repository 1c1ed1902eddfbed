#!/usr/bin/env node
// `npx moonpatch ...`: runs the TypeScript command line (cli/moonpatch.ts) through tsx.
import { register } from 'tsx/esm/api';

register();
await import('../cli/moonpatch.ts');
