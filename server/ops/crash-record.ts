/**
 * Which room aborted this server process. A script can make V8 abort the whole process (a fatal
 * out-of-memory that isolated-vm reports through onCatastrophicError, see docs/security.md).
 * Nothing asynchronous can run then, so the sandbox's last act writes one small file,
 * synchronously; the next start of the same node reads it, records the crash in Redis against
 * the room (unless the crash beacon, ops/crash-beacon.ts, already got it there from the abort
 * path), and deletes it. A room that keeps crashing servers is quarantined (RoomManager),
 * instead of taking down every server that resumes it, or that its players' resent input
 * reaches.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface CrashRecord {
  roomId: string;
  game: string;
  version: string;
  tick: number;
  /** ms since epoch */
  at: number;
  node: string;
  /** V8's message, when the abort path had one. */
  message?: string;
  /**
   * What the room's script logged in the call that crashed (sandbox/log-ring.mjs): for its script
   * journal, should this file be the only record that reaches Redis (the beacon could not send).
   */
  lines?: string[];
}

/** Lines kept from a crash file at most (the log ring holds ~4,000 characters of them). */
const MAX_FILE_LINES = 200;

export function crashFilePath(dataDir: string, node: string): string {
  return path.join(dataDir, 'crashes', `${node.replace(/[^A-Za-z0-9_.-]/g, '_')}.json`);
}

/** Called from the abort path: synchronous, never throws. */
export function writeCrashRecordSync(file: string, record: CrashRecord): void {
  try {
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(record));
  } catch {
    /* the process is going down anyway; the log line still names the room */
  }
}

/** The crash the previous run of this node left, if any; the file is removed. */
export function takeCrashRecord(file: string): CrashRecord | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  rmSync(file, { force: true });
  try {
    const r = JSON.parse(text) as CrashRecord;
    if (typeof r.roomId !== 'string' || !r.roomId) return null;
    if (typeof r.message !== 'string') delete r.message;
    // Written by the abort path, read back as data: only strings, and not without end.
    if (!Array.isArray(r.lines) || r.lines.some((l) => typeof l !== 'string')) delete r.lines;
    else r.lines = r.lines.slice(-MAX_FILE_LINES);
    return r;
  } catch {
    return null;
  }
}
