/**
 * Ctrl-C and SIGTERM: the first signal asks the run to stop after the current step (the sampler's step callback and
 * the batch loop check `stopped`); a second one stops at once. Either way temp files are removed and the exit code
 * is 130.
 */
import { CmError } from '../errors.js';
import { removePendingTemps } from '../io/output.js';

export const EXIT_INTERRUPTED = 130;

export class Interrupted extends CmError {
  constructor() {
    super('interrupted: stopped after the current step', EXIT_INTERRUPTED);
  }
}

export interface SignalWatch {
  readonly stopped: boolean;
  /** Throws Interrupted once a signal has come. */
  check(): void;
  dispose(): void;
}

export function watchSignals(onFirst: () => void): SignalWatch {
  let stopped = false;
  const handler = (): void => {
    if (stopped) {
      removePendingTemps();
      process.exit(EXIT_INTERRUPTED);
    }
    stopped = true;
    onFirst();
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
    dispose() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
