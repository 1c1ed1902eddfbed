/**
 * `moonpatch validate <version>`: check a patch before it goes live, on this machine.
 *
 * Type-checks the version's scripts against the script API, bundles them, builds a world by
 * playing the version before it (bots joining and moving) or takes a real one (a live room's
 * committed world, or a snapshot saved from one), then runs the swap tick (migration and
 * validation) and more ticks on the new version in a scratch isolate, and has the bots leave at
 * the end, so that every player hook runs. Reports errors with stacks mapped to the designer's
 * files, what the migration changed in the state, and how many of the bots' joins, inputs and
 * leaves each version's hooks refused: a version that refuses clearly more than the one before
 * (the game's `verifyRefusalMarginPercent`, as the live verification window judges) fails. And
 * what its ticks cost in CPU on this machine against the version before's: a version whose
 * ticks' 99th percentile passes the game's `cpuBudgetMs` fails (live, such ticks are undone).
 */
import path from 'node:path';
import { Unpackr } from 'msgpackr';
import ts from 'typescript';
import { nearestRank } from '../server/ops/percentile.ts';
import { baselineShare, refusalsTooHigh } from '../server/patch/refusals.ts';
import type { GameVersion } from '../server/patch/versions.ts';
import { MsgpackWriter } from '../server/sandbox/runtime/msgpack.ts';
import { GameSandbox, type TickOutcome } from '../server/sandbox/sandbox.ts';
import { CommittedState } from '../server/state/committed-state.ts';

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export interface ValidateReport {
  ok: boolean;
  version: number;
  /** The version the world came from (null: a snapshot of a version this machine does not have). */
  from: number | null;
  /** Where the world came from: "bots", or the room and tick of a snapshot. */
  world: string;
  typeErrors: string[];
  /** Failures with the stage they happened in. */
  failures: { stage: 'typecheck' | 'world' | 'migrate' | 'tick' | 'hooks' | 'budget' | 'rollback'; code: string; message: string; stack?: string }[];
  migration: { ran: boolean; recordsChanged: number; recordsDeleted: number; fieldsAdded: string[]; fieldsRemoved: string[] } | null;
  /**
   * Whether the version can be rolled back across its schema change (null: same schema, a plain
   * swap back). `downgrade`: it exports `downgrade(world, toSchema)`; `played`: the downgrade ran
   * on the migrated world and the version before played {@link ROLLBACK_TICKS} ticks on what it
   * left (null when not tried: no downgrade, or a live room's world of another version).
   */
  rollback: { fromSchema: number; toSchema: number; downgrade: boolean; played: boolean | null } | null;
  ticksRun: number;
  /**
   * The bots' events each player hook of the new version ran after the swap and refused (threw
   * on), with the first refusal; `refusedBefore`: the share the version before refused while
   * building the world (null: not known, a real world's or a hook it did not run).
   */
  hooks: HookReport[];
  /**
   * The isolate CPU of the new version's ticks after the swap, on this machine (the first
   * {@link CPU_WARMUP_TICKS} left out: a fresh isolate is still compiling), and of the version
   * before's while it built the world; null when too few ticks ran to say.
   */
  tickCpuMs: { p50: number; p99: number; max: number; n: number; budgetMs: number; before: { p50: number; p99: number; n: number } | null } | null;
}

/** Ticks the version before plays on a downgraded world (see ValidateReport.rollback). */
export const ROLLBACK_TICKS = 10;

/** A fresh isolate's first ticks compile the hooks: their CPU says nothing of the version's. */
const CPU_WARMUP_TICKS = 5;
/** Ticks measured before their CPU is judged against the budget. */
const MIN_CPU_TICKS = 10;

const round2 = (x: number) => Math.round(x * 100) / 100;

function cpuSummary(ms: number[]): { p50: number; p99: number; max: number; n: number } {
  const sorted = [...ms].sort((a, b) => a - b);
  return { p50: round2(nearestRank(sorted, 0.5)), p99: round2(nearestRank(sorted, 0.99)), max: round2(sorted[sorted.length - 1]!), n: sorted.length };
}

