// The main-thread watchdog's own thread (server/sandbox/main-thread-watchdog.ts says why it
// exists). Plain JavaScript: a worker thread does not get the TypeScript loader the server runs
// under, and nothing here may depend on the main thread, which is what it watches.
//
// The main thread tells it, through shared memory, which tick call it is in and when that call
// must have returned by. A call still in progress well past that point means the main thread is
// parked for good (isolated-vm parks the thread on which V8 hit a catastrophic out-of-memory,
// and a tick run with applySync runs on the main thread). Then this thread does what the main
// thread's catastrophic-error handler would have done (GameSandbox.onCatastrophicError and the
// server's crash recorder): the crash record in the local file and through the crash beacon's
// socket, one structured line on stderr, and an abort, so that the supervisor restarts the
// process and the room is counted towards quarantine. The Redis formats come from
// ../ops/crash-wire.mjs, as the server's own; the file is server/ops/crash-record.ts's. The
// watchdog's tests read what this writes through the server's readers.
import { mkdirSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { crashJournalEntry, crashLinesJournalEntries, crashListEntry, crashRecordCommands } from '../ops/crash-wire.mjs';
import { readLogRing } from './log-ring.mjs';

const { shared, checkEveryMs, confirmMs, layout } = workerData;
const slots = new Int32Array(shared, 0, layout.int32s);
const numbers = new Float64Array(shared, layout.int32s * 4, layout.float64s);

/** Sandbox id -> { roomId, game, version, crashesKey, journalKey, logRing } */
const rooms = new Map();
/** { file, node, crashesKept, journalKept } once a server has said where crashes go. */
let target = null;

parentPort.on('message', (m) => {
  if (m.type === 'register') rooms.set(m.id, m.room);
  else if (m.type === 'forget') rooms.delete(m.id);
  else if (m.type === 'target') target = m.target;
});

function attempt(step) {
  try {
    step();
  } catch {
    /* each step on its own: the process ends whatever fails */
  }
}

function abortFor(id, tick) {
  const room = rooms.get(id) ?? { roomId: '', game: '', version: '', crashesKey: null, journalKey: null };
  const message =
    'Catastrophic out-of-memory error (inferred: the main thread never came back from this room\'s tick; isolated-vm parks the thread that hits one)';
  const at = Date.now();
  const node = target?.node ?? '';
  // What the script logged in the call that never came back (sandbox/log-ring.mjs).
  const lines = room.logRing ? readLogRing(room.logRing) : [];
  const record = { roomId: room.roomId, game: room.game, version: room.version, tick, message, at, node };
  if (target && room.roomId) {
    attempt(() => {
      mkdirSync(path.dirname(target.file), { recursive: true });
      writeFileSync(target.file, JSON.stringify({ ...record, lines }));
    });
    const fd = Atomics.load(slots, layout.beaconFd);
    if (fd >= 0 && room.crashesKey) {
      attempt(() => {
        const crash = { at, tick, version: room.version, node, message, lines };
        // Its lines before the crash itself.
        const entries = [...crashLinesJournalEntries(crash), crashJournalEntry(crash)];
        writeSync(fd, crashRecordCommands(room.crashesKey, crashListEntry(crash), target.crashesKept, { key: room.journalKey, kept: target.journalKept, entries }));
      });
    }
  }
  attempt(() => {
    const line = { level: 60, time: at, service: 'moonpatch', code: 'MEMORY_LIMIT', ...record, by: 'main-thread-watchdog', msg: 'an isolate hit a catastrophic error; aborting the process' };
    delete line.at;
    writeSync(2, JSON.stringify(line) + '\n');
  });
  // process.abort() is not available in a worker thread; the signal ends the process the same way.
  process.kill(process.pid, 'SIGABRT');
}

// The call seen overdue, and since when (this thread's clock): a call is only taken for a hung
// one after it has stayed overdue for confirmMs of this thread's own time, so a machine that
// paused both threads (a VM stopped, a debugger) does not get a healthy process killed.
let overdueSeq = 0;
let overdueSince = 0;
let overdueChecks = 0;

setInterval(() => {
  const seq = Atomics.load(slots, layout.seq);
  if (seq === 0 || Date.now() < numbers[layout.deadline]) {
    overdueSeq = 0;
    return;
  }
  if (seq !== overdueSeq) {
    overdueSeq = seq;
    overdueSince = Date.now();
    overdueChecks = 1;
    return;
  }
  overdueChecks++;
  if (overdueChecks >= 3 && Date.now() - overdueSince >= confirmMs) abortFor(Atomics.load(slots, layout.sandbox), numbers[layout.tick]);
}, checkEveryMs);
