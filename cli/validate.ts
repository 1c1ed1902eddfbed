/**
 * `moonpatch validate <version>`: check a patch before it goes live, on this machine.
 *
 * Type-checks the version's scripts against the script API, bundles them, builds a world by
 * playing the version before it (bots joining and moving), then runs the swap tick (migration
 * and validation) and more ticks on the new version in a scratch isolate. Reports errors with
 * stacks mapped to the designer's files, and what the migration changed in the state.
 */
import path from 'node:path';
import { Unpackr } from 'msgpackr';
import ts from 'typescript';
import type { GameVersion } from '../server/patch/versions.ts';
import { MsgpackWriter } from '../server/sandbox/runtime/msgpack.ts';
import { GameSandbox, type TickOutcome } from '../server/sandbox/sandbox.ts';

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export interface ValidateReport {
  ok: boolean;
  version: number;
  from: number;
  typeErrors: string[];
  /** Failures with the stage they happened in. */
  failures: { stage: 'typecheck' | 'world' | 'migrate' | 'tick'; code: string; message: string; stack?: string }[];
  migration: { ran: boolean; recordsChanged: number; recordsDeleted: number; fieldsAdded: string[]; fieldsRemoved: string[] } | null;
  ticksRun: number;
}

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

/**
 * Play `from` with `players` bots for `warmTicks`, then swap to `to` (migrating when the
 * schema changes) and play `ticks` more. Inputs are arena-style moves; other games ignore them.
 */
export async function validateVersion(from: GameVersion, to: GameVersion, apiDtsText: string, opts: { players: number; ticks: number }): Promise<ValidateReport> {
  const report: ValidateReport = { ok: false, version: to.number, from: from.number, typeErrors: [], failures: [], migration: null, ticksRun: 0 };
  report.typeErrors = typeCheck(to, apiDtsText);
  const limits = { memoryLimitMb: 128, cpuBudgetMs: 5000 };
  const w = new MsgpackWriter(1 << 20);
  const moves = (t: number) => Array.from({ length: opts.players }, (_, i) => [3, `bot${i}`, `bot${i}`, t, { move: [Math.cos(t / 10 + i) > 0 ? 1 : -1, Math.sin(t / 7 + i) > 0 ? 1 : -1] }]);
  const call = (t: number, list: unknown[], extra: Partial<Parameters<GameSandbox['tick']>[0]> = {}) => ({ events: events(w, list), seed: 12345, tick: t, nowMs: 1_700_000_000_000 + t * 50, dtSeconds: 0.05, runInit: t === 1, ...extra });

  const old = await GameSandbox.create(from.bundle, limits);
  let tick = 1;
  try {
    const first = await old.tick(call(tick, Array.from({ length: opts.players }, (_, i) => [1, `bot${i}`, `bot${i}`, 0, null])));
    if (!first.ok) report.failures.push(failure('world', first));
    for (tick = 2; tick <= 40 && report.failures.length === 0; tick++) {
      const out = await old.tick(call(tick, moves(tick)));
      if (!out.ok) report.failures.push(failure('world', out));
    }
    if (report.failures.length > 0) return report;
    const before = await old.exportRecords();
    const fresh = await GameSandbox.create(to.bundle, limits);
    try {
      await fresh.load(before);
      const migrating = to.schema !== from.schema;
      const swap = await fresh.tick(call(tick, moves(tick), { migrateFrom: migrating ? from.schema : undefined }));
      if (!swap.ok) {
        report.failures.push(failure(swap.thrown?.name.startsWith('migration: ') ? 'migrate' : 'tick', swap));
        return report;
      }
      const beforeRecs = decodeRecords(before);
      const afterRecs = decodeRecords(await fresh.exportRecords());
      const [fb, fa] = [fieldsOf(beforeRecs), fieldsOf(afterRecs)];
      report.migration = {
        ran: migrating,
        recordsChanged: swap.sets.length,
        recordsDeleted: swap.dels.length,
        fieldsAdded: [...fa].filter((f) => !fb.has(f)).sort(),
        fieldsRemoved: [...fb].filter((f) => !fa.has(f)).sort(),
      };
      for (let i = 0; i < opts.ticks; i++) {
        tick++;
        const out = await fresh.tick(call(tick, moves(tick)));
        report.ticksRun++;
        if (!out.ok) {
          report.failures.push(failure('tick', out));
          break;
        }
      }
    } finally {
      fresh.dispose();
    }
  } finally {
    old.dispose();
  }
  report.ok = report.failures.length === 0 && report.typeErrors.length === 0;
  return report;
}

export const API_DTS_PATH = path.join(import.meta.dirname, '..', 'scripts', 'moonpatch.d.ts');
