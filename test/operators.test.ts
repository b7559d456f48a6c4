/**
 * Property tests for every operator: idempotent projection, known coordinates equal to the reference's, the closed
 * forms equal to the dense-matrix definition, and the start equal to A^T[(A y)(1 - Omega)].
 */
import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import { colorizeOperator, LUMA, luminance } from '../src/editing/colorize.js';
import { inpaintOperator } from '../src/editing/inpaint.js';
import { stackOperators, unconstrained, type Operator } from '../src/editing/operator.js';
import { resample } from '../src/editing/resample.js';
import { DEBLOCK, deblockPatchBorders, patchMeans, superresOperator, upsampleNearest } from '../src/editing/superres.js';
import { concatBatch, maxAbsDiff, Tensor } from '../src/tensor.js';
import { batch, randomTensor, rngFor, seed, side } from './helpers/arbitrary.js';
import { colorizeBlocks, dot, denseProject, inpaintBlocks, orthogonalWithFirstRow, superresBlocks, type Block } from './helpers/dense.js';

const TOL = 1e-5;

function randomMask(s: number, n: number, h: number, w: number): Tensor {
  const rng = rngFor(s);
  const m = new Tensor(n, 1, h, w);
  for (let i = 0; i < m.data.length; i++) m.data[i] = rng.uniform() < 0.5 ? 1 : 0;
  return m;
}

/** The properties every projection must have, checked against its dense definition. */
function checkOperator(op: Operator, blocks: Block[], y: Tensor, x: Tensor, known: (t: Tensor) => Tensor): void {
  const px = op.project(x);
  // closed form == definition
  expect(maxAbsDiff(px, denseProject(blocks, y, x))).toBeLessThan(TOL);
  // idempotent
  expect(maxAbsDiff(op.project(px), px)).toBeLessThan(TOL);
  // known coordinates equal the reference's
  expect(maxAbsDiff(known(px), known(y))).toBeLessThan(TOL);
  // the reference is a fixed point
  expect(maxAbsDiff(op.project(y), y)).toBeLessThan(TOL);
  // start = A^T[(A y)(1 - Omega)] = P(0)
  expect(maxAbsDiff(op.start, denseProject(blocks, y, y.zerosLike()))).toBeLessThan(TOL);
  // the in-range projection: values in [-1, 1], known data kept, idempotent, and P itself where P(x) is in range
  const far = x.map((v) => 3 * v);
  const r = op.projectInRange(far);
  expect(Math.max(...r.data)).toBeLessThanOrEqual(1);
  expect(Math.min(...r.data)).toBeGreaterThanOrEqual(-1);
  expect(maxAbsDiff(known(r), known(y))).toBeLessThan(1e-4);
  expect(maxAbsDiff(op.projectInRange(r), r)).toBeLessThan(1e-4);
  const mid = op.project(y.map((v, i) => 0.5 * v + 0.5 * x.data[i]));
  if (Math.max(...mid.data.map(Math.abs)) <= 1) expect(maxAbsDiff(op.projectInRange(mid), mid)).toBeLessThan(1e-4);
}

describe('dense oracle', () => {
  test.prop([seed, fc.integer({ min: 2, max: 16 })])('builds orthogonal matrices with the requested first row', (s, k) => {
    const rng = rngFor(s);
    const first = Array.from({ length: k }, () => rng.normal());
    const q = orthogonalWithFirstRow(first, rng);
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < k; j++) expect(Math.abs(dot(q[i], q[j]) - (i === j ? 1 : 0))).toBeLessThan(1e-9);
    }
    const norm = Math.sqrt(dot(first, first));
    first.forEach((v, i) => expect(q[0][i]).toBeCloseTo(v / norm, 9));
  });
});