export type HookName = 'join' | 'input' | 'leave';

export interface HookReport {
  hook: HookName;
  events: number;
  refused: number;
  refusedBefore: number | null;
  first?: { message: string; stack?: string };
}

/** Event kinds on the wire (runtime/entry.ts) to the hook that runs them. */
const HOOK_OF_KIND: Record<number, HookName> = { 1: 'join', 2: 'leave', 3: 'input' };

type HookTallies = Record<HookName, { events: number; refused: number; first?: { message: string; stack?: string } }>;

const newTallies = (): HookTallies => ({ join: { events: 0, refused: 0 }, input: { events: 0, refused: 0 }, leave: { events: 0, refused: 0 } });

/** Count a committed tick's events and refusals by hook. */
function tallyHooks(t: HookTallies, list: unknown[][], out: Extract<TickOutcome, { ok: true }>): void {
  for (const ev of list) {
    const hook = HOOK_OF_KIND[ev[0] as number];
    if (hook) t[hook].events++;
  }
  for (const r of out.rejections) {
    const hook = HOOK_OF_KIND[list[r.index]?.[0] as number];
    if (!hook) continue;
    t[hook].refused++;
    t[hook].first ??= { message: r.thrown.message, stack: r.thrown.stack || undefined };
  }
}

const percent = (share: number) => `${Math.round(share * 100)}%`;

/** Type-check a version's files (in memory) with the script API, as the editor would. */
export function typeCheck(version: GameVersion, apiDts: string): string[] {
  const root = '/moonpatch-validate/';
  const files = new Map<string, string>();
  for (const [p, text] of version.files) files.set(root + p, text);
  files.set(root + 'moonpatch.d.ts', apiDts);
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ['lib.es2022.d.ts'],
    types: [],
    strict: true,
    noEmit: true,
    isolatedModules: true,
  };
  const host = ts.createCompilerHost(options);
  const read = host.readFile.bind(host);
  host.readFile = (f) => files.get(f) ?? read(f);
  host.fileExists = (f) => files.has(f) || ts.sys.fileExists(f);
  host.directoryExists = (d) => root.startsWith(d.endsWith('/') ? d : d + '/') || d.startsWith(root) || ts.sys.directoryExists(d);
  host.realpath = (p) => p;
  const getSource = host.getSourceFile.bind(host);
  host.getSourceFile = (f, lang, onError) => {
    const text = files.get(f);
    return text !== undefined ? ts.createSourceFile(f, text, lang) : getSource(f, lang, onError);
  };
  const program = ts.createProgram([...files.keys()].filter((f) => /\.(ts|mts)$/.test(f)), options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const msg = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (!d.file || d.start === undefined) return msg;
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
    return `${d.file.fileName.replace(root, '')}:${line + 1}:${character + 1}: ${msg}`;
  });
}

function events(w: MsgpackWriter, list: unknown[]): Uint8Array {
  w.reset();
  w.value(list);
  return w.bytes().slice();
}

function failure(stage: ValidateReport['failures'][number]['stage'], out: Extract<TickOutcome, { ok: false }>) {
  return { stage, code: out.thrown?.code === 'STATE_INVALID_VALUE' ? 'STATE_INVALID_VALUE' : out.code, message: out.thrown?.message ?? out.code, stack: out.thrown?.stack };
}

function fieldsOf(records: Map<string, unknown>): Set<string> {
  const fields = new Set<string>();
  for (const [key, v] of records) {
    const table = key.includes('/') ? key.slice(0, key.indexOf('/')) : key;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) for (const f of Object.keys(v)) fields.add(`${table}.${f}`);
  }
  return fields;
}

function decodeRecords(flat: Uint8Array): Map<string, unknown> {
  const arr = unpackr.unpack(flat) as (string | Uint8Array)[];
  const out = new Map<string, unknown>();
  for (let i = 0; i < arr.length; i += 2) out.set(arr[i] as string, unpackr.unpack(arr[i + 1] as Uint8Array));
  return out;
}

