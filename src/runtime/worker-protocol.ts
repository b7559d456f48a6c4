/**
 * The messages between the CLI and its inference worker (worker.ts), over Node's IPC channel with structured-clone
 * serialization (typed arrays travel as such). Types and constants only.
 */
import type { Device, OutputCheck } from './device.js';
import type { SessionRequest, Skip } from './session.js';

export type Shape = [number, number, number, number];

export type WorkerRequest =
  | { op: 'open'; req: SessionRequest }
  | { op: 'run'; id: number; x: Float32Array; shape: Shape; sigma: Float32Array }
  | { op: 'close' };

/** An error carried across the channel: a typed error's class name and exit code, or a device that cannot be used. */
export interface WireError {
  name: string;
  message: string;
  exitCode?: number;
  unavailable?: Skip;
}

export type WorkerReply =
  | { op: 'opened'; device: Device; skipped: Skip[]; check: OutputCheck | null }
  | { op: 'result'; id: number; data: Float32Array }
  | { op: 'failed'; id: number | null; error: WireError };

/**
 * Written by the worker on its stderr after it answers 'open': everything a provider's drivers printed while starting
 * (Dawn's adapter refusals) came before it on the same file descriptor, so the CLI has read it all when it sees this.
 */
export const STDERR_MARK = '\u0001cm-worker-opened';
