/** Access to the run's shared private Redis (started by ./global-redis.ts). */
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';

/** URL of the private Redis started for this test run; never the system one on 6379. */
export function testRedisUrl(): string {
  return inject('redisUrl');
}

/**
 * A key prefix no other test (file) will use, e.g. `t:rooms:3f9a1c0b2e7d`. All test files share
 * one Redis, so each must keep to its own keys instead of flushing the database.
 */
export function uniquePrefix(name: string): string {
  return `t:${name}:${randomBytes(6).toString('hex')}`;
}
