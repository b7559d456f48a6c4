/**
 * The harmonic fill solves the discrete Laplace equation in the hole (checked independently of the solver), keeps
 * every known pixel, and is exact on linear ramps.
 */
import { describe, expect, test } from 'vitest';
import { harmonicFill } from '../src/editing/harmonic.js';
import { Tensor } from '../src/tensor.js';
import { randomTensor, rngFor } from './helpers/arbitrary.js';

/** Largest |4-neighbour Laplacian| over the hole pixels of every plane (border pixels: neighbours inside only). */
function laplaceResidual(x: Tensor, fill: Tensor): number {
  let worst = 0;
  const { w, h } = x;
  for (let pl = 0; pl < x.n * x.c; pl++) {
    const n = Math.floor(pl / x.c);
    const m = fill.data.subarray((fill.n === 1 ? 0 : n) * w * h);
    const v = x.data.subarray(pl * w * h, (pl + 1) * w * h);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        const p = y * w + xx;
        if (!(m[p] > 0)) continue;
        let s = 0;
        for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
          const qx = xx + dx;
          const qy = y + dy;
          if (qx >= 0 && qx < w && qy >= 0 && qy < h) s += v[qy * w + qx] - v[p];
        }
        worst = Math.max(worst, Math.abs(s));
      }
    }
  }
  return worst;
}

/** A mask of random discs, some touching the image border. */
function blobs(seed: number, w: number, h: number, count: number, radius: number): Tensor {
  const rng = rngFor(seed);
  const discs = Array.from({ length: count }, () => [rng.uniform() * w, rng.uniform() * h, (0.3 + rng.uniform()) * radius]);
  return new Tensor(1, 1, h, w).map((_, i) => {
    const x = i % w;
    const y = Math.floor(i / w);
    return discs.some(([cx, cy, r]) => (x - cx) ** 2 + (y - cy) ** 2 < r * r) ? 1 : 0;
  });
}

describe('harmonicFill', () => {
  test('solves Laplace in a random hole (residual < 1e-4) and keeps every known pixel', () => {
    for (const seed of [1, 2, 3]) {
      const y = randomTensor(seed, 2, 3, 40, 56);
      const fill = blobs(seed, 56, 40, 6, 9);
      const out = harmonicFill(y, fill);
      expect(laplaceResidual(out, fill)).toBeLessThan(1e-4);
      for (let i = 0; i < y.data.length; i++) if (!fill.data[i % (40 * 56)]) expect(out.data[i]).toBe(y.data[i]);
    }
  });

  test('a large hole (the coarse-to-fine start) converges too', () => {
    const y = randomTensor(9, 1, 1, 120, 150);
    const fill = new Tensor(1, 1, 120, 150).map((_, i) => (i % 150 > 10 && i % 150 < 140 && i > 150 * 8 && i < 150 * 110 ? 1 : 0));
    expect(laplaceResidual(harmonicFill(y, fill), fill)).toBeLessThan(1e-4);
  });

  test('is exact on a linear ramp (hole away from the border)', () => {
    const w = 32;
    const ramp = new Tensor(1, 3, 24, w).map((_, i) => {
      const c = Math.floor(i / (24 * w));
      const x = i % w;
      const y = Math.floor(i / w) % 24;
      return 0.02 * x - 0.03 * y + 0.1 * c - 0.2;
    });
    const hole = ramp.map(() => 0);
    const fill = new Tensor(1, 1, 24, w).map((_, i) => (i % w >= 5 && i % w < 27 && Math.floor(i / w) >= 4 && Math.floor(i / w) < 19 ? 1 : 0));
    const out = harmonicFill(hole.map((_, i) => (fill.data[i % (24 * w)] ? 0 : ramp.data[i])), fill);
    let worst = 0;
    for (let i = 0; i < out.data.length; i++) worst = Math.max(worst, Math.abs(out.data[i] - ramp.data[i]));
    expect(worst).toBeLessThan(1e-5);
  });

  test('a mask per batch item; an empty mask changes nothing; an all-hole image stays finite', () => {
    const y = randomTensor(4, 2, 1, 8, 8);
    const fill = new Tensor(2, 1, 8, 8).map((_, i) => (i < 64 ? 0 : i % 7 === 0 ? 1 : 0));
    const out = harmonicFill(y, fill);
    expect(out.data.subarray(0, 64)).toEqual(y.data.subarray(0, 64));
    expect(laplaceResidual(out, fill)).toBeLessThan(1e-4);
    const all = harmonicFill(y, new Tensor(1, 1, 8, 8).map(() => 1));
    expect(all.data.every(Number.isFinite)).toBe(true);
  });
});
