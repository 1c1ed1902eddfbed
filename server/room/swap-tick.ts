/**
 * The swap tick: the first tick a staged version runs, in the staged isolate, as one
 * transaction with whatever the switch needs (see docs/patching.md):
 *   - a patch (or a same-schema rollback): migrate when the schema changes, validate, then
 *     the tick's events and `tick` hook;
 *   - a rollback by replay: the old version, replayed up to the last committed tick, runs the
 *     tick; the commit carries the difference between the world as committed and the replayed
 *     one, then the tick's own changes;
 *   - a rollback to an older schema: the CURRENT isolate runs its `downgrade` (journaled), the
 *     staged older version receives the downgraded records and runs the tick; the commit
 *     carries both.
 * The room commits the outcome like any tick's. On a refusal the room drops the staging and
 * runs this same tick on its current version, so nothing is lost or applied twice.
 */
import type { Logger } from 'pino';
import type { GameSandbox, TickCall, TickOutcome } from '../sandbox/sandbox.ts';
import type { CommittedState } from '../state/committed-state.ts';
import { foldPatch, NO_PATCHES, type RecordChanges, wholeChanges } from '../state/record-patch.ts';
import type { StagedVersion, SwapResult } from './staged-version.ts';

/** Swap ticks that overran the CPU budget and are tried again before a patch is refused. */
const SWAP_OVERRUN_RETRIES = 2;

/** What the swap tick needs of the room. */
export interface SwapTickContext {
  roomId: string;
  /** The version the room runs now (for logs). */
  version: string;
  /** The schema of the room's committed state. */
  fromSchema: number;
  /** The room's current isolate (a downgrade runs there). */
  current: GameSandbox;
  committed: CommittedState;
  tickBudgetMs: number;
  migrationBudgetMs: number;
  log: Logger;
}

/**
 * `outcome`: the tick ran on the staged version (commit it as the swap), or null when the
 * current version should run this tick and the swap be tried again later. `refusal`: the
 * switch failed; the room drops the staging and runs the tick on its current version.
 */
export type SwapTickResult = { outcome: Extract<TickOutcome, { ok: true }> | null } | { refusal: SwapResult & { ok: false } };

export function runSwapTick(staged: StagedVersion, call: TickCall, tick: number, ctx: SwapTickContext): Promise<SwapTickResult> {
  if (staged.replay) return replaySwapTick(staged, call, ctx);
  if (staged.downgrade) return downgradeSwapTick(staged, call, ctx);
  return patchSwapTick(staged, call, tick, ctx);
}

async function patchSwapTick(staged: StagedVersion, call: TickCall, tick: number, ctx: SwapTickContext): Promise<SwapTickResult> {
  await staged.catchUp();
  const migrating = staged.version.schema !== ctx.fromSchema;
  const outcome = await staged.sandbox.tick({
    ...call,
    migrateFrom: migrating ? ctx.fromSchema : undefined,
    budgetMs: ctx.tickBudgetMs + (migrating ? ctx.migrationBudgetMs : 0),
  });
  if (outcome.ok) return { outcome };
  const logFields = { roomId: ctx.roomId, tick, version: ctx.version, toVersion: staged.version.bundle.version };
  // An overrun can be the machine's fault (a busy core stretches the first ticks of a fresh
  // isolate) rather than the patch's: undo it, let the old version take this tick, and try
  // the swap again at the next ones. A patch that really loops overruns every time.
  if (outcome.code === 'CPU_BUDGET_EXCEEDED' && staged.overruns < SWAP_OVERRUN_RETRIES) {
    staged.overruns++;
    const undone = await staged.sandbox.rollback().then(() => true, () => false);
    if (undone) {
      ctx.log.warn({ ...logFields, attempt: staged.overruns }, 'swap tick overran its budget; the old version runs this tick and the swap is tried again');
      return { outcome: null };
    }
  }
  const inMigration = outcome.thrown?.name.startsWith('migration: ') ?? false;
  ctx.log.warn({ ...logFields, code: outcome.code, err: outcome.thrown ?? undefined }, 'patch refused at the swap tick; the room stays on its version');
  return {
    refusal: {
      ok: false,
      roomId: ctx.roomId,
      stage: inMigration ? 'migrate' : 'tick',
      code: outcome.thrown?.code === 'STATE_INVALID_VALUE' ? 'STATE_INVALID_VALUE' : outcome.code,
      message: outcome.thrown ? `${outcome.thrown.name}: ${outcome.thrown.message}` : outcome.code,
      stack: outcome.thrown?.stack,
    },
  };
}

