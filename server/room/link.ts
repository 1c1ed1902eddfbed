/**
 * What a room needs from a player's connection. The network layer implements it; the room
 * never imports the network layer.
 */
export interface PlayerLink {
  /** Queue a binary frame. Never throws; a closed link ignores it. */
  send(frame: Uint8Array): void;
  close(code: number, reason: string): void;
  /** Bytes queued but not yet written to the socket (backpressure). */
  readonly bufferedAmount: number;
  readonly isOpen: boolean;
}
