// How a crash is written down: the room's crash-list entry, its script-journal entries, and the
// RESP commands that put them into Redis straight onto a socket. Plain JavaScript, so that the
// main-thread watchdog's own thread (sandbox/watchdog-thread.mjs), which has no TypeScript
// loader, writes a crash with the same functions as the server does (ops/crash-beacon.ts,
// state/room-store.ts, ops/script-journal.ts): one format, read back by RoomStore and the
// script journal. Types: crash-wire.d.mts.

/** A journal entry's text is cut to this many characters (docs/state.md, the script journal). */
export const MAX_TEXT_CHARS = 2000;

/** `text` cut to MAX_TEXT_CHARS, marked with an ellipsis when it was longer. */
export function cutText(text) {
  return text.length > MAX_TEXT_CHARS ? text.slice(0, MAX_TEXT_CHARS) + '…' : text;
}

/** The error code a catastrophic error is reported with (the abort's log line, the journal). */
export function catastrophicErrorCode(message) {
  return /out-of-memory/i.test(message ?? '') ? 'MEMORY_LIMIT' : 'ENGINE_ERROR';
}

/** The room's crash list's entry for a crash: JSON, as docs/state.md gives it. */
export function crashListEntry(crash) {
  return JSON.stringify({ at: crash.at, tick: crash.tick, version: crash.version, node: crash.node });
}

/** The script journal's entry for the crash itself, as JSON text. */
export function crashJournalEntry(crash) {
  return JSON.stringify({
    at: crash.at,
    tick: crash.tick,
    version: crash.version,
    kind: 'crash',
    text: cutText(`the script aborted the server process: ${crash.message ?? 'catastrophic error'}`),
    code: catastrophicErrorCode(crash.message),
    node: crash.node,
  });
}

/** The script journal's entries for the lines the crashing call logged, as JSON texts. */
export function crashLinesJournalEntries(crash) {
  return (crash.lines ?? []).map((line) => JSON.stringify({ at: crash.at, tick: crash.tick, version: crash.version, kind: 'log', text: cutText(line), node: crash.node }));
}

/** One RESP command (an array of bulk strings), as Redis reads it off the wire. */
export function respCommand(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const bytes = Buffer.from(a, 'utf8');
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/**
 * The bytes that record a crash in Redis, for one synchronous write on the abort path: LPUSH
 * the crash-list entry and LTRIM the list to `crashesKept`; then, when `journal` is given,
 * XADD each of its entries (the room's unflushed lines, then the crash) to the room's journal,
 * capped at `journal.kept`. The crash list goes first: a write cut short loses the end.
 */
export function crashRecordCommands(crashesKey, entry, crashesKept, journal) {
  const commands = [respCommand(['LPUSH', crashesKey, entry]), respCommand(['LTRIM', crashesKey, '0', String(crashesKept - 1)])];
  for (const e of journal?.entries ?? []) commands.push(respCommand(['XADD', journal.key, 'MAXLEN', String(journal.kept), '*', 'e', e]));
  return Buffer.concat(commands);
}
