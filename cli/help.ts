/**
 * What each `moonpatch` command takes and does: the text of `moonpatch help [command]` and
 * `moonpatch <command> --help`, and the options each command accepts (cli/moonpatch.ts refuses
 * any other, so a mistyped `--rooom` is an error instead of being quietly ignored).
 *
 * One table for both on purpose: the help cannot list an option the command does not take, or
 * miss one it does. cli/moonpatch.ts's dispatch table is typed by {@link CommandName}, so a
 * command cannot exist without its entry here.
 */

export interface CommandHelp {
  /** One line for the overview. */
  summary: string;
  /** The ways to call it, without the leading `moonpatch`. */
  usage: string[];
  /** Option name (without `--`) -> what it does. Options that take a value name it in caps. */
  options: Record<string, string>;
  /** The most positional arguments it takes (after the command's name). */
  positionals: number;
  /** Lines of detail after the options. */
  notes?: string[];
}

/** Options every command takes (a command that does not talk to a server ignores --url and --token). */
export const GLOBAL_OPTIONS: Record<string, string> = {
  json: 'machine-readable output (JSON) instead of lines for people',
  url: 'the server\'s admin API: --url URL (default $MOONPATCH_URL, else http://127.0.0.1:$PORT, else :8080)',
  token: 'the admin token: --token TOKEN (default $MOONPATCH_ADMIN_TOKEN, else .data/admin-token of a local server)',
  help: 'show this help',
};

const ROOMS = 'the rooms to apply it to: --room ID (repeatable)';
const GAME = 'the game: --game G (default arena)';

export const COMMAND_HELP = {
  validate: {
    summary: 'check a version or a patch folder locally: type-check, bundle, migrate a world, run ticks',
    usage: [
      'validate <version> [--game G] [--from N] [--players 50] [--ticks 200] [--scripts DIR] [--patches DIR]',
      'validate <version> --room ID [--save FILE]',
      'validate <version> --fixture FILE',
      'validate <patch-folder> ...   (the folder as it is on disk, on top of the versions before it)',
    ],
    options: {
      game: GAME,
      from: 'the version whose world is migrated: --from N (default the one before)',
      players: 'bots that build the world and play after the swap: --players N (default 50)',
      ticks: 'ticks to run after the swap: --ticks N (default 200)',
      scripts: 'the scripts folder: --scripts DIR (default scripts/)',
      patches: 'the patches folder: --patches DIR (default patches/)',
      room: 'migrate a live room\'s committed world instead of a bot-built one: --room ID (needs the server)',
      save: 'with --room: also write that world to a file: --save FILE (mode 0600: it holds player data)',
      fixture: 'migrate a world saved with --save: --fixture FILE',
    },
    positionals: 1,
    notes: ['Exit 0 when the version ran clean, 1 with type errors, a failed migration or failed ticks (stacks mapped to your files).'],
  },
  versions: {
    summary: 'the games on the server and their versions',
    usage: ['versions'],
    options: {},
    positionals: 0,
  },
  status: {
    summary: 'every room of every server: game, version, players, tick time, last patch',
    usage: ['status [--by-version]'],
    options: { 'by-version': 'rooms, players and tick time p50/p99 per version, over the rooms\' last ticks on it (to compare an A/B)' },
    positionals: 0,
  },
  push: {
    summary: 'apply a version (or sign, upload and apply a patch folder) to rooms; non-zero if any refused',
    usage: [
      'push <version> (--room ID ... | --all | --canary PERCENT) [--game G] [--safe-point [--deadline S]] [--watch]',
      'push <patch-folder> [--key FILE] (--room ID ... | --all | --canary PERCENT) ...',
    ],
    options: {
      room: ROOMS,
      all: 'every room of the game that is not pinned, and make the version the game\'s target',
      canary: 'a stable share of the game\'s rooms first: --canary PERCENT (1-100); then promote or abort',
      game: GAME,
      'safe-point': 'wait for the script\'s safePoint() to say yes before swapping',
      deadline: 'with --safe-point: swap anyway after S seconds (--deadline S)',
      watch: 'then wait out each room\'s verification window; exit 1 if any rolled the version back',
      key: 'the signing key for a patch folder: --key FILE (default .data/patch-signing-key.pem)',
    },
    positionals: 1,
  },
  promote: {
    summary: 'make a version the game\'s target and push it to every room not on it yet',
    usage: ['promote <version> [--game G]'],
    options: { game: GAME, 'safe-point': 'as for push', deadline: 'as for push: --deadline S', watch: 'as for push' },
    positionals: 1,
  },
  abort: {
    summary: 'roll back every room running a version (end a canary) and withdraw it',
    usage: ['abort <version> [--game G]'],
    options: { game: GAME },
    positionals: 1,
  },
  rollback: {
    summary: 'take a room back to before its last patch, or to a version, keeping what players did',
    usage: ['rollback --room ID [--to N]'],
    options: { room: 'the room: --room ID', to: 'the version to go back to: --to N (default the one before the last patch)' },
    positionals: 0,
  },
  history: {
    summary: 'a room\'s patch history: applied, verified, rolled back, refused',
    usage: ['history --room ID'],
    options: { room: 'the room: --room ID' },
    positionals: 0,
  },
  logs: {
    summary: 'what a room\'s scripts logged and threw lately, stacks mapped to your files',
    usage: ['logs --room ID [--follow]'],
    options: { room: 'the room: --room ID', follow: 'keep printing new lines (through restarts and moves of the room)' },
    positionals: 0,
  },
  pin: {
    summary: 'keep a room on its version: patches to the game skip it (A/B)',
    usage: ['pin --room ID'],
    options: { room: 'the room: --room ID' },
    positionals: 0,
  },
  unpin: {
    summary: 'let patches to the game reach a pinned room again',
    usage: ['unpin --room ID'],
    options: { room: 'the room: --room ID' },
    positionals: 0,
  },
  release: {
    summary: 'let a quarantined room (its script aborted servers) run again',
    usage: ['release --room ID'],
    options: { room: 'the room: --room ID' },
    positionals: 0,
  },
  create: {
    summary: 'create a room (the way to make rooms when ROOM_CREATION=admin)',
    usage: ['create --room ID [--game G]'],
    options: { room: 'the room: --room ID', game: 'its game: --game G (default the server\'s default game)' },
    positionals: 0,
  },
  delete: {
    summary: 'delete a room for good: its world, seats and history (needs --yes)',
    usage: ['delete --room ID --yes'],
    options: { room: 'the room: --room ID', yes: 'yes, delete it: this cannot be undone' },
    positionals: 0,
  },
  move: {
    summary: 'move a running room to another server; its players follow',
    usage: ['move --room ID --to NODE'],
    options: { room: 'the room: --room ID', to: 'the server: --to NODE (the server column of `moonpatch status`)' },
    positionals: 0,
  },
  keygen: {
    summary: 'make an ed25519 patch-signing key',
    usage: ['keygen [--out FILE]'],
    options: { out: 'where to write the private key: --out FILE (default .data/patch-signing-key.pem; never overwritten)' },
    positionals: 0,
  },
  upload: {
    summary: 'sign a patch folder and send it to the servers without applying it',
    usage: ['upload <patch-folder> [--key FILE] [--game G]'],
    options: { key: 'the signing key: --key FILE (default .data/patch-signing-key.pem)', game: 'the game: --game G (default the folder\'s parent folder name)' },
    positionals: 1,
  },
} satisfies Record<string, CommandHelp>;

