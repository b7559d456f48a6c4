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
import { createHash } from 'node:crypto';
import { harmonicFill } from '../src/editing/harmonic.js';
import { resample } from '../src/editing/resample.js';
import { gaussianNoise, perImageNoise, sample, type Denoiser } from '../src/sampler/sample.js';
import { karrasSigma, planForSteps, type NoiseGrid } from '../src/sampler/schedule.js';
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

  test('superres: a constant has no detail, so the output is the smooth interpolant of the patch means (the projection of any constant); orthogonally, their nearest upsampling', async () => {
    const y = randomTensor(7, 1, 3, 8, 8).map((v) => 0.5 * v);
    const op = superresOperator(y, 4, 'smooth', 0);
    const out = await run(constant(0.7), op);
    expect(maxAbsDiff(out, op.project(y.map(() => 0)))).toBeLessThan(1e-5);
    expect(maxAbsDiff(out, op.project(y.map(() => -0.3)))).toBeLessThan(1e-5);
    expect(maxAbsDiff(patchMeans(out, 4), patchMeans(y, 4))).toBeLessThan(1e-6);
    const blocky = await run(constant(0.7), superresOperator(y, 4, 'orthogonal', 0));
    expect(maxAbsDiff(blocky, upsampleNearest(patchMeans(y, 4), 4))).toBeLessThan(1e-5);
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

describe("the sampler's knobs: start, eta, samples", () => {
  const sigmas = [26, 30, 39].map((t) => karrasSigma(GRID, t));
  /** Records every input and returns 0.5 x (a shrinking denoiser), so each step's value can be predicted. */
  function halving(): Denoiser & { inputs: Tensor[] } {
    const inputs: Tensor[] = [];
    return {
      inputs,
      async denoise(x) {
        inputs.push(x.clone());
        return x.map((v) => 0.5 * v);
      },
    };
  }

  test('start "estimate": the first input is P(estimate) + sigma_0 z_0 (superres: Lanczos of the patch means)', async () => {
    const y = upsampleNearest(randomTensor(2, 1, 3, 4, 4), 4);
    const op = superresOperator(y, 4);
    const lanczos = resample(patchMeans(y, 4), 16, 16, 'lanczos3');
    expect(maxAbsDiff(op.estimate(), lanczos)).toBe(0);
    const d = halving();
    await sample(d, { operator: op, sigmas, sigmaMin: 0.002, noise: gaussianNoise(new Rng(5)), start: 'estimate', eta: 0 });
    const z0 = new Rng(5).normalTensor(1, 3, 16, 16);
    const want = op.project(lanczos).map((v, i) => v + sigmas[0] * z0.data[i]);
    expect(maxAbsDiff(d.inputs[0], want)).toBeLessThan(1e-5);
  });

  test('eta 0: the next input is the projected estimate itself; eta 0.5: half the fresh noise', async () => {
    const y = randomTensor(3, 1, 3, 8, 8);
    const fill = new Tensor(1, 1, 8, 8).map((_, i) => (i % 8 < 4 ? 1 : 0));
    const op = inpaintOperator(y, fill);
    expect(maxAbsDiff(op.estimate(), harmonicFill(y, fill))).toBe(0);
    for (const eta of [0, 0.5]) {
      const d = halving();
      const out = await sample(d, { operator: op, sigmas, sigmaMin: 0.002, noise: gaussianNoise(new Rng(8)), start: 'estimate', eta });
      const rng = new Rng(8);
      const z0 = rng.normalTensor(1, 3, 8, 8);
      const x1 = op.project(op.project(op.estimate()).map((v, i) => 0.5 * (v + sigmas[0] * z0.data[i])));
      const z1 = eta > 0 ? rng.normalTensor(1, 3, 8, 8) : new Tensor(1, 3, 8, 8);
      const scale = eta * Math.sqrt(sigmas[1] ** 2 - 0.002 ** 2);
      const second = x1.map((v, i) => v + scale * z1.data[i]);
      expect(maxAbsDiff(d.inputs[1], second)).toBeLessThan(1e-5);
      expect(maxAbsDiff(out, op.projectInRange(op.project(second.map((v) => 0.5 * v))))).toBeLessThan(1e-5);
    }
  });

  test('--samples K: the mean of K runs, run k on its own noise stream; the known data are kept', async () => {
    const y = randomTensor(4, 1, 3, 8, 8);
    const fill = new Tensor(1, 1, 8, 8).map((_, i) => (i > 20 && i < 44 ? 1 : 0));
    const op = inpaintOperator(y, fill);
    const squash: Denoiser = { denoise: async (x) => x.map((v) => Math.tanh(v)) };
    const streams = [0, 1, 2].map((k) => gaussianNoise(new Rng(6, k)));
    const mean = await sample(squash, { operator: op, sigmas, sigmaMin: 0.002, noise: streams, start: 'estimate' });
    const each = [];
    for (const k of [0, 1, 2]) each.push(await sample(squash, { operator: op, sigmas, sigmaMin: 0.002, noise: gaussianNoise(new Rng(6, k)), start: 'estimate' }));
    expect(maxAbsDiff(mean, each[0].map((v, i) => (v + each[1].data[i] + each[2].data[i]) / 3))).toBeLessThan(1e-6);
    expect(maxAbsDiff(each[0], each[1])).toBeGreaterThan(0.01);
    for (let i = 0; i < y.data.length; i++) if (!fill.data[i % 64]) expect(mean.data[i]).toBe(y.data[i]);
  });

  test("the operator's finish makes the answer from the combined samples, once (superres: deblocked, means exact)", async () => {
    const y = randomTensor(8, 1, 3, 16, 16).map((v) => 0.8 * v);
    const plain = superresOperator(y, 4, 'smooth', 0);
    const squash: Denoiser = { denoise: async (x) => x.map((v) => Math.tanh(2 * v)) };
    const run = (operator: typeof plain) =>
      sample(squash, { operator, sigmas, sigmaMin: 0.002, noise: [0, 1].map((k) => gaussianNoise(new Rng(3, k))), start: 'estimate' });
    const before = await run(plain);
    const seen: Tensor[] = [];
    const deblocked = superresOperator(y, 4);
    const finish = deblocked.finish as NonNullable<typeof deblocked.finish>;
    const out = await run({ ...plain, finish: (x) => (seen.push(x), finish(x)) });
    expect(seen.length).toBe(1);
    expect(maxAbsDiff(seen[0], before)).toBe(0);
    expect(maxAbsDiff(out, finish(before))).toBe(0);
    expect(maxAbsDiff(out, before)).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(patchMeans(out, 4), patchMeans(y, 4))).toBeLessThan(1e-6);
    expect(Math.max(...out.data.map(Math.abs))).toBeLessThanOrEqual(1);
  });

  test('an operator with its own combination gets the K runs (each in range, in order) and its result, in range', async () => {
    const y = randomTensor(5, 1, 3, 8, 8);
    const op = colorizeOperator(y);
    const squash: Denoiser = { denoise: async (x) => x.map((v) => Math.tanh(2 * v)) };
    const run = (noise: ReturnType<typeof gaussianNoise>[] | ReturnType<typeof gaussianNoise>, operator = op) =>
      sample(squash, { operator, sigmas, sigmaMin: 0.002, noise, start: 'estimate' });
    const each = [];
    for (const k of [0, 1, 2]) each.push(await run(gaussianNoise(new Rng(9, k))));
    let seen: Tensor[] = [];
    const spy = { ...op, combine: (xs: readonly Tensor[]) => ((seen = [...xs]), (op.combine as NonNullable<typeof op.combine>)(xs)) };
    const out = await run([0, 1, 2].map((k) => gaussianNoise(new Rng(9, k))), spy);
    expect(seen.length).toBe(3);
    seen.forEach((x, k) => expect(maxAbsDiff(x, each[k])).toBe(0));
    expect(maxAbsDiff(out, op.projectInRange((op.combine as NonNullable<typeof op.combine>)(each)))).toBe(0);
    expect(Math.max(...out.data.map(Math.abs))).toBeLessThanOrEqual(1);
    expect(maxAbsDiff(luminance(out), luminance(y))).toBeLessThan(1e-5);
  });

  test('colorize estimate: the gray image of the kept luminance', () => {
    const y = randomTensor(9, 1, 3, 4, 4);
    const est = colorizeOperator(y).estimate();
    const l = luminance(y);
    for (let c = 0; c < 3; c++) for (let p = 0; p < 16; p++) expect(est.data[c * 16 + p]).toBe(l.data[p]);
  });

  test('eta outside [0, 1] is refused', async () => {
    await expect(sample(constant(0), { operator: unconstrained(new Tensor(1, 3, 4, 4)), sigmas, sigmaMin: 0.002, noise: gaussianNoise(new Rng(0)), eta: 2 })).rejects.toThrow(/eta/);
  });

  test('start known, eta 1, one sample: the same bytes as the sampler before the knobs existed (commit abdb842)', async () => {
    // Hashes of the outputs of abdb842's sample() on this exact set-up (the pure sampler with an analytic
    // nonlinear denoiser, so they do not depend on onnxruntime or the CPU).
    const want = { inpaint: 'e2b52248b00f768a', superres: '514479ba21769251', colorize: '987e36892f53765c', stroke: '41c06e9c7e12d6b8' };
    const plan = [0, 11, 20, 39].map((t) => karrasSigma(GRID, t));
    const denoiser: Denoiser = { denoise: async (x, sigma) => x.map((v, i) => Math.tanh((0.8 * v) / (1 + 0.1 * sigma[0])) + 0.05 * Math.sin(i * 0.37)) };
    const r = new Rng(11);
    const y = new Tensor(2, 3, 8, 8).map(() => 2 * r.uniform() - 1);
    const fill = new Tensor(1, 1, 8, 8).map((_, i) => (i % 8 > 2 && i > 20 && i < 50 ? 1 : 0));
    const ops = {
      inpaint: inpaintOperator(y, fill),
      // the sampler's bytes, with the projection it had then (and no finish)
      superres: superresOperator(upsampleNearest(new Tensor(2, 3, 4, 4).map(() => 2 * r.uniform() - 1), 2), 2, 'orthogonal', 0),
      colorize: colorizeOperator(y),
      stroke: unconstrained(y),
    };
    const got: Record<string, string> = {};
    for (const [name, operator] of Object.entries(ops)) {
      const out = await sample(denoiser, { operator, sigmas: plan, sigmaMin: 0.002, noise: perImageNoise([new Rng(3), new Rng(4)]), start: 'known', eta: 1 });
      got[name] = createHash('sha256').update(Buffer.from(out.data.buffer)).digest('hex').slice(0, 16);
    }
    expect(got).toEqual(want);
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