/** A real world to validate against: a live room's committed records (see RoomManager.snapshot). */
export interface StartWorld {
  /** Record key -> msgpack bytes. */
  records: Map<string, Uint8Array>;
  schema: number;
  /** The version that wrote it, when this machine has it. */
  versionNumber: number | null;
  tick: number;
  /** Engine clock at the snapshot (ms): the ticks after it run on from there. */
  nowMs: number;
  /** For the report: "room arena-1 at tick 5120". */
  label: string;
}

const BOT_JOINS = (players: number) => Array.from({ length: players }, (_, i) => [1, `bot${i}`, `bot${i}`, 0, null]);
const BOT_LEAVES = (players: number) => Array.from({ length: players }, (_, i) => [2, `bot${i}`, `bot${i}`, 0, null]);

/**
 * Swap to `to` (migrating when the schema changes) from a world, and play `ticks` more. The
 * world is `opts.start` when given (a live room's; bots then join it on the tick after the swap,
 * so the new version's join runs on migrated state), else built by playing `from` with `players` bots.
 * Inputs are arena-style moves; other games ignore them.
 */
export async function validateVersion(
  from: GameVersion,
  to: GameVersion,
  apiDtsText: string,
  opts: { players: number; ticks: number; start?: StartWorld; refusalMarginPercent?: number; cpuBudgetMs?: number },
): Promise<ValidateReport> {
  const start = opts.start;
  const report: ValidateReport = { ok: false, version: to.number, from: start ? start.versionNumber : from.number, world: start ? start.label : 'bots', typeErrors: [], failures: [], migration: null, rollback: null, ticksRun: 0, hooks: [], tickCpuMs: null };
  const hooksBefore: HookTallies | null = start ? null : newTallies();
  const hooksAfter = newTallies();
  const cpuBefore: number[] = [];
  const cpuAfter: number[] = [];
  report.typeErrors = typeCheck(to, apiDtsText);
  const limits = { memoryLimitMb: 128, cpuBudgetMs: 5000 };
  const w = new MsgpackWriter(1 << 20);
  const moves = (t: number) => Array.from({ length: opts.players }, (_, i) => [3, `bot${i}`, `bot${i}`, t, { move: [Math.cos(t / 10 + i) > 0 ? 1 : -1, Math.sin(t / 7 + i) > 0 ? 1 : -1] }]);
  const nowBase = start ? start.nowMs - start.tick * 50 : 1_700_000_000_000;
  const call = (t: number, list: unknown[], extra: Partial<Parameters<GameSandbox['tick']>[0]> = {}) => ({ events: events(w, list), seed: 12345, tick: t, nowMs: nowBase + t * 50, dtSeconds: 0.05, runInit: t === 1 && !start, ...extra });

  let before: Uint8Array;
  let fromSchema: number;
  let tick: number;
  if (start) {
    if (start.schema > to.schema) {
      report.failures.push({ stage: 'world', code: 'SNAPSHOT_NEWER', message: `the world is at schema ${start.schema}, newer than v${to.number}'s schema ${to.schema}: validate a later version` });
      return report;
    }
    before = new CommittedState(start.tick, start.records).encodeForLoad();
    fromSchema = start.schema;
    tick = start.tick + 1;
  } else {
    const built = await buildWorld(from, limits, call, moves, opts.players, report, hooksBefore!, cpuBefore);
    if (!built) return report;
    ({ before, tick } = built);
    fromSchema = from.schema;
  }
  const fresh = await GameSandbox.create(to.bundle, limits);
  try {
    try {
      await fresh.load(before);
    } catch (e) {
      report.failures.push({ stage: 'world', code: 'BAD_SNAPSHOT', message: `the world could not be loaded: ${(e as Error).message}` });
      return report;
    }
    const migrating = to.schema !== fromSchema;
    // On a real world the swap tick runs with no events, so the report's diff is the migration's
    // (and the tick hook's) alone; the bots join on the tick after it, where the new
    // version's join meets migrated state.
    const swapEvents = start ? [] : moves(tick);
    const swap = await fresh.tick(call(tick, swapEvents, { migrateFrom: migrating ? fromSchema : undefined }));
    if (!swap.ok) {
      report.failures.push(failure(swap.thrown?.name.startsWith('migration: ') ? 'migrate' : 'tick', swap));
      return report;
    }
    const beforeRecs = decodeRecords(before);
    const migrated = await fresh.exportRecords();
    const afterRecs = decodeRecords(migrated);
    const [fb, fa] = [fieldsOf(beforeRecs), fieldsOf(afterRecs)];
    report.migration = {
      ran: migrating,
      recordsChanged: swap.sets.length + swap.patches.length,
      recordsDeleted: swap.dels.length,
      fieldsAdded: [...fa].filter((f) => !fb.has(f)).sort(),
      fieldsRemoved: [...fb].filter((f) => !fa.has(f)).sort(),
    };
    for (let i = 0; i <= opts.ticks; i++) {
      tick++;
      // The ticks asked for, then one where every bot leaves.
      const list = i === opts.ticks ? BOT_LEAVES(opts.players) : start && i === 0 ? BOT_JOINS(opts.players) : moves(tick);
      const out = await fresh.tick(call(tick, list));
      if (i < opts.ticks) report.ticksRun++;
      if (!out.ok) {
        report.failures.push(failure('tick', out));
        break;
      }
      tallyHooks(hooksAfter, list as unknown[][], out);
      if (i >= CPU_WARMUP_TICKS && i < opts.ticks) cpuAfter.push(out.cpuMs);
    }
    judgeHooks(report, hooksAfter, hooksBefore, opts.refusalMarginPercent ?? 25);
    judgeCpu(report, cpuAfter, cpuBefore, opts.cpuBudgetMs ?? 20);
    if (migrating) {
      // The version before plays a downgraded world only if it is the version that wrote it.
      const back = !start || start.versionNumber === from.number ? from : null;
      report.rollback = await checkRollback(to, back, fromSchema, migrated, fresh.hooks.includes('downgrade'), limits, call, moves, tick + 1, report);
    }
  } finally {
    fresh.dispose();
  }
  report.ok = report.failures.length === 0 && report.typeErrors.length === 0;
  return report;
}