describe('inpaint operator', () => {
  test.prop([seed, batch, side, side])('matches A^T[(Ay)(1-Omega) + (Ax)Omega] with A = I', (s, n, h, w) => {
    const y = randomTensor(s, n, 3, h, w);
    const x = randomTensor(s ^ 0x5bd1e995, n, 3, h, w);
    const fill = randomMask(s + 1, 1, h, w);
    const keep = (t: Tensor): Tensor => t.map((v, i) => (fill.data[i % (h * w)] === 0 ? v : 0));
    checkOperator(inpaintOperator(y, fill), inpaintBlocks(y, fill), y, x, keep);
  });

  test.prop([seed, side])('keeps unmasked pixels bit-exactly and takes masked ones from x', (s, h) => {
    const y = randomTensor(s, 1, 3, h, h);
    const x = randomTensor(s + 7, 1, 3, h, h);
    const fill = randomMask(s + 3, 1, h, h);
    const px = inpaintOperator(y, fill).project(x);
    for (let i = 0; i < px.data.length; i++) {
      expect(px.data[i]).toBe(fill.data[i % (h * h)] ? x.data[i] : y.data[i]);
    }
  });

  test('rejects a mask of another size', () => {
    expect(() => inpaintOperator(new Tensor(1, 3, 8, 8), new Tensor(1, 1, 8, 4))).toThrow(/does not fit/);
  });
});

describe('colorize operator', () => {
  test.prop([seed, batch, side, side])('matches the per-pixel orthogonal definition', (s, n, h, w) => {
    const y = randomTensor(s, n, 3, h, w);
    const x = randomTensor(s + 11, n, 3, h, w);
    checkOperator(colorizeOperator(y), colorizeBlocks(n, h, w, rngFor(s + 5), LUMA), y, x, luminance);
  });

  const odd = fc.integer({ min: 1, max: 23 });
  test.prop([seed, batch, odd, odd, fc.integer({ min: 2, max: 6 })])(
    'combining samples keeps the luminance exactly and the range, at any size',
    (s, n, h, w, k) => {
      const y = randomTensor(s, n, 3, h, w);
      const op = colorizeOperator(y);
      const xs = Array.from({ length: k }, (_, j) => op.projectInRange(op.project(randomTensor(s + 31 * (j + 1), n, 3, h, w))));
      const c = op.combine?.(xs) as Tensor;
      expect(maxAbsDiff(luminance(c), luminance(y))).toBeLessThan(1e-6);
      expect(Math.max(...c.data.map(Math.abs))).toBeLessThanOrEqual(1 + 1e-3);
      const r = op.projectInRange(c);
      expect(Math.max(...r.data.map(Math.abs))).toBeLessThanOrEqual(1);
      expect(maxAbsDiff(luminance(r), luminance(y))).toBeLessThan(1e-5);
    },
  );

  test.prop([seed, odd, odd, fc.double({ min: 0.1, max: 0.3, noNaN: true })])(
    'where the samples disagree (green against purple) a neutral surface stays neutral; where they agree their colour stays',
    (s, h, w, a) => {
      const gray = randomTensor(s, 1, 1, h, w).map((v) => 0.5 * v);
      const y = new Tensor(1, 3, h, w).map((_, i) => gray.data[i % (h * w)]);
      const op = colorizeOperator(y);
      // A chroma direction (luminance 0): green-ish one way, purple-ish the other.
      const u = [1, -0.5, -(LUMA[0] - 0.5 * LUMA[1]) / LUMA[2]];
      const tinted = (t: number): Tensor => op.project(y.map((v, i) => v + t * u[Math.floor(i / (h * w))]));
      const chroma = (x: Tensor): number => Math.max(...x.data.map((v, i) => Math.abs(v - y.data[i])));
      // 8 samples: +a and -a in turn, with a small common tint b = a / 10 (their plain mean).
      const b = a / 10;
      const mixed = op.combine?.(Array.from({ length: 8 }, (_, j) => tinted((j % 2 ? -a : a) + b))) as Tensor;
      expect(chroma(mixed)).toBeLessThan(0.02 * chroma(tinted(b)));
      const agreed = op.combine?.(Array.from({ length: 8 }, () => tinted(a))) as Tensor;
      expect(maxAbsDiff(agreed, tinted(a))).toBeLessThan(1e-5);
    },
  );
});

