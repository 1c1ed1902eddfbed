export declare const LOG_RING_HEADER_BYTES: number;
export declare const LOG_RING_BYTES: number;
export declare function readLogRing(ring: SharedArrayBuffer): string[];
export declare function readRunningEvent(ring: SharedArrayBuffer): number;