/**
 * The hooks' report, and a failure for each hook that refused clearly more of the bots' events
 * than the version before did (none refused, when that is not known).
 */
function judgeHooks(report: ValidateReport, after: HookTallies, before: HookTallies | null, marginPercent: number): void {
  for (const hook of ['join', 'input', 'leave'] as const) {
    const now = after[hook];
    const was = before && before[hook].events > 0 ? before[hook] : null;
    const refusedBefore = was ? baselineShare(was) : 0;
    report.hooks.push({ hook, events: now.events, refused: now.refused, refusedBefore: was ? refusedBefore : null, ...(now.first ? { first: now.first } : {}) });
    if (!refusalsTooHigh({ events: now.events, refused: now.refused, refusedBefore }, marginPercent)) continue;
    report.failures.push({
      stage: 'hooks',
      code: 'HOOK_REFUSALS',
      message: `the ${hook} hook refused ${now.refused} of ${now.events} of the bots' ${hook}s (${percent(now.refused / now.events)}; ${was ? `the version before ${percent(refusedBefore)}` : 'none expected'}, margin ${marginPercent} points): ${now.first?.message ?? ''}`,
      stack: now.first?.stack,
    });
  }
}

/** The ticks' CPU in the report, and a failure when their 99th percentile passes the budget. */
function judgeCpu(report: ValidateReport, after: number[], before: number[], budgetMs: number): void {
  if (after.length < MIN_CPU_TICKS) return;
  const now = cpuSummary(after);
  const was = before.length >= MIN_CPU_TICKS ? cpuSummary(before) : null;
  report.tickCpuMs = { ...now, budgetMs, before: was && { p50: was.p50, p99: was.p99, n: was.n } };
  if (now.p99 <= budgetMs) return;
  report.failures.push({
    stage: 'budget',
    code: 'CPU_BUDGET',
    message: `the ticks used ${now.p99} ms of CPU at the 99th percentile on this machine (median ${now.p50} ms${was ? `; the version before ${was.p50} / ${was.p99} ms` : ''}), over the game's cpuBudgetMs of ${budgetMs}: live, such ticks are undone and their inputs refused (CPU_BUDGET_EXCEEDED)`,
  });
}

