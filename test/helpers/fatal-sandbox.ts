/**
 * The `fatal` fixture game in a GameSandbox, fed one event a tick: shared by the child-process
 * helpers that make V8 abort (abort-despite-throwing-recorder.ts, watchdog-child.ts).
 */
import path from 'node:path';
import { loadGame } from '../../server/sandbox/games.ts';
import { EVENT_INPUT, EVENT_JOIN, GameSandbox, type TickOutcome } from '../../server/sandbox/sandbox.ts';
import { MsgpackWriter } from '../../server/sandbox/runtime/msgpack.ts';

export interface FatalRoom {
  sandbox: GameSandbox;
  /** Runs the next tick with player p1's input `data` (the first call seats p1 instead). */
  next(data: unknown): Promise<TickOutcome>;
}

export async function fatalRoom(roomId: string): Promise<FatalRoom> {
  const game = await loadGame(path.join(import.meta.dirname, '..', 'fixtures', 'games', 'fatal'));
  const sandbox = await GameSandbox.create(game.bundle, { memoryLimitMb: game.manifest.memoryLimitMb, cpuBudgetMs: game.manifest.cpuBudgetMs, roomId });
  const w = new MsgpackWriter();
  let tick = 0;
  const next = (data: unknown) => {
    tick++;
    w.reset();
    w.arrayHeader(1);
    w.arrayHeader(5);
    w.uint(tick === 1 ? EVENT_JOIN : EVENT_INPUT);
    w.str('p1');
    w.str('mallory');
    w.uint(tick - 1);
    w.value(tick === 1 ? null : data);
    return sandbox.tick({ events: w.copyBytes(), seed: 1, tick, nowMs: 1_700_000_000_000 + tick * 50, dtSeconds: 0.05, runInit: tick === 1 });
  };
  await next(null);
  return { sandbox, next };
}
