/**
 * The designers' command line: `npx moonpatch <command>`. `moonpatch help` lists the commands;
 * what each takes is in cli/help.ts, which is also where an option has to be declared before a
 * command accepts it.
 *
 * Exit codes: 0 done, 1 refused or invalid, 2 usage or connection error.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateSigningKey, signPatch } from '../server/patch/package.ts';
import { LOCAL_SIGNING_KEY_FILE } from '../server/patch/local-signing-key.ts';
import { parsePatchManifest, type PatchManifest } from '../server/patch/manifest.ts';
import { readGameFiles } from '../server/sandbox/game-files.ts';
import { parseSnapshot, type ParsedSnapshot } from '../server/state/room-snapshot.ts';
import { acceptedOptions, closest, COMMAND_HELP, commandText, isCommand, overviewText, SWITCHES, type CommandName } from './help.ts';
import type { StartWorld } from './validate.ts';

/** A mistake in how the command was called: printed with `moonpatch: ` and exit code 2. */
class UsageError extends Error {}

const ROOT = path.join(import.meta.dirname, '..');

interface Args {
  _: string[];
  flags: Map<string, string[]>;
}

/**
 * `push 2 --room a --room b --watch` -> { _: ['push', '2'], flags: room=[a, b], watch=[true] }.
 * Switches (help.ts SWITCHES) never take a value; any other option takes the next argument,
 * and one without a value is a usage error (checkArgs) rather than the string "true".
 */
function parse(argv: string[]): Args {
  const out: Args = { _: [], flags: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h') {
      out.flags.set('help', ['true']);
      continue;
    }
    if (!a.startsWith('--')) {
      out._.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq > 2 ? a.slice(2, eq) : a.slice(2);
    let value: string;
    if (eq > 2) value = a.slice(eq + 1);
    else if (SWITCHES.has(name)) value = 'true';
    else {
      const next = argv[i + 1];
      // Reported by checkArgs, after an unknown option is (`--jsno` is a typo, not a missing value).
      if (next === undefined || next.startsWith('--')) value = MISSING;
      else {
        value = next;
        i++;
      }
    }
    out.flags.set(name, [...(out.flags.get(name) ?? []), value]);
  }
  return out;
}

/** The value of an option given without one. */
const MISSING = '\u0000missing';

/** Refuse options the command does not take (a typo would otherwise be ignored) and extra arguments. */
function checkArgs(name: CommandName, a: Args): void {
  const accepted = acceptedOptions(name);
  for (const f of a.flags.keys()) {
    if (accepted.has(f)) continue;
    const guess = closest(f, accepted);
    throw new UsageError(`${name} does not take --${f}${guess ? ` (did you mean --${guess}?)` : ''}; see \`moonpatch help ${name}\``);
  }
  for (const [f, values] of a.flags) if (values.includes(MISSING)) throw new UsageError(`--${f} needs a value; see \`moonpatch help ${name}\``);
  const extra = a._.slice(1 + COMMAND_HELP[name].positionals);
  if (extra.length > 0) {
    // `history arena-1` is the likeliest slip: a room named without its --room.
    const hint = extra.length === 1 && accepted.has('room') && !a.flags.has('room') ? ` (did you mean --room ${extra[0]}?)` : '';
    throw new UsageError(`${name}: unexpected argument${extra.length > 1 ? 's' : ''} ${extra.map((x) => `'${x}'`).join(' ')}${hint}; see \`moonpatch help ${name}\``);
  }
}

const flag = (a: Args, name: string) => a.flags.get(name)?.[0];