/**
 * Can `to` be rolled back across its schema change? Without a `downgrade` only by replaying the
 * ticks since its swap (docs/patching.md), which ops should know before pushing. With one: run
 * it on the migrated world, as a rollback's swap tick does, and let `back` (the version before)
 * play that world; a downgrade that throws, or leaves a world the version before cannot play,
 * is a failure now rather than in a rollback on a live room.
 */
async function checkRollback(
  to: GameVersion,
  back: GameVersion | null,
  fromSchema: number,
  migrated: Uint8Array,
  hasDowngrade: boolean,
  limits: { memoryLimitMb: number; cpuBudgetMs: number },
  call: (t: number, list: unknown[], extra?: Partial<Parameters<GameSandbox['tick']>[0]>) => Parameters<GameSandbox['tick']>[0],
  moves: (t: number) => unknown[],
  tick: number,
  report: ValidateReport,
): Promise<NonNullable<ValidateReport['rollback']>> {
  const result = { fromSchema: to.schema, toSchema: fromSchema, downgrade: hasDowngrade, played: null as boolean | null };
  if (!hasDowngrade || !back) return result;
  const fail = (code: string, message: string, stack?: string) => {
    report.failures.push({ stage: 'rollback', code, message, stack });
    result.played = false;
    return result;
  };
  const current = await GameSandbox.create(to.bundle, limits);
  let downgraded: Uint8Array;
  try {
    await current.load(migrated);
    const down = await current.tick(call(tick, [], { downgradeTo: fromSchema }));
    if (!down.ok) return fail(down.thrown?.code ?? down.code, `downgrade(world, ${fromSchema}) failed: ${down.thrown?.message ?? down.code}`, down.thrown?.stack);
    downgraded = await current.exportRecords();
  } finally {
    current.dispose();
  }
  const older = await GameSandbox.create(back.bundle, limits);
  try {
    await older.load(downgraded);
    for (let i = 0; i < ROLLBACK_TICKS; i++) {
      const out = await older.tick(call(tick + i, moves(tick + i)));
      if (!out.ok) return fail(out.thrown?.code ?? out.code, `v${back.number} failed on the downgraded world: ${out.thrown?.message ?? out.code}`, out.thrown?.stack);
    }
  } finally {
    older.dispose();
  }
  result.played = true;
  return result;
}

/** Play `from` with bots for 40 ticks; the world it leaves, or null (failures in the report). */
async function buildWorld(
  from: GameVersion,
  limits: { memoryLimitMb: number; cpuBudgetMs: number },
  call: (t: number, list: unknown[]) => Parameters<GameSandbox['tick']>[0],
  moves: (t: number) => unknown[],
  players: number,
  report: ValidateReport,
  hooks: HookTallies,
  cpu: number[],
): Promise<{ before: Uint8Array; tick: number } | null> {
  const old = await GameSandbox.create(from.bundle, limits);
  try {
    let tick = 1;
    const joins = BOT_JOINS(players);
    const first = await old.tick(call(tick, joins));
    if (!first.ok) report.failures.push(failure('world', first));
    else tallyHooks(hooks, joins, first);
    for (tick = 2; tick <= 40 && report.failures.length === 0; tick++) {
      const list = moves(tick);
      const out = await old.tick(call(tick, list));
      if (!out.ok) report.failures.push(failure('world', out));
      else {
        tallyHooks(hooks, list as unknown[][], out);
        if (tick > CPU_WARMUP_TICKS) cpu.push(out.cpuMs);
      }
    }
    if (report.failures.length > 0) return null;
    return { before: await old.exportRecords(), tick };
  } finally {
    old.dispose();
  }
}

export const API_DTS_PATH = path.join(import.meta.dirname, '..', 'scripts', 'moonpatch.d.ts');
