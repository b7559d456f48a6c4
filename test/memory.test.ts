/**
 * The memory estimate's arithmetic (src/commands/memory.ts): --max-memory's sizes, the pixels of one model call, the
 * largest image that fits a budget (the inverse of the estimate), and that a 12-megapixel photo fits an ordinary
 * machine for every task. Whether the estimate covers the measured peaks is bench/memory.mjs's business.
 */
import { test as fcTest } from '@fast-check/vitest';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { CPU_BATCH } from '../src/commands/common.js';
import { callPixelsBound, estimatePeak, MEMORY_MODEL, parseMemory, pixelsThatFit, type MemoryTask } from '../src/commands/memory.js';
import { UsageError } from '../src/errors.js';

const TASKS = Object.keys(MEMORY_MODEL.tasks) as MemoryTask[];
/** The CPU's defaults for the shipped model: tiles of 128 fitted up to 192, as many a call as hold 4 of 128. */
const CPU_CALL = callPixelsBound({ tile: 128, maxTile: 192, batch: CPU_BATCH, callPixels: CPU_BATCH * 128 * 128 });

describe('parseMemory', () => {
  test.each([
    ['4G', 4 * 2 ** 30],
    ['512M', 512 * 2 ** 20],
    ['1.5g', 1.5 * 2 ** 30],
    ['2048MiB', 2 ** 31],
    ['8GB', 8 * 2 ** 30],
    ['1T', 2 ** 40],
    ['1024k', 2 ** 20],
  ])('%s', (text, bytes) => expect(parseMemory(text)).toBe(bytes));

  test.each(['4000', '0.5K', '-1G', '4X', '', 'G'])('%j is refused (a usage error)', (text) => {
    expect(() => parseMemory(text)).toThrow(UsageError);
  });
});

describe('callPixelsBound', () => {
  test("the CPU's default: 4 tiles of 128 pixels, whatever side the tiles are fitted to", () => {
    expect(CPU_CALL).toBe(4 * 128 * 128);
  });

  test('--batch without a pixel cap: batch tiles of the largest fitted side; one tile over the cap still runs', () => {
    expect(callPixelsBound({ tile: 128, maxTile: 192, batch: 16 })).toBe(16 * 192 * 192);
    expect(callPixelsBound({ tile: 256, batch: 4, callPixels: 1000 })).toBe(256 * 256);
  });
});

describe('the estimate', () => {
  const others = fc.record({
    fileBytes: fc.integer({ min: 0, max: 1 << 30 }),
    samples: fc.integer({ min: 1, max: 8 }),
    callPixels: fc.integer({ min: 64, max: 1 << 22 }),
    modelBytes: fc.integer({ min: 0, max: 1 << 30 }),
    processes: fc.integer({ min: 1, max: 8 }),
  });

  fcTest.prop([fc.constantFrom(...TASKS), others, fc.integer({ min: 1, max: 1e9 }), fc.integer({ min: 1, max: 1e9 })])(
    'grows with the pixels',
    (task, c, a, b) => {
      const [lo, hi] = a < b ? [a, b] : [b, a];
      expect(estimatePeak(task, { ...c, pixels: lo })).toBeLessThanOrEqual(estimatePeak(task, { ...c, pixels: hi }));
    },
  );

  fcTest.prop([fc.constantFrom(...TASKS), others, fc.double({ min: 2 ** 28, max: 2 ** 40, noNaN: true })])(
    'pixelsThatFit is its inverse: that many fit the budget, a few more do not',
    (task, c, budget) => {
      const fit = pixelsThatFit(task, c, budget);
      fc.pre(fit > 0);
      expect(estimatePeak(task, { ...c, pixels: fit })).toBeLessThanOrEqual(Math.ceil(budget));
      expect(estimatePeak(task, { ...c, pixels: fit + 2 })).toBeGreaterThan(budget);
    },
  );

  test.each(TASKS)('%s of a 12-megapixel photo (4000 x 3000, 4 samples) fits in 4 GiB', (task) => {
    const need = estimatePeak(task, { pixels: 4000 * 3000, fileBytes: 30 << 20, samples: 4, callPixels: CPU_CALL, modelBytes: 7 << 20, processes: 2 });
    expect(need).toBeLessThan(4 * 2 ** 30);
  });

  test('each inference process adds the worker base, one call of activations (with the margin) and twice the model file', () => {
    const c = { pixels: 3000 * 2000, fileBytes: 1 << 20, samples: 1, callPixels: CPU_CALL, modelBytes: 7 << 20 };
    const perProcess = MEMORY_MODEL.margin * (MEMORY_MODEL.worker.base + MEMORY_MODEL.worker.perCallPixel * CPU_CALL) + 2 * (7 << 20);
    for (const task of TASKS) {
      const one = estimatePeak(task, { ...c, processes: 1 });
      expect(Math.abs(estimatePeak(task, { ...c, processes: 2 }) - one - perProcess)).toBeLessThanOrEqual(1);
      expect(Math.abs(estimatePeak(task, { ...c, processes: 4 }) - one - 3 * perProcess)).toBeLessThanOrEqual(1);
    }
  });

  test('a 16000 x 16000 colorize needs more than 24 GiB (about 100 bytes a pixel, with the margin)', () => {
    expect(estimatePeak('colorize', { pixels: 16000 * 16000, fileBytes: 250e3, samples: 1, callPixels: CPU_CALL, modelBytes: 7 << 20, processes: 1 })).toBeGreaterThan(24 * 2 ** 30);
  });
});