export type CommandName = keyof typeof COMMAND_HELP;

export function isCommand(name: string): name is CommandName {
  return Object.hasOwn(COMMAND_HELP, name);
}

const EXIT_CODES = 'Exit codes: 0 done, 1 refused or invalid, 2 usage or connection error.';

/** `moonpatch help`: every command with its one-line summary. */
export function overviewText(): string {
  const names = Object.keys(COMMAND_HELP) as CommandName[];
  const width = Math.max(...names.map((n) => n.length)) + 2;
  return [
    'usage: moonpatch <command> [options]',
    '',
    'Commands:',
    ...names.map((n) => `  ${n.padEnd(width)}${COMMAND_HELP[n].summary}`),
    '',
    'Options for every command:',
    ...optionLines(GLOBAL_OPTIONS),
    '',
    '`moonpatch help <command>` (or `moonpatch <command> --help`) shows what a command takes.',
    EXIT_CODES,
  ].join('\n');
}

/** `moonpatch help <command>`: its usage, options and notes. */
export function commandText(name: CommandName): string {
  const h: CommandHelp = COMMAND_HELP[name];
  const lines = [h.summary, '', 'usage:', ...h.usage.map((u) => `  moonpatch ${u}`)];
  if (Object.keys(h.options).length > 0) lines.push('', 'Options:', ...optionLines(h.options));
  lines.push('', 'And: --json, --url URL, --token TOKEN (see `moonpatch help`).');
  if (h.notes) lines.push('', ...h.notes);
  lines.push(EXIT_CODES);
  return lines.join('\n');
}

function optionLines(options: Record<string, string>): string[] {
  const names = Object.keys(options);
  const width = Math.max(...names.map((n) => n.length)) + 4;
  return names.map((n) => `  --${n.padEnd(width - 2)}${options[n]}`);
}

/**
 * Options that take no value: `--watch 2` is the switch and a positional, not watch=2. Every
 * other option takes the next argument as its value.
 */
export const SWITCHES = new Set(['json', 'help', 'all', 'watch', 'follow', 'yes', 'safe-point', 'by-version']);

/** The options `name` accepts: its own and the global ones. */
export function acceptedOptions(name: CommandName): Set<string> {
  return new Set([...Object.keys(COMMAND_HELP[name].options), ...Object.keys(GLOBAL_OPTIONS)]);
}

/** The closest of `candidates` to a mistyped `word`, if one is close enough to be a likely typo. */
export function closest(word: string, candidates: Iterable<string>): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  // One edit in three characters at most: "rooom" -> "room", not "to" -> "yes".
  return best !== null && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : null;
}

/**
 * Edit distance counting an insertion, a deletion, a substitution or a swap of two neighbours
 * as one edit (optimal string alignment): `jsno` is one edit from `json`.
 */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}
