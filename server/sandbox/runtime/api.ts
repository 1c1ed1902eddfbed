/**
 * The module scripts import as 'moonpatch' (the bundler aliases it here). Its types, for
 * designers, are in scripts/moonpatch.d.ts; keep the two in step.
 */
export { random, randomInt, now, currentTick } from './clock.ts';
export { log } from './logs.ts';
