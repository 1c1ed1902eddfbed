/**
 * MessagePack for k6, which has none: the engine's own codec from the gameplay isolate
 * (server/sandbox/runtime/msgpack.ts), imported as it is. That module was written for bare V8
 * contexts (no imports, no TextEncoder, no Buffer, only ECMAScript built-ins), so k6's runtime
 * runs it unchanged. It writes plain msgpack (string-keyed maps, no extension types), which is
 * what the server expects (docs/protocol.md).
 */
import { MsgpackWriter, decode as decodeBytes } from '../../server/sandbox/runtime/msgpack.ts';

const writer = new MsgpackWriter(512);

/** One value as a msgpack frame, in an ArrayBuffer of exactly its size (for WebSocket.send). */
export function encode(value: unknown): ArrayBuffer {
  writer.reset();
  writer.value(value);
  return writer.bytes().slice().buffer as ArrayBuffer;
}

/** One msgpack value from a frame (maps become plain objects). */
export function decode(frame: ArrayBuffer | Uint8Array): unknown {
  return decodeBytes(frame instanceof Uint8Array ? frame : new Uint8Array(frame));
}
