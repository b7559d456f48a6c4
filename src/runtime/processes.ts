/**
 * How many inference processes run a model on the CPU, and the intra-op threads of each. Pure: the caller passes the
 * machine's logical CPUs and the CM_INFERENCE_PROCESSES variable.
 *
 * Two processes working on different tile batches at once beat one process of all the threads on this network: its
 * convolutions are small (32-64 channels) and most of an int8 call is in the normalisations, quantize/dequantize and
 * layout nodes between them, which onnxruntime's intra-op threads barely speed up. Measured on a 2-core Intel Xeon
 * (AMX), onnxruntime-node 1.30, int8, 4 tiles of 128x128 (bench/results/processes.md): 136 ms in one process of 2
 * threads; 97 ms in two processes of 1 thread each running together (2 tiles per call), 98 ms with 2 threads and 1,
 * 100 ms with 2 and 2 (threads that sleep instead of spinning lose little to oversubscription). So the first process
 * keeps all the threads (a short run, which never needs another, is as fast as before: with half of them it was up
 * to 25% slower) and each other process gets an equal share. The outputs are the same to the last bit: onnxruntime gives this model the same output for 1, 2 or
 * 3 threads and for 2 or 4 tiles per call.
 */
import { UsageError } from '../errors.js';

export interface ProcessPlan {
  /** Inference processes on the CPU (a GPU always runs in one). */
  processes: number;
  /** Intra-op threads of the first process: --threads as given (0: onnxruntime's choice, one per core). */
  threads: number;
  /** Intra-op threads of each other process. */
  helperThreads: number;
}

/** The most processes CM_INFERENCE_PROCESSES may ask for. */
export const MAX_PROCESSES = 8;

/**
 * The plan for --threads `threads` (0: all of the machine's `cpus`) and CM_INFERENCE_PROCESSES `env`: two processes
 * when there are at least two threads, else one; the others with an equal share of the threads.
 */
export function planProcesses(threads: number, cpus: number, env?: string): ProcessPlan {
  const total = threads > 0 ? threads : Math.max(1, cpus);
  let processes = total >= 2 ? 2 : 1;
  if (env !== undefined && env.trim() !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1 || n > MAX_PROCESSES) {
      throw new UsageError(`Expected an integer between 1 and ${MAX_PROCESSES} for CM_INFERENCE_PROCESSES but received ${JSON.stringify(env)}`);
    }
    processes = n;
  }
  return { processes, threads, helperThreads: Math.max(1, Math.floor(total / processes)) };
}
