/**
 * How many inference processes run a model on the CPU, and with how many threads each (processes.ts).
 */
import { describe, expect, test } from 'vitest';
import { UsageError } from '../src/errors.js';
import { MAX_PROCESSES, planProcesses } from '../src/runtime/processes.js';

describe('inference processes', () => {
  test('two processes when there are two threads or more, else one; the first keeps --threads, the others share them equally', () => {
    expect(planProcesses(0, 2)).toEqual({ processes: 2, threads: 0, helperThreads: 1 });
    expect(planProcesses(0, 16)).toEqual({ processes: 2, threads: 0, helperThreads: 8 });
    expect(planProcesses(0, 3)).toEqual({ processes: 2, threads: 0, helperThreads: 1 });
    expect(planProcesses(5, 64)).toEqual({ processes: 2, threads: 5, helperThreads: 2 });
    // One thread, or a machine of one CPU: one process.
    expect(planProcesses(1, 16)).toEqual({ processes: 1, threads: 1, helperThreads: 1 });
    expect(planProcesses(0, 1)).toEqual({ processes: 1, threads: 0, helperThreads: 1 });
  });

  test('CM_INFERENCE_PROCESSES sets the count (blank: the default); anything but 1 to 8 is a usage error naming it', () => {
    expect(planProcesses(0, 2, '1').processes).toBe(1);
    expect(planProcesses(4, 2, '1')).toEqual({ processes: 1, threads: 4, helperThreads: 4 });
    expect(planProcesses(0, 8, '4')).toEqual({ processes: 4, threads: 0, helperThreads: 2 });
    expect(planProcesses(0, 2, '4')).toEqual({ processes: 4, threads: 0, helperThreads: 1 });
    expect(planProcesses(0, 2, ' ').processes).toBe(2);
    for (const bad of ['0', '1.5', 'two', String(MAX_PROCESSES + 1)]) {
      expect(() => planProcesses(0, 2, bad)).toThrow(UsageError);
      expect(() => planProcesses(0, 2, bad)).toThrow(`for CM_INFERENCE_PROCESSES but received "${bad}"`);
    }
  });
});
