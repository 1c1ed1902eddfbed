/**
 * Error classes, one per failure, each carrying a stable code from the catalog and the context
 * that ops and designers need. Code is recognised by `code`, never by message text.
 */
import { ErrorCodes, type ErrorCode } from './codes.ts';

export class MoonpatchError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }

  get retry(): boolean {
    return ErrorCodes[this.code].retry;
  }
}

/** The game's scripts did not bundle. `details` are the bundler's messages, one per problem. */
export class BuildError extends MoonpatchError {
  constructor(
    /** The message without the details (`game "x" failed to build`). */
    readonly summary: string,
    readonly details: string[],
  ) {
    super('BUILD_FAILED', details.length ? `${summary}:\n  ${details.join('\n  ')}` : summary);
  }
}

/**
 * The room is owned by another live server (its lease in Redis is alive). `ownerUrl` is where
 * players reach that server ('' when it did not say), so a client can follow it.
 */
export class RoomOwnedElsewhereError extends MoonpatchError {
  constructor(
    roomId: string,
    readonly ownerNode: string,
    readonly ownerUrl: string,
  ) {
    super('ROOM_OWNED_ELSEWHERE', `room ${roomId} runs on server ${ownerNode}${ownerUrl ? ` (${ownerUrl})` : ''}`);
  }
}

/** A client frame that is rejected; the session answers it with an error frame. */
export class ProtocolError extends MoonpatchError {}

/** Bad configuration: names the option and what is wrong. */
export class ConfigError extends Error {
  constructor(
    readonly option: string,
    readonly problem: string,
  ) {
    super(`config: ${option} ${problem}`);
    this.name = 'ConfigError';
  }
}

/** What a script threw, normalised in the isolate: a thrown string or object becomes this. */
export interface ThrownInfo {
  name: string;
  message: string;
  /** The script's stack, mapped to the designer's source files when a source map is known. */
  stack: string;
  /** A `code` the thrown value carried (the engine's own STATE_INVALID_VALUE, or the designer's). */
  code: string | null;
}
