/**
 * A rollback to an older schema: the current version's `downgrade` runs in the current
 * isolate, the staged older version receives the downgraded records and runs the swap tick.
 * When the downgrade only sets fields, its changes come out as field patches: the staged
 * isolate must get the records with the patches folded in (not as they were before the
 * downgrade), or its world and the committed one part ways. Real isolates, the real swap tick.
 */
import { describe, expect, it } from 'vitest';
import { Unpackr } from 'msgpackr';
import type { GameVersion } from '../../server/patch/versions.ts';
import { silentLogger } from '../../server/ops/logger.ts';
import { StagedVersion } from '../../server/room/staged-version.ts';
import { runSwapTick } from '../../server/room/swap-tick.ts';
import { bundleGame } from '../../server/sandbox/bundler.ts';
import { MsgpackWriter } from '../../server/sandbox/runtime/msgpack.ts';
import { GameSandbox, type TickCall } from '../../server/sandbox/sandbox.ts';
import { CommittedState, stateHash } from '../../server/state/committed-state.ts';
import { pairsOf } from '../../server/state/record-patch.ts';

const LIMITS = { memoryLimitMb: 32, cpuBudgetMs: 1000 };
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

async function version(number: number, schema: number, main: string): Promise<GameVersion> {
  const files = new Map([['main.ts', main]]);
  return { game: 'g', number, schema, description: '', entry: 'main.ts', files, bundle: await bundleGame({ name: 'g', entry: 'main.ts', files }) };
}

function call(tick: number): TickCall {
  const w = new MsgpackWriter();
  w.value([]);
  return { events: w.copyBytes(), seed: 1, tick, nowMs: 1_000_000 + tick * 50, dtSeconds: 0.05, runInit: tick === 1 };
}

async function exported(sb: GameSandbox): Promise<Map<string, Uint8Array>> {
  return new Map(pairsOf(unpackr.unpack(await sb.exportRecords()) as (string | Uint8Array)[]));
}

describe('a rollback whose downgrade only sets fields', () => {
  it('hands the staged older version the downgraded records, and its world equals the committed one', async () => {
    // Schema 2 keeps distances in centimetres; schema 1 in metres. The downgrade divides: it
    // sets a field of every player, so its changes are field patches.
    const v2 = await version(2, 2, `
      export function init(world: any) { world.players = { a: { name: 'a', d: 1500 }, b: { name: 'b', d: 250 } }; }
      export function downgrade(world: any, toSchema: number) { for (const id of Object.keys(world.players)) world.players[id].d = world.players[id].d / 100; }
      export function tick(world: any) {}`);
    const v1 = await version(1, 1, `export function tick(world: any) { world.players.a.seen = true; }`);

    const current = await GameSandbox.create(v2.bundle, LIMITS);
    const older = await GameSandbox.create(v1.bundle, LIMITS);
    try {
      const first = await current.tick(call(1));
      if (!first.ok) throw new Error(first.code);
      const committed = new CommittedState(0);
      committed.apply(1, first);
      await older.load(committed.encodeForLoad());

      const staged = new StagedVersion(v1, older, 'rollback', true);
      const ctx = { roomId: 'r', version: v2.bundle.version, fromSchema: 2, current, committed, tickBudgetMs: 1000, migrationBudgetMs: 1000, log: silentLogger() };
      const result = await runSwapTick(staged, call(2), 2, ctx);
      if (!('outcome' in result) || !result.outcome) throw new Error(`the swap tick was refused: ${JSON.stringify(result)}`);
      committed.apply(2, result.outcome);

      const world = await exported(older);
      expect(unpackr.unpack(world.get('players/a')!)).toEqual({ name: 'a', d: 15, seen: true });
      expect(unpackr.unpack(world.get('players/b')!)).toEqual({ name: 'b', d: 2.5 });
      expect(stateHash(world)).toBe(committed.hash());
    } finally {
      current.dispose();
      older.dispose();
    }
  });
});