describe('superres operator', () => {
  test.prop([seed, batch, side, side, fc.constantFrom(2, 4, 8)])('orthogonal: matches the per-patch orthogonal definition', (s, n, h, w, p) => {
    const y = randomTensor(s, n, 3, h, w);
    const x = randomTensor(s + 13, n, 3, h, w);
    const means = (t: Tensor): Tensor => patchMeans(t, p);
    checkOperator(superresOperator(y, p, 'orthogonal'), superresBlocks(n, 3, h, w, p, rngFor(s + 2)), y, x, means);
  });

  // Odd low-res sizes (the CLI's 333x251 x4 is 1332x1004): 5x3 to 13x9 low-res pixels, a batch of 1 or 2.
  const lowSide = fc.integer({ min: 1, max: 13 });
  test.prop([seed, batch, lowSide, lowSide, fc.constantFrom(2, 4, 8)])(
    'smooth: means exact, idempotent, the reference a fixed point, the start as before, the in-range projection in range with the means',
    (s, n, lh, lw, p) => {
      const [h, w] = [lh * p, lw * p];
      const y = randomTensor(s, n, 3, h, w);
      const x = randomTensor(s + 13, n, 3, h, w);
      const op = superresOperator(y, p);
      const px = op.project(x);
      expect(maxAbsDiff(patchMeans(px, p), patchMeans(y, p))).toBeLessThan(1e-6);
      expect(maxAbsDiff(op.project(px), px)).toBeLessThan(1e-6);
      expect(maxAbsDiff(op.project(y), y)).toBeLessThan(1e-6);
      expect(maxAbsDiff(op.start, superresOperator(y, p, 'orthogonal').start)).toBe(0);
      const r = op.projectInRange(x.map((v) => 3 * v));
      expect(Math.max(...r.data.map(Math.abs))).toBeLessThanOrEqual(1);
      expect(maxAbsDiff(patchMeans(r, p), patchMeans(y, p))).toBeLessThan(1e-4);
    },
  );

  // Each round leaves at most 1 - min(eig(patchmean o U))^2 of the error in the means: patchmean o Lanczos is 0.65 to
  // 1.09 per axis (0.6 left), patchmean o the cubic B-spline 0.2 to 1 (0.96 left).
  test.prop([seed, lowSide, lowSide, fc.constantFrom(2, 4), fc.constantFrom(['smooth', 'bspline3', 400] as const, ['lanczos', 'lanczos3', 60] as const)])(
    'smooth and lanczos: the limit of back-projection x <- x + U(patchmean(y) - patchmean(x)), U their upsampling',
    (s, lh, lw, p, [correction, kernel, rounds]) => {
      const y = randomTensor(s, 1, 3, lh * p, lw * p);
      let x = randomTensor(s + 5, 1, 3, lh * p, lw * p);
      const target = patchMeans(y, p);
      const px = superresOperator(y, p, correction).project(x);
      for (let k = 0; k < rounds; k++) {
        const m = patchMeans(x, p);
        const up = resample(target.map((v, i) => v - m.data[i]), x.w, x.h, kernel);
        x = x.map((v, i) => v + up.data[i]);
      }
      expect(maxAbsDiff(px, x)).toBeLessThan(1e-5);
    },
  );

  test.prop([fc.double({ min: 0, max: 6.28, noNaN: true }), fc.constantFrom(2, 4, 8)])(
    'smooth: a smooth image stays smooth (low-frequency means from a flat start), where the orthogonal one shows the grid',
    (phase, p) => {
      const y = upsampleNearest(slowWaveMeans(phase), p);
      const flat = y.map(() => 0);
      const smooth = superresOperator(y, p).project(flat);
      const blocky = superresOperator(y, p, 'orthogonal').project(flat);
      expect(borderEnergy(smooth, p)).toBeLessThan(1.35);
      expect(borderEnergy(blocky, p)).toBeGreaterThan(10);
    },
  );

  test.prop([seed, batch, lowSide, lowSide, fc.constantFrom(2, 4, 8), fc.constantFrom('smooth', 'lanczos', 'orthogonal' as const)])(
    'in range: values in [-1, 1], means exact, idempotent, and an in-range image with the means left as it is',
    (s, n, lh, lw, p, correction) => {
      const y = randomTensor(s, n, 3, lh * p, lw * p).map((v) => 0.9 * v);
      const op = superresOperator(y, p, correction);
      const r = op.projectInRange(randomTensor(s + 7, n, 3, lh * p, lw * p).map((v) => 2.5 * v));
      expect(Math.max(...r.data.map(Math.abs))).toBeLessThanOrEqual(1);
      expect(maxAbsDiff(patchMeans(r, p), patchMeans(y, p))).toBeLessThan(1e-6);
      // idempotent to float precision (a patch's sum of 64 float32 values is checked against its mean to 1e-7)
      expect(maxAbsDiff(op.projectInRange(r), r)).toBeLessThan(1e-6);
      expect(maxAbsDiff(op.projectInRange(y), y)).toBeLessThan(1e-6);
    },
  );

  test.prop([seed, lowSide, lowSide, fc.constantFrom(2, 4, 8), fc.constantFrom('smooth', 'lanczos' as const), fc.boolean()])(
    'in range: the rounds computed where they matter give the alternating projections P(clamp(x)), then the same last step',
    (s, lh, lw, p, correction, sparse) => {
      // x with the means (as the sampler's last step has it): out of range everywhere, or at a few spikes only.
      const y = randomTensor(s, 1, 3, lh * p, lw * p).map((v) => 0.9 * v);
      const op = superresOperator(y, p, correction);
      const noise = randomTensor(s + 5, 1, 3, lh * p, lw * p);
      const x = op.project(sparse ? y.map((v, i) => (noise.data[i] > 0.97 ? v + 8 * noise.data[i] : v)) : noise.map((v) => 2.5 * v));
      let dense = x.clone();
      const out = (t: Tensor) => t.data.some((v) => v < -1 || v > 1);
      for (let k = 0; k < 8 && out(dense); k++) dense = op.project(dense.map((v) => Math.min(1, Math.max(-1, v))));
      // The orthogonal operator's in-range step is the last step alone (it has no rounds).
      const want = superresOperator(y, p, 'orthogonal').projectInRange(dense);
      expect(maxAbsDiff(op.projectInRange(x), want)).toBeLessThan(1e-5);
    },
  );

  test.prop([seed, fc.constantFrom(2, 4), fc.constantFrom('smooth', 'lanczos' as const)], { numRuns: 8 })(
    'in range: on a 48x40 low-res image out of range at three spikes (rows and runs far from them skipped), the same as the alternating projections',
    (s, p, correction) => {
      const [lh, lw] = [48, 40];
      const y = randomTensor(s, 1, 3, lh * p, lw * p).map((v) => 0.9 * v);
      const op = superresOperator(y, p, correction);
      const spikes = new Map<number, number>();
      for (let k = 0; k < 3; k++) {
        const at = Math.floor(((s * (k + 3) * 2654435761) % 2 ** 32) / 2 ** 32 * y.data.length);
        spikes.set(at, k % 2 ? -6 : 6);
      }
      const x = op.project(y.map((v, i) => v + (spikes.get(i) ?? 0)));
      let dense = x.clone();
      const out = (t: Tensor) => t.data.some((v) => v < -1 || v > 1);
      for (let k = 0; k < 8 && out(dense); k++) dense = op.project(dense.map((v) => Math.min(1, Math.max(-1, v))));
      const want = superresOperator(y, p, 'orthogonal').projectInRange(dense);
      expect(maxAbsDiff(op.projectInRange(x), want)).toBeLessThan(1e-5);
    },
  );

  test.prop([fc.double({ min: 0, max: 1, noNaN: true }), fc.constantFrom(4, 8)])(
    'in range, smooth: a smooth ring over the range comes back smooth, where moving whole patches shows the grid',
    (shift, p) => {
      // A ring peaking at 1.3, its means those of its clipped self (in range); x is its smooth projection (means
      // exact, peaks still over 1), so only the in-range step changes it.
      const [lh, lw] = [10, 14];
      const ring = new Tensor(1, 1, lh * p, lw * p).map((_, i) => {
        const r = Math.hypot((i % (lw * p)) / p - 7 - shift, Math.floor(i / (lw * p)) / p - 5);
        return 1.5 * Math.exp(-((r - 3) ** 2) / 0.72) - 0.2;
      });
      const y = upsampleNearest(patchMeans(ring.map((v) => Math.min(1, v)), p), p);
      const x = superresOperator(y, p).project(ring);
      expect(Math.max(...x.data)).toBeGreaterThan(1.1);
      const smooth = superresOperator(y, p).projectInRange(x);
      const blocky = superresOperator(y, p, 'orthogonal').projectInRange(x);
      for (const r of [smooth, blocky]) {
        expect(Math.max(...r.data.map(Math.abs))).toBeLessThanOrEqual(1);
        expect(maxAbsDiff(patchMeans(r, p), patchMeans(y, p))).toBeLessThan(1e-6);
      }
      expect(borderEnergy(smooth, p)).toBeLessThan(borderEnergy(x, p) + 0.3);
      expect(borderEnergy(blocky, p)).toBeGreaterThan(1.4 * borderEnergy(smooth, p));
    },
  );

  test.prop([seed, fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), fc.constantFrom(2, 4, 8), fc.double({ min: 0, max: 1, noNaN: true })])(
    'deblocking: a step across a border shrinks by 3/8 of the strength on each side, pixels away from the borders and constant images are kept',
    (s, lh, lw, p, strength) => {
      const c = randomTensor(s, 1, 3, 1, 1);
      const flat = new Tensor(1, 3, lh * p, lw * p).map((_, i) => c.data[Math.floor(i / (lh * p * lw * p))]);
      expect(maxAbsDiff(deblockPatchBorders(flat, p, strength), flat)).toBeLessThan(1e-7);
      // Columns left of the border at column k have value a, the others b (one vertical border, rows alike).
      if (lw < 2) return;
      const k = p * Math.ceil(lw / 2);
      const [a, b] = [-0.3, 0.5];
      const step = new Tensor(1, 1, lh * p, lw * p).map((_, i) => (i % (lw * p) < k ? a : b));
      const out = deblockPatchBorders(step, p, strength);
      const d = (3 * strength * (b - a)) / 8;
      for (let i = 0; i < out.data.length; i++) {
        const u = i % (lw * p);
        const want = u === k - 1 ? a + d : u === k ? b - d : step.data[i];
        expect(out.data[i]).toBeCloseTo(want, 6);
      }
      // The same step turned a quarter: across a horizontal border (rows above k have a).
      const turned = new Tensor(1, 1, lw * p, lh * p).map((_, i) => (Math.floor(i / (lh * p)) < k ? a : b));
      const outT = deblockPatchBorders(turned, p, strength);
      for (let i = 0; i < outT.data.length; i++) {
        const v = Math.floor(i / (lh * p));
        expect(outT.data[i]).toBeCloseTo(v === k - 1 ? a + d : v === k ? b - d : turned.data[i], 6);
      }
    },
  );

  test.prop([seed, batch, lowSide, lowSide, fc.constantFrom(2, 4, 8)])(
    'finish: deblocked with the means exact and values in range, and the patch grid fainter than before',
    (s, n, lh, lw, p) => {
      const y = randomTensor(s, n, 3, lh * p, lw * p).map((v) => 0.9 * v);
      const op = superresOperator(y, p);
      // A sampler's output: in range, the means exact, blocky (half the nearest upsampling of the means, half their
      // smooth interpolant).
      const zero = y.map(() => 0);
      const blocky = superresOperator(y, p, 'orthogonal', 0).project(zero);
      const x = op.projectInRange(op.project(zero).map((v, i) => 0.5 * v + 0.5 * blocky.data[i]));
      const r = (op.finish as NonNullable<typeof op.finish>)(x);
      expect(Math.max(...r.data.map(Math.abs))).toBeLessThanOrEqual(1);
      expect(maxAbsDiff(patchMeans(r, p), patchMeans(y, p))).toBeLessThan(1e-6);
      if (lh >= 8 && lw >= 8) expect(borderEnergy(r, p)).toBeLessThan(borderEnergy(x, p));
      expect(superresOperator(y, p, 'smooth', 0).finish).toBeUndefined();
      expect(DEBLOCK[p]).toBeGreaterThan(0);
      // In a batch beside an operator without a finish: each image finished by its own operator, or kept.
      if (n === 1) {
        const other = unconstrained(x);
        const both = stackOperators([op, other, op]);
        const done = (both.finish as NonNullable<typeof both.finish>)(concatBatch([x, x, x]));
        expect(maxAbsDiff(done.image(0), r)).toBe(0);
        expect(maxAbsDiff(done.image(1), x)).toBe(0);
        expect(maxAbsDiff(done.image(2), r)).toBe(0);
      }
    },
  );

  test.prop([fc.double({ min: 0, max: 6.28, noNaN: true }), fc.constantFrom(2, 4, 8)])(
    'finish: a smooth image stays smooth and nearly as it was',
    (phase, p) => {
      const y = upsampleNearest(slowWaveMeans(phase), p);
      const op = superresOperator(y, p);
      const smooth = op.project(y.map(() => 0));
      const r = (op.finish as NonNullable<typeof op.finish>)(smooth);
      expect(borderEnergy(r, p)).toBeLessThanOrEqual(borderEnergy(smooth, p));
      // a grey level is 0.0078 in these units
      expect(maxAbsDiff(r, smooth)).toBeLessThan(0.01);
    },
  );

  test.prop([seed, fc.constantFrom(2, 4)])('nearest upsampling has the low-res pixels as patch means', (s, p) => {
    const low = randomTensor(s, 1, 3, 4, 4);
    expect(maxAbsDiff(patchMeans(upsampleNearest(low, p), p), low)).toBeLessThan(TOL);
  });

  test('rejects a factor that does not divide the image', () => {
    expect(() => superresOperator(new Tensor(1, 3, 8, 8), 3)).toThrow(/does not divide/);
  });
});

