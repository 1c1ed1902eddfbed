/**
 * The catalog of stable error codes. Players, designers and ops all see these codes, so they are
 * part of the interface: never rename or reuse one; add new ones at the end of their group.
 * Every code is documented in docs/errors.md (a test keeps the two in step).
 *
 * `retry` tells a client whether sending the same thing again later can succeed.
 */
export const ErrorCodes = {
  // --- frames from clients (protocol) ---
  BAD_FRAME: { retry: false, text: 'frame is not valid msgpack, or not a binary frame' },
  UNKNOWN_TYPE: { retry: false, text: 'message type is not one the server knows' },
  BAD_FIELD: { retry: false, text: 'a field is missing or has the wrong type or range' },
  NOT_JOINED: { retry: false, text: 'the message needs a seat: join a room first' },
  ALREADY_JOINED: { retry: false, text: 'this connection already has a seat' },
  RATE_LIMITED: { retry: true, text: 'too many messages: the input was dropped' },
  QUEUE_FULL: { retry: true, text: "the player's input queue is full: the input was dropped" },
  DUPLICATE_SEQ: { retry: false, text: 'input sequence number was already used; it is ignored' },

  // --- rooms and seats ---
  ROOM_NOT_FOUND: { retry: false, text: 'no such room, and the request did not name a game to create it with' },
  GAME_NOT_FOUND: { retry: false, text: 'no such game on this server' },
  BAD_ROOM_ID: { retry: false, text: 'room ids are 1-64 characters of A-Z a-z 0-9 _ -' },
  ROOM_FULL: { retry: true, text: 'the room has reached its maxPlayers' },
  RESUME_REJECTED: { retry: false, text: 'the resume token is unknown, expired or wrong: join again' },
  EXPELLED: { retry: false, text: 'this user was expelled from the room a moment ago (their inputs kept stopping its tick): try again later' },
  ROOM_UNAVAILABLE: { retry: true, text: 'the room is not running on this server right now' },
  ROOM_LIMIT: { retry: true, text: 'this server runs as many rooms as its maxRooms; it cannot open another' },
  SEAT_TAKEN_OVER: { retry: false, text: 'the seat was resumed from another connection' },
  AUTH_REQUIRED: { retry: false, text: 'this server needs a signed player token to join' },
  AUTH_INVALID: { retry: false, text: 'the player token is wrong, tampered or expired' },
  ROOM_QUARANTINED: { retry: true, text: "the room's script aborted a server process again and again; it stays down until ops release it" },
  ROOM_OWNED_ELSEWHERE: { retry: true, text: 'another server runs this room; the error names it in `owner`' },
  ROOM_EXISTS: { retry: false, text: 'a room with this id exists already (admin create)' },
  NODE_NOT_FOUND: { retry: false, text: 'no live server with this node id (admin move)' },
  ROOM_MOVE_FAILED: { retry: true, text: 'the other server could not open the room; it runs on this one again (admin move)' },
  ROOM_FORMAT_NEWER: { retry: true, text: 'the room is stored in a format newer than this server reads; a newer server must run it' },

  // --- designer scripts ---
  SCRIPT_ERROR: { retry: false, text: 'the game script threw while handling this' },
  TICK_FAILED: { retry: true, text: 'the tick this was part of failed and was rolled back' },
  CPU_BUDGET_EXCEEDED: { retry: true, text: 'the tick overran its CPU budget and was rolled back' },
  MEMORY_LIMIT: { retry: true, text: 'the script exhausted its memory; the tick was rolled back and the sandbox rebuilt' },
  STATE_INVALID_VALUE: { retry: false, text: 'a script stored something in the world that is not plain data' },
  BUILD_FAILED: { retry: false, text: 'the game scripts did not bundle or compile' },

  // --- engine and storage ---
  COMMIT_FAILED: { retry: true, text: 'the tick could not be committed to Redis and was rolled back' },
  FENCED: { retry: false, text: 'another server owns this room now; this server stopped ticking it' },
  ENGINE_ERROR: { retry: true, text: 'the engine failed unexpectedly; the tick was rolled back' },
  SERVER_SHUTTING_DOWN: { retry: true, text: 'the server is shutting down; reconnect with your resume token' },
  TLS_FILE_INVALID: { retry: false, text: 'TLS_CERT_FILE or TLS_KEY_FILE is missing, unreadable, or not a matching PEM certificate and key' },
  SIGNING_KEY_INVALID: { retry: false, text: 'the local patch-signing key file cannot be read or is not an ed25519 private key' },

  // --- live patching ---
  PATCH_IN_PROGRESS: { retry: true, text: 'the room is already switching to another version' },
  ALREADY_ON_VERSION: { retry: false, text: 'the room already runs that version' },
  UNAUTHORIZED: { retry: false, text: 'admin operations need the admin token' },
  ROOM_PINNED: { retry: false, text: 'the room is pinned to its version; unpin it to patch it' },
  PATCH_UNTRUSTED: { retry: false, text: 'the patch is signed by a key this server does not trust' },
  PATCH_BAD_SIGNATURE: { retry: false, text: 'the patch is not signed, or was changed after signing' },
  NOTHING_TO_ROLL_BACK: { retry: false, text: 'the room has no earlier version to go back to' },
  ROLLBACK_NEEDS_DOWNGRADE: { retry: false, text: 'the version changed the schema and has no downgrade: it cannot be rolled back without losing state' },
  PATCH_VERSION_TAKEN: { retry: false, text: 'the game already has a different version with that number' },
} as const satisfies Record<string, { retry: boolean; text: string }>;

export type ErrorCode = keyof typeof ErrorCodes;

/**
 * WebSocket close codes the server uses (4000-4999 is the application range). Documented in
 * docs/errors.md and docs/protocol.md.
 */
export const CloseCodes = {
  /** The server is stopping; reconnect and resume. */
  SHUTDOWN: 4000,
  /** Too many malformed frames or a flood well above the rate limit. */
  ABUSE: 4001,
  /** The client could not keep up with the broadcast (its send buffer passed the bound). */
  SLOW_CONSUMER: 4002,
  /** No frame and no answer to the server's WebSocket pings within the idle timeout. */
  IDLE: 4003,
  /** The seat was resumed from another connection. */
  SEAT_TAKEN_OVER: 4004,
  /** The room stopped on this server (another server claimed it). */
  ROOM_CLOSED: 4005,
  /** Too many connections from one address (maxConnectionsPerAddress). */
  TOO_MANY_CONNECTIONS: 4006,
  /** The room was deleted by its operators: it is gone, do not reconnect to it. */
  ROOM_DELETED: 4007,
  /** The player's inputs stopped the room's tick (CPU budget, memory) again and again: the seat was given up. */
  EXPELLED: 4008,
} as const;

export type CloseCode = (typeof CloseCodes)[keyof typeof CloseCodes];
