/**
 * Ctrl-C and SIGTERM: the first signal stops the run. A model call in progress is abandoned at once (the inference
 * worker is killed, through the `onStop` hooks), the sampler's step callback and the batch loop check `stopped`, and
 * an output being written is finished or removed; a second signal stops at once. Either way temp files are removed
 * and the exit code is 130.
 */
import { CmError } from '../errors.js';
import { removePendingTemps } from '../io/output.js';

export const EXIT_INTERRUPTED = 130;

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

export function watchSignals(onFirst: () => void): SignalWatch {
  let stopped = false;
  const hooks: (() => void)[] = [];
  const handler = (): void => {
    if (stopped) {
      removePendingTemps();
      process.exit(EXIT_INTERRUPTED);
    }
    stopped = true;
    onFirst();
    for (const f of hooks.splice(0)) f();
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
