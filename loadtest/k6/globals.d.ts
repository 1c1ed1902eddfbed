/**
 * Globals k6 provides that @types/k6 does not declare (it leaves them to lib "DOM", which would
 * also declare browser globals k6 does not have).
 */
declare global {
  const console: {
    log(...args: unknown[]): void;
    info(...args: unknown[]): void;
    warn(...args: unknown[]): void;
    error(...args: unknown[]): void;
    debug(...args: unknown[]): void;
  };
}

export {};
