/**
 * Ctrl-C and SIGTERM: the first signal stops the run. A model call in progress is abandoned at once (the inference
 * worker is killed, through the `onStop` hooks), a read in progress ends at once (stopReading: a pipe whose writer
 * stays silent included), the sampler's step callback and the batch loop check `stopped`, and an output being written
 * is finished or removed. Whatever the run is still waiting on 0.8 s later (a decode in sharp's threads), the
 * process then ends anyway; a second signal ends it at once. Either way temp files are removed and the exit code is
 * 130.
 */
import { CmError } from '../errors.js';
import { removePendingTemps } from '../io/output.js';
import { stopReading } from '../io/read.js';
import { sayOnStderr } from './reporter.js';

export const EXIT_INTERRUPTED = 130;
/** After the first signal the process ends within this many milliseconds, whatever it waits on. */
export const STOP_WITHIN_MS = 800;

export class Interrupted extends CmError {
  constructor() {
    super('interrupted', EXIT_INTERRUPTED);
  }
}

export interface SignalWatch {
  readonly stopped: boolean;
  /** Throws Interrupted once a signal has come. */
  check(): void;
  /** Call `f` when the first signal comes (at once if it has come already). */
  onStop(f: () => void): void;
  dispose(): void;
}

/** End now: no temp file left, and the error line unless the run has already said it (its exit code is set then). */
function endNow(): never {
  removePendingTemps();
  if (process.exitCode === undefined) sayOnStderr('error', 'interrupted', { exit: EXIT_INTERRUPTED });
  process.exit(EXIT_INTERRUPTED);
}

export function watchSignals(onFirst: () => void): SignalWatch {
  let stopped = false;
  const hooks: (() => void)[] = [];
  const handler = (): void => {
    if (stopped) endNow();
    stopped = true;
    onFirst();
    stopReading(new Interrupted());
    for (const f of hooks.splice(0)) f();
    // Not disposed with the watch: once a signal has come the process ends, if it has not by then (unref: it does
    // not keep the process alive).
    setTimeout(endNow, STOP_WITHIN_MS).unref();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    get stopped() {
      return stopped;
    },
    check() {
      if (stopped) throw new Interrupted();
    },
    onStop(f) {
      if (stopped) f();
      else hooks.push(f);
    },
    dispose() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