async function replaySwapTick(staged: StagedVersion, call: TickCall, ctx: SwapTickContext): Promise<SwapTickResult> {
  const replay = staged.replay!;
  try {
    await staged.catchUp();
  } catch (e) {
    return refused(ctx, 'tick', 'ENGINE_ERROR', `replay failed: ${(e as Error).message}`);
  }
  if (replay.replayedTo !== ctx.committed.tick) {
    return refused(ctx, 'tick', 'ENGINE_ERROR', `replay reached tick ${replay.replayedTo}, not ${ctx.committed.tick}`);
  }
  const outcome = await staged.sandbox.tick(call);
  if (!outcome.ok) return scriptRefusal(ctx, 'tick', outcome);
  const diff = replay.diffFrom(ctx.committed.records);
  staged.note = ` (replayed ${replay.point.ticks.length} ticks on the old version${replay.failedTicks ? `, ${replay.failedTicks} of them failed there and were skipped` : ''})`;
  return { outcome: { ...outcome, ...mergeChanges(ctx.committed, [{ ...diff, patches: NO_PATCHES }, outcome]), writes: outcome.writes + diff.sets.length + diff.dels.length } };
}

async function downgradeSwapTick(staged: StagedVersion, call: TickCall, ctx: SwapTickContext): Promise<SwapTickResult> {
  const down = await ctx.current.tick({ ...call, downgradeTo: staged.version.schema, budgetMs: ctx.tickBudgetMs + ctx.migrationBudgetMs });
  if (!down.ok) {
    return refused(ctx, 'downgrade', down.thrown?.code ?? down.code, down.thrown ? down.thrown.message : down.code, down.thrown?.stack);
  }
  // The downgrade's patches are of the committed records, which do not have them yet (they
  // commit with this tick): fold them in before the staged isolate takes the records.
  staged.noteCommitted({ ...wholeChanges(down, ctx.committed), patches: NO_PATCHES }, ctx.committed);
  await staged.catchUp();
  const outcome = await staged.sandbox.tick(call);
  if (!outcome.ok) {
    await ctx.current.rollback();
    return scriptRefusal(ctx, 'tick', outcome);
  }
  // One commit: the downgrade's records, then the tick's on top.
  return { outcome: { ...outcome, ...mergeChanges(ctx.committed, [down, outcome]), writes: outcome.writes + down.writes } };
}

function refused(ctx: SwapTickContext, stage: 'tick' | 'downgrade', code: string, message: string, stack?: string): SwapTickResult {
  return { refusal: { ok: false, roomId: ctx.roomId, stage, code, message, ...(stack !== undefined ? { stack } : {}) } };
}

function scriptRefusal(ctx: SwapTickContext, stage: 'tick', outcome: Extract<TickOutcome, { ok: false }>): SwapTickResult {
  return refused(ctx, stage, outcome.code, outcome.thrown ? `${outcome.thrown.name}: ${outcome.thrown.message}` : outcome.code, outcome.thrown?.stack);
}

/**
 * Several changes to the committed records, later ones winning, as one set of sets and deletes.
 * Without field patches: a tick's patches describe changes from the world that tick started
 * with, which is not what players have when earlier changes are merged in front of it, so
 * each is folded into its record (as the changes before it left it) and the record goes whole.
 */
function mergeChanges(committed: CommittedState, changes: RecordChanges[]): { sets: [string, Uint8Array][]; dels: string[]; patches: [string, Uint8Array][] } {
  const merged = new Map<string, Uint8Array | null>();
  for (const c of changes) {
    for (const [k, v] of c.sets) merged.set(k, v);
    for (const k of c.dels) merged.set(k, null);
    for (const [k, patch] of c.patches) {
      const current = merged.has(k) ? merged.get(k) : committed.get(k);
      if (current) merged.set(k, foldPatch(current, patch));
    }
  }
  const sets: [string, Uint8Array][] = [];
  const dels: string[] = [];
  for (const [k, v] of merged) {
    if (v) sets.push([k, v]);
    else dels.push(k);
  }
  return { sets, dels, patches: [] };
}