/** A whole-number option within [min, max], or undefined when it is not given. */
function intFlag(a: Args, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const raw = flag(a, name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || n < min || n > max) {
    throw new UsageError(`--${name} takes a whole number ${max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`}, not '${raw}'`);
  }
  return n;
}

/** Where a server on this machine keeps its admin token and signing key (its DATA_DIR). */
const LOCAL_DATA_DIR = process.env.DATA_DIR ?? path.join(ROOT, '.data');

function token(a: Args): string {
  const t = flag(a, 'token') ?? process.env.MOONPATCH_ADMIN_TOKEN;
  if (t) return t;
  try {
    return readFileSync(path.join(LOCAL_DATA_DIR, 'admin-token'), 'utf8').trim();
  } catch {
    throw new UsageError('no admin token: pass --token, set MOONPATCH_ADMIN_TOKEN, or run against a local server (it writes .data/admin-token)');
  }
}

async function api(a: Args, method: 'GET' | 'POST' | 'PUT' | 'DELETE', route: string, body?: unknown): Promise<{ status: number; body: any }> {
  const url = (flag(a, 'url') ?? process.env.MOONPATCH_URL ?? `http://127.0.0.1:${process.env.PORT ?? 8080}`).replace(/\/$/, '');
  let res: Response;
  try {
    res = await fetch(url + route, {
      method,
      headers: { authorization: `Bearer ${token(a)}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new UsageError(`cannot reach the server at ${url}: ${(e as Error).message}`);
  }
  const parsed = (await res.json()) as any;
  if (res.status === 401) throw new UsageError(`${parsed.code}: ${parsed.msg}`);
  return { status: res.status, body: parsed };
}

function print(a: Args, value: unknown, human: () => void): void {
  if (a.flags.has('json')) console.log(JSON.stringify(value, null, 2));
  else human();
}

function versionArg(a: Args): number {
  const v = Number(a._[1]);
  if (!Number.isInteger(v) || v < 1) throw new UsageError('name the version as a number, e.g. `moonpatch push 2 --room arena-1`');
  return v;
}

/**
 * A patch folder named on the command line (`validate`, `upload`, `push`): its manifest and
 * files. Its game is --game, else the folder's parent's name.
 */
async function patchFolderArg(a: Args, folder: string): Promise<{ manifest: PatchManifest; files: Map<string, string>; game: string; where: string }> {
  const dir = path.resolve(folder);
  const where = path.join(folder, 'patch.json');
  let manifest: PatchManifest;
  try {
    manifest = parsePatchManifest(JSON.parse(readFileSync(path.join(dir, 'patch.json'), 'utf8')), where);
  } catch (e) {
    throw new UsageError(`cannot read ${where}: ${(e as Error).message}`);
  }
  return { manifest, files: await readGameFiles(dir), game: flag(a, 'game') ?? path.basename(path.dirname(dir)), where };
}

async function cmdValidate(a: Args): Promise<number> {
  const what = a._[1];
  // A version number, or a patch folder (validated as it is on disk, on top of the versions before it).
  const folder = what !== undefined && existsSync(path.join(what, 'patch.json')) ? await patchFolderArg(a, what) : undefined;
  if (!folder && what !== undefined && !/^\d+$/.test(what)) {
    throw new UsageError(`validate a version number or a patch folder with its patch.json; ${existsSync(what) ? `${what} has no patch.json` : `there is no ${what}`}`);
  }
  const n = folder ? folder.manifest.version : versionArg(a);
  const players = intFlag(a, 'players', 1, 2000) ?? 50;
  const ticks = intFlag(a, 'ticks', 1, 100_000) ?? 200;
  const start = await startWorld(a);
  const gameName = folder?.game ?? flag(a, 'game') ?? start?.game ?? 'arena';
  if (start && start.game !== gameName) throw new UsageError(`${start.label} is a world of ${start.game}, not ${gameName}`);
  const problems: string[] = [];
  const scripts = flag(a, 'scripts') ?? path.join(ROOT, 'scripts');
  const patches = flag(a, 'patches') ?? path.join(ROOT, 'patches');
  if (!existsSync(path.join(scripts, gameName, 'game.json'))) {
    const games = readdirSync(scripts, { withFileTypes: true }).filter((d) => d.isDirectory() && existsSync(path.join(scripts, d.name, 'game.json'))).map((d) => d.name);
    const guessed = folder && !flag(a, 'game') ? `; a patch folder's game is its parent folder's name (${gameName}) unless --game names it` : '';
    throw new UsageError(`no game ${gameName} in ${scripts} (games there: ${games.join(', ') || 'none'})${guessed}`);
  }
  // Loaded here, not at the top: the bundler and TypeScript take ~1 s to load, which every
  // other command (status, push N, logs...) would pay for nothing.
  const { loadGame } = await import('../server/sandbox/games.ts');
  const { buildPatchVersion } = await import('../server/patch/versions.ts');
  const { API_DTS_PATH, ROLLBACK_TICKS, validateVersion } = await import('./validate.ts');
  const { DEFAULT_SWAP_POINT_LIMITS } = await import('../server/room/replay.ts');
  const game = await loadGame(path.join(scripts, gameName), patches, (_g, folder, e) => problems.push(`${folder}: ${(e as Error).message}`));
  let to = game.versions.find((v) => v.number === n);
  if (folder) {
    const prev = game.versions.find((v) => v.number === n - 1);
    if (!prev) {
      print(a, { ok: false, problems }, () => {
        console.error(`${folder.where}: version ${n} follows version ${n - 1}, which ${gameName} does not have (it has ${game.versions.map((v) => `v${v.number}`).join(', ')})`);
        for (const p of problems) console.error(`  ${p}`);
      });
      return 1;
    }
    try {
      to = await buildPatchVersion(prev, folder.manifest, folder.files, folder.where);
    } catch (e) {
      const problem = (e as Error).message;
      print(a, { ok: false, problems: [problem] }, () => console.error(`${folder.where}: not usable:\n  ${problem}`));
      return 1;
    }
  }
  if (!to) {
    print(a, { ok: false, problems }, () => {
      // A patch that does not build ends the chain there (its problem says why); otherwise there is no such version yet.
      console.error(problems.length ? `version ${n} of ${gameName} is not usable:` : `${gameName} has no version ${n} (it has ${game.versions.map((v) => `v${v.number}`).join(', ')})`);
      for (const p of problems) console.error(`  ${p}`);
    });
    return 1;
  }
  const asked = intFlag(a, 'from', 1);
  const fromNumber = asked ?? n - 1;
  const from = game.versions.find((v) => v.number === fromNumber) ?? game.versions[0]!;
  if (asked !== undefined && from.number !== fromNumber) {
    throw new UsageError(`${gameName} has no version ${fromNumber} to migrate from (it has ${game.versions.map((v) => `v${v.number}`).join(', ')})`);
  }
  if (!a.flags.has('json')) {
    console.log(start
      ? `validating ${gameName} v${to.number} (schema ${to.schema}) against ${start.label} (schema ${start.schema}, ${start.records.size} records)...`
      : `validating ${gameName} v${to.number} (schema ${to.schema}) against a world built by v${from.number} (schema ${from.schema})...`);
  }
  const report = await validateVersion(from, to, readFileSync(API_DTS_PATH, 'utf8'), {
    players,
    ticks,
    start,
    refusalMarginPercent: game.manifest.verifyRefusalMarginPercent,
    cpuBudgetMs: game.manifest.cpuBudgetMs,
  });
  print(a, report, () => {
    for (const e of report.typeErrors) console.log(`type error: ${e}`);
    for (const f of report.failures) console.log(`${f.stage} failed: ${f.code}: ${f.message}${f.stack ? `\n${f.stack}` : ''}`);
    if (report.migration) {
      const m = report.migration;
      // Same schema: no migration ran, and what changed is the swap tick's play.
      console.log(m.ran ? `migration ran: ${m.recordsChanged} records changed, ${m.recordsDeleted} deleted` : `no migration (same schema); the swap tick changed ${m.recordsChanged} records, deleted ${m.recordsDeleted}`);
      if (m.fieldsAdded.length) console.log(`  fields added:   ${m.fieldsAdded.join(', ')}`);
      if (m.fieldsRemoved.length) console.log(`  fields removed: ${m.fieldsRemoved.join(', ')}`);
    }
    if (report.rollback) {
      const r = report.rollback;
      const schemas = `schema ${r.fromSchema} -> ${r.toSchema}`;
      if (!r.downgrade) {
        const limits = DEFAULT_SWAP_POINT_LIMITS;
        console.log(`rollback: v${to.number} exports no downgrade(world, toSchema), so going back (${schemas}) can only replay the ticks since its swap: on the server that swapped it, before a restart, within ${limits.maxTicks.toLocaleString('en-US')} ticks and ${limits.maxEventBytes / 2 ** 20} MB of events (docs/patching.md)`);
      } else if (r.played) console.log(`rollback: downgrade (${schemas}) ran on the migrated world, and v${from.number} played ${ROLLBACK_TICKS} ticks on what it left`);
      else if (r.played === null) console.log(`rollback: downgrade (${schemas}) not tried: the world is not v${from.number}'s`);
    }
    if (report.tickCpuMs) {
      const c = report.tickCpuMs;
      const was = c.before ? `; v${report.from} ${c.before.p50} / ${c.before.p99} ms` : '';
      console.log(`tick CPU on this machine: ${c.p50} / ${c.p99} ms (p50 / p99 of ${c.n} ticks, budget ${c.budgetMs} ms${was})`);
    }
    // What the hooks refused, when they refused anything (a failure above says when it is too much).
    for (const h of report.hooks) {
      if (h.refused === 0) continue;
      const was = h.refusedBefore === null ? '' : `; the version before refused ${Math.round(h.refusedBefore * 100)}%`;
      console.log(`${h.hook}: refused ${h.refused} of ${h.events}${was}; first: ${h.first?.message ?? '?'}`);
    }
    console.log(report.ok ? `ok: v${to.number} ran ${report.ticksRun} ticks after the swap` : 'NOT OK');
  });
  return report.ok ? 0 : 1;
}

/** A room's recent tick times (a server from before the window sends its last tick only). */
const tickTimes = (r: RoomRow) => r.tickMs ?? { p50: r.lastTickMs, p99: r.lastTickMs, n: 1 };
const round2 = (x: number) => Math.round(x * 100) / 100;

/**
 * Rooms, players and tick times per version: the numbers to compare in an A/B. Tick times are
 * the rooms' own medians and 99th percentiles over their last ticks on that version (up to 200
 * each), averaged over the version's rooms; rooms with no tick on it yet are left out.
 */
function byVersion(rows: RoomRow[]): { game: string; version: number | null; rooms: number; players: number; ticks: number; tickP50Ms: number; tickP99Ms: number }[] {
  const groups = new Map<string, RoomRow[]>();
  for (const r of rows) groups.set(`${r.game}@${r.versionNumber}`, [...(groups.get(`${r.game}@${r.versionNumber}`) ?? []), r]);
  return [...groups.values()].map((g) => {
    const timed = g.map(tickTimes).filter((t) => t.n > 0);
    const mean = (f: (t: { p50: number; p99: number }) => number) => (timed.length ? round2(timed.reduce((n, t) => n + f(t), 0) / timed.length) : 0);
    return {
      game: g[0]!.game,
      version: g[0]!.versionNumber,
      rooms: g.length,
      players: g.reduce((n, r) => n + r.players, 0),
      ticks: timed.reduce((n, t) => n + t.n, 0),
      tickP50Ms: mean((t) => t.p50),
      tickP99Ms: mean((t) => t.p99),
    };
  });
}

async function cmdPin(a: Args, pinned: boolean): Promise<number> {
  const room = flag(a, 'room');
  if (!room) throw new UsageError('name the room: --room ID');
  const { status, body } = await api(a, 'POST', `/admin/rooms/${encodeURIComponent(room)}/pin`, { pinned });
  print(a, body, () => console.log(status === 200 ? `${room}: ${pinned ? 'pinned to' : 'unpinned from'} ${body.version}` : `${body.code}: ${body.msg}`));
  return status === 200 ? 0 : 1;
}

async function cmdRelease(a: Args): Promise<number> {
  const room = flag(a, 'room');
  if (!room) throw new UsageError('name the room: --room ID');
  const { status, body } = await api(a, 'POST', `/admin/rooms/${encodeURIComponent(room)}/release`);
  print(a, body, () =>
    console.log(status === 200 ? `${room}: released from quarantine${body.running ? ', running again' : ', but it did not start (see the server log)'}` : `${body.code}: ${body.msg}`),
  );
  return status === 200 && body.running ? 0 : 1;
}

async function cmdCreate(a: Args): Promise<number> {
  const room = flag(a, 'room');
  if (!room) throw new UsageError('name the room: --room ID');
  const game = flag(a, 'game');
  const { status, body } = await api(a, 'POST', '/admin/rooms', game ? { room, game } : { room });
  print(a, body, () => console.log(status === 200 ? `${room}: created (${body.game} v${body.versionNumber}); it starts when a player joins` : `${room}: ${body.code}: ${body.msg}`));
  return status === 200 ? 0 : 1;
}

async function cmdDelete(a: Args): Promise<number> {
  const room = flag(a, 'room');
  if (!room) throw new UsageError('name the room: --room ID');
  // Deleting cannot be undone: ask for it in so many words rather than prompting (scripts run this too).
  if (!a.flags.has('yes')) throw new UsageError(`this deletes ${room}'s world, seats and patch history for good, and closes its players; add --yes to do it`);
  const { status, body } = await api(a, 'DELETE', `/admin/rooms/${encodeURIComponent(room)}`);
  print(a, body, () => console.log(status === 200 ? `${room}: deleted${body.wasRunningHere ? ' (its players were closed with 4007)' : ''}` : `${room}: ${body.code}: ${body.msg}`));
  return status === 200 ? 0 : 1;
}

async function cmdMove(a: Args): Promise<number> {
  const room = flag(a, 'room');
  const to = flag(a, 'to');
  if (!room) throw new UsageError('name the room: --room ID');
  if (!to) throw new UsageError('name the server to move it to: --to NODE (the server column of `moonpatch status`)');
  const { status, body } = await api(a, 'POST', `/admin/rooms/${encodeURIComponent(room)}/move`, { to });
  print(a, body, () => console.log(status === 200 ? `${room}: moved from ${body.from} to ${body.to} at tick ${body.tick}; its players reconnect there` : `${room}: ${body.code}: ${body.msg}`));
  return status === 200 ? 0 : 1;
}

async function cmdStatus(a: Args): Promise<number> {
  // Every server's rooms (each writes its own to Redis every 2 s: server/net/cluster.ts).
  const { body } = await api(a, 'GET', '/admin/rooms?scope=cluster');
  if (a.flags.has('by-version')) {
    const groups = byVersion(body);
    print(a, groups, () => {
      for (const g of groups) console.log(`${g.game} v${g.version ?? '?'}: ${g.rooms} rooms, ${g.players} players, tick p50 ${g.tickP50Ms} ms, p99 ${g.tickP99Ms} ms (the rooms' last ${g.ticks} ticks on it)`);
    });
    return 0;
  }
  print(a, body, () => {
    if (body.length === 0) return console.log('no rooms running');
    // The server column only when there is more than one.
    const servers = new Set(body.map((r: { node: string }) => r.node)).size > 1;
    console.log('room'.padEnd(24) + (servers ? 'server'.padEnd(22) : '') + 'game'.padEnd(10) + 'ver'.padEnd(5) + 'schema'.padEnd(8) + 'players'.padEnd(9) + 'tick'.padEnd(9) + 'p50/p99 ms'.padEnd(12) + 'cpu'.padEnd(7) + 'last patch');
    for (const r of body) {
      const patch = (r.pinned ? 'PINNED ' : '') + (r.lastPatch ? `${r.lastPatch.kind} at tick ${r.lastPatch.tick}` : '-');
      const t = tickTimes(r);
      console.log(String(r.room).padEnd(24) + (servers ? String(r.node).padEnd(22) : '') + String(r.game).padEnd(10) + String(r.versionNumber ?? '?').padEnd(5) + String(r.schema).padEnd(8) + `${r.connected}/${r.players}`.padEnd(9) + String(r.tick).padEnd(9) + `${t.p50.toFixed(1)}/${t.p99.toFixed(1)}`.padEnd(12) + cpuPercent(r).padEnd(7) + patch + (r.degraded ? '  DEGRADED' : ''));
    }
  });
  return 0;
}

async function cmdVersions(a: Args): Promise<number> {
  const { body } = await api(a, 'GET', '/admin/games');
  print(a, body, () => {
    for (const g of body) {
      console.log(g.game);
      for (const v of g.versions) console.log(`  v${v.number}  schema ${v.schema}  ${v.version}  ${v.description}`);
    }
  });
  return 0;
}

/** Names a script version (a bundle hash) for people: `v2 71a38285c8af`. */
type VersionNamer = (hash: string) => string;

/**
 * The versions the server knows, named by their number as designers push them, with the hash
 * that players' frames and the logs carry; a version it no longer lists (a build replaced by
 * dev reload) by its hash alone. Only for human output: --json prints what the server said.
 */
async function versionNamer(a: Args): Promise<VersionNamer> {
  if (a.flags.has('json')) return (hash) => hash;
  const { status, body } = await api(a, 'GET', '/admin/games');
  const numbers = new Map<string, number>();
  if (status === 200) for (const g of body) for (const v of g.versions) numbers.set(v.version, v.number);
  return (hash) => (numbers.has(hash) ? `v${numbers.get(hash)} ${hash}` : hash);
}

function outcomeLine(room: string, r: any, status: number, name: VersionNamer): string {
  if (status !== 200) return `${room}: error ${r.code}: ${r.msg}`;
  if (r.ok) return `${room}: ${name(r.from)} -> ${name(r.to)} at tick ${r.tick} (schema ${r.fromSchema} -> ${r.toSchema}, swap tick ${r.swapTickMs.toFixed(1)} ms)`;
  return `${room}: REFUSED at ${r.stage}: ${r.code}: ${r.message}${r.stack ? `\n${r.stack}` : ''}`;
}

interface RoomRow {
  room: string;
  game: string;
  versionNumber: number | null;
  pinned: boolean;
  players: number;
  lastTickMs: number;
  /** Recent tick times (RoomStatus.tickMs); absent from servers older than it. */
  tickMs?: { p50: number; p99: number; n: number };
  /** Cores used lately (RoomStatus.cpuCores); absent from servers older than it. */
  cpuCores?: number;
  version: string;
}

/** A room's recent CPU as a percentage of one core, or '-' when its server does not say. */
function cpuPercent(r: RoomRow): string {
  return typeof r.cpuCores === 'number' ? `${(r.cpuCores * 100).toFixed(1)}%` : '-';
}

/** A stable pick of `percent`% of the rooms: the same rooms every time for the same ids. */
function canaryPick(rooms: RoomRow[], percent: number): RoomRow[] {
  const score = (id: string) => [...id].reduce((h, ch) => (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0, 7);
  const sorted = [...rooms].sort((x, y) => score(x.room) - score(y.room));
  return sorted.slice(0, Math.max(1, Math.round((sorted.length * percent) / 100)));
}

async function gameRooms(a: Args): Promise<RoomRow[]> {
  const game = flag(a, 'game') ?? 'arena';
  // Pinned rooms stay on their version: every push to "the game's rooms" skips them.
  return ((await api(a, 'GET', '/admin/rooms?scope=cluster')).body as RoomRow[]).filter((r) => r.game === game && !r.pinned);
}

/**
 * Record `n` as the game's target version (or withdraw it): the server patches rooms that are
 * not running now (unloaded while idle, or on a server that was down) when they open again.
 */
async function setGameTarget(a: Args, n: number, withdraw = false): Promise<void> {
  const game = flag(a, 'game') ?? 'arena';
  const route = `/admin/games/${encodeURIComponent(game)}/target${withdraw ? '/withdraw' : ''}`;
  const { status, body } = await api(a, withdraw ? 'POST' : 'PUT', route, { version: n });
  if (status !== 200) throw new UsageError(`could not ${withdraw ? 'withdraw' : 'set'} ${game}'s target version: ${body.code}: ${body.msg}`);
  if (!a.flags.has('json')) console.log(withdraw ? `${game}: v${n} withdrawn; target is now ${body.current === null ? 'none' : `v${body.current}`}` : `${game}: target version is now v${n} (rooms not running get it when they open)`);
}

async function cmdPromote(a: Args): Promise<number> {
  const n = versionArg(a);
  await setGameTarget(a, n);
  const rooms = (await gameRooms(a)).filter((r) => r.versionNumber !== n).map((r) => r.room);
  if (rooms.length === 0) {
    console.log(`every room is on v${n} already`);
    return 0;
  }
  return pushTo(a, n, rooms);
}

async function cmdAbort(a: Args): Promise<number> {
  const n = versionArg(a);
  const rooms = (await gameRooms(a)).filter((r) => r.versionNumber === n).map((r) => r.room);
  const name = await versionNamer(a);
  let failed = 0;
  for (const room of rooms) {
    const { status, body } = await api(a, 'POST', `/admin/rooms/${encodeURIComponent(room)}/rollback`, {});
    if (status !== 200 || !body.ok) failed++;
    if (!a.flags.has('json')) console.log(outcomeLine(room, body, status, name));
  }
  if (!a.flags.has('json')) console.log(rooms.length ? `${rooms.length - failed} of ${rooms.length} rooms rolled back from v${n}` : `no room runs v${n}`);
  await setGameTarget(a, n, true);
  return failed ? 1 : 0;
}

async function cmdPush(a: Args): Promise<number> {
  // A version the servers have, or a patch folder: signed and uploaded first (one command from
  // a designer's edit to the rooms), its game taken from the folder like `upload` does.
  const what = a._[1] ?? '';
  let n: number;
  if (/^\d+$/.test(what)) n = versionArg(a);
  else {
    if (!what || !existsSync(path.join(what, 'patch.json'))) throw new UsageError('push a version number, or a patch folder (with its patch.json), e.g. `moonpatch push patches/arena/005-speed --room arena-1`');
    const { status, body, game } = await uploadPatch(a, what);
    if (status !== 200) {
      print(a, body, () => console.log(`refused: ${body.code}: ${body.msg}`));
      return 1;
    }
    if (!a.flags.has('json')) console.log(`uploaded ${game} v${body.version} (${body.bundle}, patch ${String(body.id).slice(0, 12)})`);
    a.flags.set('game', [game]);
    n = body.version as number;
  }
  let rooms = a.flags.get('room') ?? [];
  if (a.flags.has('all')) {
    await setGameTarget(a, n);
    rooms = (await gameRooms(a)).map((r) => r.room);
  }
  const canary = flag(a, 'canary');
  if (canary) {
    const percent = Number(canary);
    if (!(percent > 0 && percent <= 100)) throw new UsageError('--canary takes a percentage, 1-100');
    rooms = canaryPick((await gameRooms(a)).filter((r) => r.versionNumber !== n), percent).map((r) => r.room);
    if (!a.flags.has('json')) console.log(`canary: ${rooms.length} rooms (${percent}%): ${rooms.join(', ')}; then \`moonpatch promote ${n}\` or \`moonpatch abort ${n}\``);
  }
  if (rooms.length === 0 && a.flags.has('all')) {
    if (!a.flags.has('json')) console.log(`no room of the game is running; each gets v${n} when it opens`);
    return 0;
  }
  if (rooms.length === 0) throw new UsageError('name the rooms: --room ID (repeatable), --all or --canary PERCENT');
  return pushTo(a, n, rooms);
}

async function pushTo(a: Args, n: number, rooms: string[]): Promise<number> {
  const safePoint = a.flags.has('safe-point');
  const deadline = intFlag(a, 'deadline', 1, 24 * 3600);
  const results: Record<string, unknown> = {};
  const name = await versionNamer(a);
  let refused = 0;
  for (const room of rooms) {
    if (!a.flags.has('json')) process.stdout.write(`${room}: applying v${n}... `);
    const { status, body } = await api(a, 'POST', `/admin/rooms/${encodeURIComponent(room)}/patch`, {
      version: n,
      safePoint,
      deadlineMs: deadline === undefined ? undefined : deadline * 1000,
    });
    results[room] = body;
    if (status !== 200 || !body.ok) refused++;
    if (!a.flags.has('json')) console.log('\r' + outcomeLine(room, body, status, name));
  }
  if (!a.flags.has('watch')) {
    if (a.flags.has('json')) console.log(JSON.stringify(results, null, 2));
    else console.log(refused ? `${refused} of ${rooms.length} rooms refused v${n}` : `all ${rooms.length} rooms on v${n}`);
    return refused ? 1 : 0;
  }
  if (refused === rooms.length) {
    // Nothing swapped, so nothing to watch.
    if (a.flags.has('json')) console.log(JSON.stringify({ results, verification: {} }, null, 2));
    else console.log(`${refused === 1 ? 'the room' : `all ${refused} rooms`} refused v${n}; nothing to watch`);
    return 1;
  }
  if (!a.flags.has('json')) console.log(refused ? `${refused} of ${rooms.length} rooms refused v${n}; watching the others` : `all ${rooms.length} rooms on v${n}; watching their verification windows`);
  const verdicts = await watchVerification(a, results);
  if (a.flags.has('json')) console.log(JSON.stringify({ results, verification: verdicts }, null, 2));
  const rolledBack = Object.values(verdicts).filter((v) => v.kind !== 'verified').length;
  if (!a.flags.has('json')) console.log(rolledBack ? `${rolledBack} of ${Object.keys(verdicts).length} rooms did not keep v${n}` : `v${n} verified in all ${Object.keys(verdicts).length} rooms`);
  return refused || rolledBack ? 1 : 0;
}

/** How long `push --watch` waits for the verification windows at most. */
const WATCH_LIMIT_MS = 10 * 60_000;

/**
 * `push --watch`: after the swaps, wait for each swapped room's verdict in its patch history:
 * the version verified past its window, or rolled back (failed ticks, refusals) by it.
 */
async function watchVerification(a: Args, results: Record<string, any>): Promise<Record<string, { kind: string; tick: number; reason?: string }>> {
  const pending = new Map(Object.entries(results).filter(([, r]) => r?.ok).map(([room, r]) => [room, r as { to: string; tick: number }]));
  const verdicts: Record<string, { kind: string; tick: number; reason?: string }> = {};
  const giveUpAt = Date.now() + WATCH_LIMIT_MS;
  while (pending.size > 0) {
    for (const [room, swap] of pending) {
      const { status, body } = await api(a, 'GET', `/admin/rooms/${encodeURIComponent(room)}/history`);
      if (status !== 200) continue; // between owners: ask again
      const verdict = (body as { kind: string; from: string; to: string; tick: number; reason?: string }[]).find(
        (h) => h.tick >= swap.tick && ((h.kind === 'verified' && h.to === swap.to) || ((h.kind === 'rolled-back' || h.kind === 'rollback-refused') && h.from === swap.to)),
      );
      if (!verdict) continue;
      pending.delete(room);
      verdicts[room] = { kind: verdict.kind, tick: verdict.tick, ...(verdict.reason ? { reason: verdict.reason } : {}) };
      if (!a.flags.has('json')) {
        console.log(verdict.kind === 'verified' ? `${room}: verified at tick ${verdict.tick} (${verdict.reason})` : `${room}: ${verdict.kind === 'rolled-back' ? 'ROLLED BACK' : 'ROLLBACK REFUSED'} at tick ${verdict.tick}: ${verdict.reason}`);
      }
    }
    if (pending.size === 0) break;
    if (Date.now() > giveUpAt) {
      for (const room of pending.keys()) verdicts[room] = { kind: 'unknown', tick: 0, reason: 'no verdict within 10 minutes' };
      break;
    }
    await sleepMs(500);
  }
  return verdicts;
}

async function cmdRollback(a: Args): Promise<number> {
  const room = flag(a, 'room');
  if (!room) throw new UsageError('name the room: --room ID');
  const to = intFlag(a, 'to', 1);
  const { status, body } = await api(a, 'POST', `/admin/rooms/${encodeURIComponent(room)}/rollback`, to === undefined ? {} : { version: to });
  const name = await versionNamer(a);
  print(a, body, () => console.log(outcomeLine(room, body, status, name)));
  return status === 200 && body.ok ? 0 : 1;
}

async function cmdHistory(a: Args): Promise<number> {
  const room = flag(a, 'room');
  if (!room) throw new UsageError('name the room: --room ID');
  const { status, body } = await api(a, 'GET', `/admin/rooms/${encodeURIComponent(room)}/history`);
  if (status !== 200) throw new UsageError(`${body.code}: ${body.msg}`);
  const name = await versionNamer(a);
  print(a, body, () => {
    if (body.length === 0) console.log('no patches yet');
    for (const h of body) console.log(`${new Date(h.at).toISOString()}  tick ${h.tick}  ${h.kind.padEnd(16)} ${name(h.from)} -> ${name(h.to)}${h.reason ? `  (${h.reason})` : ''}`);
  });
  return 0;
}

/** One entry of a room's script journal (server/ops/script-journal.ts) as a person reads it. */
function formatJournalEntry(e: { at: number; tick: number; version: string; kind: string; text: string; code?: string; hook?: string; playerId?: string; stack?: string; node?: string }): string {
  const head = `${new Date(e.at).toISOString()}  tick ${e.tick}  ${e.version}  `;
  if (e.kind === 'log') return head + e.text;
  if (e.kind === 'crash') return `${head}${e.code ?? 'ERROR'}, server process aborted${e.node ? ` (${e.node})` : ''}, tick not committed: ${e.text}`;
  const where = e.kind === 'hook-error' ? ` in ${e.hook}${e.playerId ? ` (player ${e.playerId})` : ''}, event undone` : ', tick rolled back';
  // The stack's first line repeats the message: show the frames under it, the designer's own
  // (the engine's runtime frames under the hooks say nothing to them; --json keeps them).
  const frames = (e.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l) && !l.includes('moonpatch-runtime/'));
  return [`${head}${e.code ?? 'ERROR'}${where}: ${e.text}`, ...frames.map((l) => `    ${l.trim()}`)].join('\n');
}

async function cmdLogs(a: Args): Promise<number> {
  const room = flag(a, 'room');
  if (!room) throw new UsageError('name the room: --room ID');
  const follow = a.flags.has('follow');
  const json = a.flags.has('json');
  const read = (after: string) => api(a, 'GET', `/admin/rooms/${encodeURIComponent(room)}/logs?after=${encodeURIComponent(after)}`);
  // The journal lives in Redis: one sequence through restarts and moves of the room's server.
  let after = '0';
  let waiting = false;
  for (let first = true; ; first = false) {
    let page: { status: number; body: any };
    try {
      page = await read(after);
      if (page.status !== 200 && !(follow && !first && FOLLOW_RETRY.has(page.body.code))) throw new UsageError(`${page.body.code}: ${page.body.msg}`);
    } catch (e) {
      // Following through a restart or a deploy: wait for a server to answer again.
      // (The refusals a follower waits through come as answers, not throws: FOLLOW_RETRY.)
      if (!(follow && !first && e instanceof UsageError && e.message.startsWith('cannot reach'))) throw e;
      page = { status: 0, body: null };
    }
    if (page.status !== 200) {
      if (!waiting && !json) console.log(`(${room}: no answer from the server; still following)`);
      waiting = true;
      await sleepMs(1000);
      continue;
    }
    waiting = false;
    const { body } = page;
    if (json && !follow) console.log(JSON.stringify(body, null, 2));
    else if (json) for (const e of body.entries) console.log(JSON.stringify({ room, ...e }));
    else {
      if (body.truncated && !first) console.log('(some entries were dropped before they could be read)');
      for (const e of body.entries) console.log(formatJournalEntry(e));
      if (first && body.entries.length === 0) console.log(`${room}: nothing logged lately${body.running ? '' : ' (the room is not running now)'}`);
    }
    if (!follow) return 0;
    after = body.next;
    await sleepMs(1000);
  }
}

/** Answers a follower waits through: the room or its server is between owners or stopping. */
const FOLLOW_RETRY = new Set(['ROOM_UNAVAILABLE', 'SERVER_SHUTTING_DOWN']);

const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The real world `validate` runs on: a live room's (--room, fetched from the admin API, and
 * written to --save FILE if asked) or a saved one (--fixture FILE); undefined for a bot-built one.
 */
async function startWorld(a: Args): Promise<(StartWorld & { game: string }) | undefined> {
  const room = flag(a, 'room');
  const fixture = flag(a, 'fixture');
  if (room && fixture) throw new UsageError('validate on --room or on --fixture, not both');
  let snapshot: unknown;
  let source: string;
  if (room) {
    const { status, body } = await api(a, 'GET', `/admin/rooms/${encodeURIComponent(room)}/snapshot`);
    if (status !== 200) throw new UsageError(`cannot read room ${room}: ${body.code}: ${body.msg}`);
    snapshot = body;
    source = `room ${room}`;
    const save = flag(a, 'save');
    if (save) {
      // Player data: not readable by others, also when the file was there before.
      writeFileSync(save, JSON.stringify(body) + '\n', { mode: 0o600 });
      chmodSync(save, 0o600);
    }
  } else if (fixture) {
    try {
      snapshot = JSON.parse(readFileSync(fixture, 'utf8'));
    } catch (e) {
      throw new UsageError(`cannot read the fixture ${fixture}: ${(e as Error).message}`);
    }
    source = fixture;
  } else {
    return undefined;
  }
  let s: ParsedSnapshot;
  try {
    s = parseSnapshot(snapshot);
  } catch (e) {
    throw new UsageError(`${source} is not a room snapshot: ${(e as Error).message}`);
  }
  return { game: s.game, records: s.records, schema: s.schema, versionNumber: s.versionNumber, tick: s.tick, nowMs: s.takenAt, label: `${source} at tick ${s.tick}` };
}

/** The key keygen writes and uploads sign with; a local server trusts it (local-signing-key.ts). */
const DEFAULT_KEY = path.join(LOCAL_DATA_DIR, LOCAL_SIGNING_KEY_FILE);

async function cmdKeygen(a: Args): Promise<number> {
  const out = flag(a, 'out') ?? DEFAULT_KEY;
  const { privatePem, publicKey } = generateSigningKey();
  mkdirSync(path.dirname(out), { recursive: true });
  try {
    // Never over an existing key: the servers trust its public half.
    writeFileSync(out, privatePem, { mode: 0o600, flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    print(a, { ok: false, code: 'KEY_EXISTS', key: out }, () =>
      console.error(`moonpatch: a signing key is already at ${out}; keep using it (the servers trust it), or write a new one elsewhere with --out FILE`),
    );
    return 1;
  }
  print(a, { key: out, publicKey }, () => {
    console.log(`private key written to ${out} (keep it secret)`);
    console.log(`public key (add it to the servers' TRUSTED_PATCH_KEYS):\n${publicKey}`);
  });
  return 0;
}

/** Sign the patch in `folder` and upload it: the server's answer (the version, or why not). */
async function uploadPatch(a: Args, folder: string): Promise<{ status: number; body: any; game: string }> {
  const patch = await patchFolderArg(a, folder);
  const { game, manifest } = patch;
  const keyFile = flag(a, 'key') ?? DEFAULT_KEY;
  let privatePem: string;
  try {
    privatePem = readFileSync(keyFile, 'utf8');
  } catch {
    throw new UsageError('no signing key: run `moonpatch keygen` or pass --key FILE (a local server started without TRUSTED_PATCH_KEYS makes one)');
  }
  const files = Object.fromEntries(patch.files);
  const signed = signPatch({ game, manifest, files }, privatePem);
  // The answer comes once the server has built it: seconds for a big patch.
  if (!a.flags.has('json')) console.log(`${game} v${manifest.version}: signed ${Object.keys(files).length} files (${Math.ceil(signed.package.length / 1024)} KB); uploading, the server builds it...`);
  const answer = await api(a, 'POST', '/admin/patches', signed);
  // Say which key the server does not trust, and how to make it trust it.
  if (answer.body?.code === 'PATCH_UNTRUSTED') {
    answer.body = { ...answer.body, key: keyFile, publicKey: signed.publicKey, msg: `${answer.body.msg}: ${keyFile} (public key ${signed.publicKey}); add that to every server's TRUSTED_PATCH_KEYS, or sign with --key FILE` };
  }
  return { ...answer, game };
}

async function cmdUpload(a: Args): Promise<number> {
  const folder = a._[1];
  if (!folder) throw new UsageError('name the patch folder, e.g. `moonpatch upload patches/arena/005-speed`');
  const { status, body, game } = await uploadPatch(a, folder);
  print(a, body, () => {
    if (status === 200) console.log(`uploaded ${game} v${body.version} (${body.bundle}, patch ${String(body.id).slice(0, 12)}); push it with \`moonpatch push ${body.version} ...\``);
    else console.log(`refused: ${body.code}: ${body.msg}`);
  });
  return status === 200 ? 0 : 1;
}

const COMMANDS: Record<CommandName, (a: Args) => Promise<number>> = {
  keygen: cmdKeygen,
  pin: (a) => cmdPin(a, true),
  unpin: (a) => cmdPin(a, false),
  release: cmdRelease,
  create: cmdCreate,
  delete: cmdDelete,
  move: cmdMove,
  upload: cmdUpload,
  validate: cmdValidate,
  status: cmdStatus,
  versions: cmdVersions,
  push: cmdPush,
  promote: cmdPromote,
  abort: cmdAbort,
  rollback: cmdRollback,
  history: cmdHistory,
  logs: cmdLogs,
};

async function main(argv: string[]): Promise<number> {
  const a = parse(argv);
  const name = a._[0];
  if (name === undefined || name === 'help') {
    const topic = a._[1];
    // `moonpatch` alone is a mistake (exit 2, to stderr); asking for help is not.
    if (name === undefined && !a.flags.has('help')) {
      console.error(overviewText());
      return 2;
    }
    if (topic === undefined) console.log(overviewText());
    else if (isCommand(topic)) console.log(commandText(topic));
    else throw new UsageError(unknownCommand(topic));
    return 0;
  }
  if (!isCommand(name)) throw new UsageError(unknownCommand(name));
  if (a.flags.has('help')) {
    console.log(commandText(name));
    return 0;
  }
  checkArgs(name, a);
  return COMMANDS[name](a);
}

function unknownCommand(name: string): string {
  const guess = closest(name, Object.keys(COMMAND_HELP));
  return `unknown command '${name}'${guess ? ` (did you mean ${guess}?)` : ''}; \`moonpatch help\` lists them`;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    // A usage mistake, or the system refusing (a file not found, no permission): one line for
    // people. Anything else is a bug: its stack.
    const systemError = typeof (e as NodeJS.ErrnoException)?.code === 'string' && typeof (e as NodeJS.ErrnoException).syscall === 'string';
    console.error(e instanceof UsageError || systemError ? `moonpatch: ${(e as Error).message}` : e);
    process.exit(2);
  },
);
