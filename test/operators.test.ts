/**
 * Property tests for every operator: idempotent projection, known coordinates equal to the reference's, the closed
 * forms equal to the dense-matrix definition, and the start equal to A^T[(A y)(1 - Omega)].
 */
import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import { colorizeOperator, LUMA, luminance } from '../src/editing/colorize.js';
import { inpaintOperator } from '../src/editing/inpaint.js';
import type { Operator } from '../src/editing/operator.js';
import { patchMeans, superresOperator, upsampleNearest } from '../src/editing/superres.js';
import { maxAbsDiff, Tensor } from '../src/tensor.js';
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
});

describe('superres operator', () => {
  test.prop([seed, batch, side, side, fc.constantFrom(2, 4, 8)])('matches the per-patch orthogonal definition', (s, n, h, w, p) => {
    const y = randomTensor(s, n, 3, h, w);
    const x = randomTensor(s + 13, n, 3, h, w);
    const means = (t: Tensor): Tensor => patchMeans(t, p);
    checkOperator(superresOperator(y, p), superresBlocks(n, 3, h, w, p, rngFor(s + 2)), y, x, means);
  });

  test.prop([seed, fc.constantFrom(2, 4)])('nearest upsampling has the low-res pixels as patch means', (s, p) => {
    const low = randomTensor(s, 1, 3, 4, 4);
    expect(maxAbsDiff(patchMeans(upsampleNearest(low, p), p), low)).toBeLessThan(TOL);
  });

  test('rejects a factor that does not divide the image', () => {
    expect(() => superresOperator(new Tensor(1, 3, 8, 8), 3)).toThrow(/does not divide/);
  });
});

