/**
 * Dihedral views (--quality best, plans with "views"): the eight mirror/turn transforms, undone exactly; a tiled
 * denoiser evaluates each tile in the view asked for; the sampler walks the views over steps and samples.
 */
import { fc, test as prop } from '@fast-check/vitest';
import { describe, expect, test } from 'vitest';
import { unconstrained } from '../src/editing/operator.js';
import { Rng } from '../src/rng.js';
import { gaussianNoise, sample, VIEW_ORDER, type Denoiser } from '../src/sampler/sample.js';
import { tiledDenoiser } from '../src/sampler/tiles.js';
import { fromView, maxAbsDiff, Tensor, toView } from '../src/tensor.js';
import { randomTensor, seed } from './helpers/arbitrary.js';

const at = (t: Tensor, n: number, c: number, y: number, x: number): number => t.data[((n * t.c + c) * t.h + y) * t.w + x];

describe('dihedral views', () => {
  prop.prop([seed, fc.integer({ min: 1, max: 7 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 0, max: 7 })])(
    'fromView undoes toView exactly, on any shape',
    (s, h, w, v) => {
      const t = randomTensor(s, 2, 3, h, w);
      const turned = toView(t, v);
      expect(turned.shape).toEqual(v % 2 === 1 ? [2, 3, w, h] : [2, 3, h, w]);
      expect(Array.from(fromView(turned, v).data)).toEqual(Array.from(t.data));
    },
  );

  test('the eight views are the eight symmetries of a square, with numpy.rot90 and fliplr conventions', () => {
    const t = randomTensor(3, 1, 1, 3, 3);
    const seen = new Set(Array.from({ length: 8 }, (_, v) => Array.from(toView(t, v).data).join(',')));
    expect(seen.size).toBe(8);
    // A quarter turn counter-clockwise: the top-right corner comes to the top left.
    expect(at(toView(t, 1), 0, 0, 0, 0)).toBe(at(t, 0, 0, 0, 2));
    // View 4 is the mirror: the top-right corner comes to the top left too, but the top-left stays in the top row.
    expect(at(toView(t, 4), 0, 0, 0, 0)).toBe(at(t, 0, 0, 0, 2));
    expect(at(toView(t, 4), 0, 0, 0, 2)).toBe(at(t, 0, 0, 0, 0));
    // Composition: two quarter turns are a half turn; the mirror twice is the identity.
    expect(Array.from(toView(toView(t, 1), 1).data)).toEqual(Array.from(toView(t, 2).data));
    expect(Array.from(toView(toView(t, 4), 4).data)).toEqual(Array.from(t.data));
    expect(new Set(VIEW_ORDER).size).toBe(8);
  });
});

/** A "model" that knows left from right: it adds a ramp across the width of what it sees. */
const leftToRight: Denoiser = {
  async denoise(x) {
    return x.map((v, i) => v + 0.01 * (i % x.w));
  },
};

describe('a tiled denoiser in a view', () => {
  test('each tile is evaluated mirrored or turned and turned back: the ramp comes out along the view', async () => {
    const x = randomTensor(5, 1, 3, 96, 80);
    const tiled = tiledDenoiser(leftToRight, { tile: 32, overlap: 4, batch: 3 });
    const plain = await tiled.denoise(x, Float32Array.of(0.1));
    const mirrored = await tiled.denoise(x, Float32Array.of(0.1), 4);
    const turned = await tiled.denoise(x, Float32Array.of(0.1), 1);
    // Away from tile borders (pure 32-pixel tiles would blend ramps of neighbours), compare the within-tile slope.
    const slope = (t: Tensor, dy: number, dx: number): number => at(t, 0, 0, 10 + dy, 10 + dx) - at(x, 0, 0, 10 + dy, 10 + dx) - (at(t, 0, 0, 10, 10) - at(x, 0, 0, 10, 10));
    expect(slope(plain, 0, 1)).toBeCloseTo(0.01, 5);
    expect(slope(mirrored, 0, 1)).toBeCloseTo(-0.01, 5); // mirrored: the ramp runs right to left
    expect(slope(turned, 1, 0)).toBeCloseTo(0.01, 5); // a quarter turn (counter-clockwise): the ramp runs top to bottom
    expect(Math.abs(slope(turned, 0, 1))).toBeLessThan(1e-6);
  });

  test('a model that commutes with mirrors and turns (pointwise) gives the same answer in every view', async () => {
    const pointwise: Denoiser = { denoise: async (x, s) => x.map((v) => Math.tanh(v) / (1 + s[0])) };
    const x = randomTensor(9, 2, 3, 70, 45);
    const tiled = tiledDenoiser(pointwise, { tile: 32, overlap: 4, batch: 4, small: 64 });
    const base = await tiled.denoise(x, Float32Array.of(0.3, 0.3));
    for (let v = 1; v < 8; v++) expect(maxAbsDiff(await tiled.denoise(x, Float32Array.of(0.3, 0.3), v), base)).toBeLessThan(1e-6);
  });
});

describe('the sampler with views', () => {
  test('evaluation e of a run is in view VIEW_ORDER[e mod 8], over steps and samples; without views, view 0 only', async () => {
    const seen: (number | undefined)[] = [];
    const spy: Denoiser = {
      views: true,
      async denoise(x, _s, view) {
        seen.push(view);
        return x.map((v) => 0.5 * v);
      },
    };
    const op = unconstrained(randomTensor(1, 1, 3, 8, 8));
    const noise = (k: number) => gaussianNoise(new Rng(7, k));
    await sample(spy, { operator: op, sigmas: [0.5, 0.2, 0.1, 0.002], sigmaMin: 0.002, noise: [noise(0), noise(1), noise(2)], start: 'estimate', eta: 0, views: true });
    expect(seen).toEqual(Array.from({ length: 9 }, (_, e) => VIEW_ORDER[e % 8]));
    seen.length = 0;
    await sample(spy, { operator: op, sigmas: [0.5, 0.002], sigmaMin: 0.002, noise: noise(0), start: 'estimate', eta: 0 });
    expect(seen).toEqual([undefined]);
  });

  test('views need a denoiser that takes them', async () => {
    const op = unconstrained(randomTensor(1, 1, 3, 8, 8));
    await expect(sample(leftToRight, { operator: op, sigmas: [0.5, 0.002], sigmaMin: 0.002, noise: gaussianNoise(new Rng(1)), views: true })).rejects.toThrow(/views/);
  });
});
