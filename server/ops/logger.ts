/**
 * Structured JSON logs (pino). Fields first, constant message second. Player-provided data
 * (names, input payloads, resume tokens) is redacted by default.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'moonpatch' },
      redact: { paths: ['name', 'playerName', 'input', 'resume', 'token', '*.resume', '*.token', 'secret', '*.secret'], censor: '[redacted]' },
    },
    destination,
  );
}

/** A logger that discards everything (tests that do not look at logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
