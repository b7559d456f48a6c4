/**
 * Our separable bicubic / Lanczos-3 resampler against PIL's Image.resize (float mode, fixtures/resample-ref.json,
 * made by fixtures/make-resample-ref.py), plus the properties a resampler must have.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { resample, type Kernel } from '../src/editing/resample.js';
import { Tensor } from '../src/tensor.js';
import { randomTensor } from './helpers/arbitrary.js';
import { fixture } from './helpers/paths.js';

interface Ref {
  width: number;
  height: number;
  input: number[];
  cases: { kernel: Kernel; width: number; height: number; values: number[] }[];
}
const ref = JSON.parse(readFileSync(fixture('resample-ref.json'), 'utf8')) as Ref;

describe('resample', () => {
  const input = new Tensor(1, 1, ref.height, ref.width, Float32Array.from(ref.input));
  for (const c of ref.cases) {
    test(`${c.kernel} ${ref.width}x${ref.height} -> ${c.width}x${c.height} matches PIL`, () => {
      const out = resample(input, c.width, c.height, c.kernel);
      expect([out.w, out.h]).toEqual([c.width, c.height]);
      let worst = 0;
      for (let i = 0; i < c.values.length; i++) worst = Math.max(worst, Math.abs(out.data[i] - c.values[i]));
      expect(worst).toBeLessThan(1e-5);
    });
  }

  test('a constant image stays constant, every channel and batch item on its own', () => {
    const x = new Tensor(2, 3, 6, 5).map((_, i) => Math.floor(i / 30) * 0.1 - 0.3);
    for (const kernel of ['bicubic', 'lanczos3'] as const) {
      const out = resample(x, 17, 11, kernel);
      for (let p = 0; p < 6; p++) {
        for (let i = 0; i < 17 * 11; i++) expect(out.data[p * 187 + i]).toBeCloseTo(p * 0.1 - 0.3, 6);
      }
    }
  });

  test('bicubic reproduces a linear ramp away from the border, Lanczos nearly', () => {
    const x = new Tensor(1, 1, 16, 16).map((_, i) => 0.05 * (i % 16) - 0.4);
    const out = resample(x, 64, 64, 'bicubic');
    // Output column i samples the input at (i + 0.5) / 4 - 0.5.
    for (let i = 12; i < 52; i++) expect(out.data[20 * 64 + i]).toBeCloseTo(0.05 * ((i + 0.5) / 4 - 0.5) - 0.4, 6);
  });

  test('same size is a copy; sizes must be positive integers', () => {
    const x = randomTensor(1, 1, 3, 8, 8);
    expect(resample(x, 8, 8, 'lanczos3').data).toEqual(x.data);
    expect(() => resample(x, 0, 8, 'bicubic')).toThrow(/positive integer/);
  });
});