/**
 * Mean squared difference of neighbours across p x p patch borders over that of neighbours inside patches (1 for a
 * linear ramp, large for a patch grid), away from the image's own border (3 patches).
 */
/** 16x12 low-res means of a slow wave plus a ramp: every feature spans several patches. */
function slowWaveMeans(phase: number): Tensor {
  const [lh, lw] = [12, 16];
  return new Tensor(1, 3, lh, lw).map((_, i) => {
    const u = i % lw;
    const v = Math.floor(i / lw) % lh;
    return 0.4 * Math.sin((2 * Math.PI * u) / lw + phase) * Math.cos((2 * Math.PI * v) / lh) + 0.02 * u - 0.3;
  });
}

function borderEnergy(x: Tensor, p: number): number {
  let across = 0;
  let inside = 0;
  let na = 0;
  let ni = 0;
  const m = 3 * p;
  for (let nc = 0; nc < x.n * x.c; nc++) {
    for (let i = m; i < x.h - m; i++) {
      for (let u = m; u < x.w - m; u++) {
        const at = (a: number, b: number): number => x.data[(nc * x.h + a) * x.w + b];
        const dx = (at(i, u + 1) - at(i, u)) ** 2;
        const dy = (at(i + 1, u) - at(i, u)) ** 2;
        if ((u + 1) % p === 0) (across += dx), na++;
        else (inside += dx), ni++;
        if ((i + 1) % p === 0) (across += dy), na++;
        else (inside += dy), ni++;
      }
    }
  }
  return across / na / (inside / ni);
}
