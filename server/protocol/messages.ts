/**
 * Wire messages between clients and the server: binary WebSocket frames, each one msgpack map
 * with a type field `t`. Shared by the server, the TypeScript client, the bots and the play page.
 * docs/protocol.md is the human description; keep the two in step.
 */
import type { ErrorCode } from '../errors/codes.ts';

/** Plain data: what inputs and world records are made of. */
export type Value = null | boolean | number | string | Value[] | { [key: string]: Value };

// ---- client -> server ----

export interface JoinMsg {
  t: 'join';
  /** Room id: 1-64 of A-Z a-z 0-9 _ - */
  room: string;
  /** Game to create the room with if it does not exist yet. */
  game?: string;
  /** Display name, 1-32 characters. */
  name?: string;
  /** Resume token from an earlier welcome: take the same seat again. */
  resume?: string;
  /** Signed player token (when the server requires one): who the player is. */
  token?: string;
}

export interface InputMsg {
  t: 'in';
  /** Client sequence number: a positive integer, strictly increasing per seat. */
  seq: number;
  /** The input, handed to the script's `input` hook as is. */
  d: Value;
}

export interface PingMsg {
  t: 'ping';
  /** Echoed in the pong. */
  id: number;
}

export interface LeaveMsg {
  t: 'leave';
}

export type ClientMessage = JoinMsg | InputMsg | PingMsg | LeaveMsg;

// ---- server -> client ----

export interface WelcomeMsg {
  t: 'welcome';
  room: string;
  game: string;
  player: string;
  name: string;
  /** Keep this secret: it lets a new connection take this seat within the resume window. */
  resume: string;
  /** Resume window, ms. */
  resumeMs: number;
  tick: number;
  v: string;
  hz: number;
  bhz: number;
  /** Highest input seq of this seat processed by a committed tick: those are settled. */
  seq: number;
  /**
   * Highest input seq the server has received for this seat. Inputs up to it will still be
   * settled (ack or err) without being sent again; resend only the ones above it.
   */
  rcv: number;
  /**
   * What this seat may send: at most `q` inputs waiting for a tick, and `rate` frames a second
   * with bursts of `burst`. A client resending a backlog after a resume paces itself by them
   * (past them inputs are refused with QUEUE_FULL or RATE_LIMITED).
   */
  lim: { q: number; rate: number; burst: number };
}

/** The whole world: every record. Sent after welcome and when a client fell too far behind. */
export interface SnapshotMsg {
  t: 'snap';
  tick: number;
  v: string;
  set: Record<string, Value>;
}

/** Records changed since the previous delta or snapshot this client got. */
export interface DeltaMsg {
  t: 'delta';
  tick: number;
  v: string;
  set: Record<string, Value>;
  del: string[];
  /**
   * Records of which only some top-level fields changed: key -> just those fields, with their
   * new values, to assign onto the record the client has. Absent when there are none.
   */
  patch?: Record<string, Record<string, Value>>;
}

/** Every input with seq <= `seq` has been processed (applied, or rejected with an err frame). */
export interface AckMsg {
  t: 'ack';
  seq: number;
  /** The committed tick that processed it. */
  tick: number;
}

export interface ErrorMsg {
  t: 'err';
  code: ErrorCode;
  msg: string;
  /** Whether retrying later can succeed. */
  retry: boolean;
  /** The input this error is about, when it is about one. */
  seq?: number;
  /** ROOM_OWNED_ELSEWHERE: the URL of the server that owns the room; join or resume there. */
  owner?: string;
}

export interface PongMsg {
  t: 'pong';
  id: number;
  /** Server wall clock, ms since epoch. */
  srv: number;
}

/** The room's scripts changed version (a live patch). */
export interface VersionMsg {
  t: 'ver';
  from: string;
  to: string;
  tick: number;
}

export type ServerMessage = WelcomeMsg | SnapshotMsg | DeltaMsg | AckMsg | ErrorMsg | PongMsg | VersionMsg;
