/**
 * The sampler with analytic denoisers (no ONNX): each task's output equals the value predicted by hand.
 */
import { describe, expect, test } from 'vitest';
import { colorizeOperator, LUMA, luminance } from '../src/editing/colorize.js';
import { inpaintOperator } from '../src/editing/inpaint.js';
import { slerp, slerpFrames } from '../src/editing/interpolate.js';
import { unconstrained } from '../src/editing/operator.js';
import { patchMeans, superresOperator, upsampleNearest } from '../src/editing/superres.js';
import { Rng } from '../src/rng.js';
import { gaussianNoise, sample, type Denoiser } from '../src/sampler/sample.js';
import { planForSteps, type NoiseGrid } from '../src/sampler/schedule.js';
import { maxAbsDiff, Tensor } from '../src/tensor.js';
import { randomTensor } from './helpers/arbitrary.js';

const GRID: NoiseGrid = { sigmaMin: 0.002, sigmaMax: 80, rho: 7, size: 40 };
const TWO = planForSteps(GRID, 2, { '2': [0, 22, 39] }).sigmas;

/** A denoiser that returns the same value everywhere and records what it was called with. */
function constant(c: number): Denoiser & { calls: { x: Tensor; sigma: number[] }[] } {
  const calls: { x: Tensor; sigma: number[] }[] = [];
  return {
    calls,
    async denoise(x, sigma) {
      calls.push({ x: x.clone(), sigma: [...sigma] });
      return x.map(() => c);
    },
  };
}

const run = (d: Denoiser, operator: ReturnType<typeof unconstrained>, seed = 1, sigmas: readonly number[] = TWO) =>
  sample(d, { operator, sigmas, sigmaMin: GRID.sigmaMin, noise: gaussianNoise(new Rng(seed)) });

describe('sampler with a constant denoiser', () => {
  test('generation returns the constant, after one call per evaluation at the plan sigmas', async () => {
    const d = constant(0.3);
    const out = await run(d, unconstrained(new Tensor(2, 3, 8, 8)));
    expect(Math.max(...out.data.map((v) => Math.abs(v - 0.3)))).toBeLessThan(1e-6);
    expect(d.calls.map((c) => c.sigma)).toEqual([[80, 80], [TWO[1], TWO[1]]].map((r) => r.map((v) => Math.fround(v))));
  });

  test('the denoiser output is clamped to [-1, 1]', async () => {
    const out = await run(constant(5), unconstrained(new Tensor(1, 3, 4, 4)));
    expect(Math.max(...out.data)).toBe(1);
  });

  test('the first input is start + sigma_max z and the second x0 + sqrt(sigma^2 - eps^2) z', async () => {
    const d = constant(0.25);
    const y = randomTensor(3, 1, 3, 8, 8);
    await run(d, unconstrained(y), 42);
    const rng = new Rng(42);
    const z0 = rng.normalTensor(1, 3, 8, 8);
    const z1 = rng.normalTensor(1, 3, 8, 8);
    const scale = Math.sqrt(TWO[1] ** 2 - 0.002 ** 2);
    expect(maxAbsDiff(d.calls[0].x, y.map((v, i) => v + 80 * z0.data[i]))).toBeLessThan(1e-3);
    expect(maxAbsDiff(d.calls[1].x, z1.map((v) => 0.25 + scale * v))).toBeLessThan(1e-5);
  });

  test('inpaint: kept pixels are the reference exactly, filled ones the constant', async () => {
    const y = randomTensor(5, 1, 3, 8, 8);
    const fill = new Tensor(1, 1, 8, 8).map((_, i) => (i % 3 === 0 ? 1 : 0));
    const out = await run(constant(-0.4), inpaintOperator(y, fill));
    for (let i = 0; i < out.data.length; i++) {
      expect(out.data[i]).toBeCloseTo(fill.data[i % 64] ? -0.4 : y.data[i], 6);
    }
  });

  test('colorize: the constant gray shifted along w to the reference luminance', async () => {
    const y = randomTensor(6, 1, 3, 8, 8).map((v) => 0.5 * v);
    const c = 0.1;
    const out = await run(constant(c), colorizeOperator(y));
    const ly = luminance(y);
    const norm2 = LUMA.reduce((s, w) => s + w * w, 0);
    const sumW = LUMA.reduce((s, w) => s + w, 0);
    for (let ch = 0; ch < 3; ch++) {
      for (let p = 0; p < 64; p++) {
        expect(out.data[ch * 64 + p]).toBeCloseTo(c + (LUMA[ch] * (ly.data[p] - c * sumW)) / norm2, 5);
      }
    }
  });

  test('superres: a constant has no detail, so the output is the nearest upsampling of the patch means', async () => {
    const y = randomTensor(7, 1, 3, 8, 8);
    const out = await run(constant(0.7), superresOperator(y, 4));
    expect(maxAbsDiff(out, upsampleNearest(patchMeans(y, 4), 4))).toBeLessThan(1e-5);
  });

  test('denoise: one call f(y, sigma) on the noisy image itself, no noise added', async () => {
    const halve: Denoiser & { seen?: Tensor } = {
      async denoise(x) {
        this.seen = x.clone();
        return x.map((v) => 0.5 * v);
      },
    };
    const y = randomTensor(8, 1, 3, 8, 8);
    const out = await sample(halve, {
      operator: unconstrained(y),
      sigmas: [0.2, 0.002],
      sigmaMin: 0.002,
      noise: gaussianNoise(new Rng(1)),
      startIsNoisy: true,
    });
    expect(maxAbsDiff(halve.seen!, y)).toBe(0);
    expect(maxAbsDiff(out, y.map((v) => 0.5 * v))).toBeLessThan(1e-7);
  });

  test('the same seed gives the same output; another seed another', async () => {
    const noisy: Denoiser = { denoise: async (x) => x.map((v) => Math.tanh(v / 80)) };
    const op = unconstrained(new Tensor(1, 3, 8, 8));
    const a = await run(noisy, op, 9);
    const b = await run(noisy, op, 9);
    const c = await run(noisy, op, 10);
    expect(maxAbsDiff(a, b)).toBe(0);
    expect(maxAbsDiff(a, c)).toBeGreaterThan(0);
  });

  test('progress: one event per evaluation', async () => {
    const events: number[] = [];
    await sample(constant(0), {
      operator: unconstrained(new Tensor(1, 3, 4, 4)),
      sigmas: planForSteps(GRID, 3).sigmas,
      sigmaMin: 0.002,
      noise: gaussianNoise(new Rng(0)),
      onStep: (e) => events.push(e.step * 10 + e.steps),
    });
    expect(events).toEqual([13, 23, 33]);
  });
});

describe('interpolation noise', () => {
  test('slerp ends at both noises and keeps the norm of equal-norm noises', () => {
    const rng = new Rng(3);
    const z1 = rng.normalTensor(1, 3, 16, 16);
    const z2 = rng.normalTensor(1, 3, 16, 16);
    const frames = slerpFrames(z1, z2, 5);
    expect(maxAbsDiff(frames.image(0), z1)).toBeLessThan(1e-6);
    expect(maxAbsDiff(frames.image(4), z2)).toBeLessThan(1e-6);
    const norm = (v: Float32Array): number => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    const unit1 = z1.data.map((v) => v / norm(z1.data));
    const unit2 = z2.data.map((v) => v / norm(z2.data));
    for (const a of [0.25, 0.5, 0.75]) expect(norm(slerp(unit1, unit2, a))).toBeCloseTo(1, 5);
  });
});
