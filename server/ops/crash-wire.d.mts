/** A crash as the crash list and the script journal record it. */
export interface CrashFacts {
  /** ms since epoch */
  at: number;
  tick: number;
  version: string;
  node: string;
}
export declare const MAX_TEXT_CHARS: number;
export declare function cutText(text: string): string;
export declare function catastrophicErrorCode(message: string | undefined): 'MEMORY_LIMIT' | 'ENGINE_ERROR';
export declare function crashListEntry(crash: CrashFacts): string;
export declare function crashJournalEntry(crash: CrashFacts & { message?: string }): string;
export declare function crashLinesJournalEntries(crash: CrashFacts & { lines?: readonly string[] }): string[];
export declare function respCommand(args: readonly string[]): Buffer;
export declare function crashRecordCommands(crashesKey: string, entry: string, crashesKept: number, journal?: { key: string; kept: number; entries: readonly string[] }): Buffer;
