/**
 * Tiles with nothing left to change (tiles.ts `settle`, the CLI's --flat-below): a tile the model left (nearly)
 * unchanged at a call skips the later, lower-sigma calls and gives its input, blended with its usual weights. With a
 * model that leaves flat tiles exactly unchanged the result is bit-identical to evaluating every tile; the known data
 * stays exact; noisy inputs and a new sample evaluate everything again. End to end: the real small model.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { fc, test as fcTest } from '@fast-check/vitest';
import { describe, expect, test } from 'vitest';
import { patchMeans, superresOperator, upsampleNearest } from '../src/editing/superres.js';
import { Rng } from '../src/rng.js';
import { editFullResolution } from '../src/sampler/fullres.js';
import { gaussianNoise, sample, type Denoiser } from '../src/sampler/sample.js';
import { tiledDenoiser } from '../src/sampler/tiles.js';
import { maxAbsDiff, Tensor } from '../src/tensor.js';
import { rngFor } from './helpers/arbitrary.js';
import { CM_BIN, ROOT } from './helpers/paths.js';

/**
 * A model whose answer on a tile is x + a (x - the tile's mean in that channel) / (1 + sigma): exactly x on a flat tile, a change
 * elsewhere (and one that depends on the whole tile, as a network's does).
 */
function sharpening(a = 0.3): Denoiser & { tiles: number[] } {
  const tiles: number[] = [];
  return {
    tiles,
    async denoise(x, sigma) {
      tiles.push(x.n);
      const out = x.zerosLike();
      const plane = x.h * x.w;
      for (let k = 0; k < x.n * x.c; k++) {
        const n = Math.floor(k / x.c);
        let m = 0;
        for (let i = 0; i < plane; i++) m += x.data[k * plane + i];
        m /= plane;
        for (let i = 0; i < plane; i++) out.data[k * plane + i] = x.data[k * plane + i] + (a * (x.data[k * plane + i] - m)) / (1 + sigma[n]);
      }
      return out;
    },
  };
}

/** A w x h image of one colour per channel with a textured w/4 x h/4 block at (bx, by). */
function flatWithBlock(seed: number, w: number, h: number, bx: number, by: number): Tensor {
  const rng = rngFor(seed);
  const x = new Tensor(1, 3, h, w);
  for (let c = 0; c < 3; c++) {
    const v = 2 * rng.uniform() - 1;
    for (let r = 0; r < h; r++) {
      for (let u = 0; u < w; u++) {
        const inBlock = u >= bx && u < bx + w / 4 && r >= by && r < by + h / 4;
        x.data[(c * h + r) * w + u] = inBlock ? 2 * rng.uniform() - 1 : v;
      }
    }
  }
  return x;
}

const tileOptions = { tile: 32, overlap: 4, batch: 3 };

describe('settled tiles', () => {
  fcTest.prop([fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 0, max: 152 }), fc.integer({ min: 0, max: 112 })], { numRuns: 10 })(
    'a model that leaves flat tiles unchanged gives bit-identical results with skipping, and flat tiles are skipped',
    async (seed, bx, by) => {
      const x = flatWithBlock(seed, 192, 128, bx, by);
      const every = tiledDenoiser(sharpening(), tileOptions);
      // A threshold below any float change: settled pixels are exactly the unchanged ones.
      const skipping = tiledDenoiser(sharpening(), { ...tileOptions, settle: 1e-30 });
      let a = x;
      let b = x;
      for (const s of [0.8, 0.4, 0.2, 0.05]) {
        a = await every.denoise(a, new Float32Array([s]));
        b = await skipping.denoise(b, new Float32Array([s]));
        expect(maxAbsDiff(a, b)).toBe(0);
      }
      expect(every.tiles.skipped).toBe(0);
      expect(skipping.tiles.skipped).toBeGreaterThan(0);
      expect(skipping.tiles.run + skipping.tiles.skipped).toBe(every.tiles.run);
    },
  );

  test('nothing is skipped at a call whose sigma is not below the last one (a new sample), nor without a threshold', async () => {
    const x = flatWithBlock(3, 96, 64, 0, 0);
    const d = tiledDenoiser(sharpening(), { ...tileOptions, settle: 2 / 255 });
    await d.denoise(x, new Float32Array([0.5]));
    const first = d.tiles;
    expect(first.skipped).toBe(0);
    await d.denoise(x, new Float32Array([0.5]));
    expect(d.tiles.skipped).toBe(0);
    await d.denoise(x, new Float32Array([0.2]));
    expect(d.tiles.skipped).toBeGreaterThan(0);
    const off = tiledDenoiser(sharpening(), tileOptions);
    for (const s of [0.5, 0.2, 0.1]) await off.denoise(x, new Float32Array([s]));
    expect(off.tiles.skipped).toBe(0);
  });

  test('a skipped tile gives its input, blended with its usual weights: where the model changes flat tiles a little, the result moves by about that little', async () => {
    const x = flatWithBlock(5, 96, 64, 40, 16);
    // A model that adds a small constant everywhere (below the threshold) and sharpens the block.
    const inner = sharpening();
    const nudged: Denoiser = {
      async denoise(t, s) {
        const out = await inner.denoise(t, s);
        for (let i = 0; i < out.data.length; i++) out.data[i] += 0.5 / 255;
        return out;
      },
    };
    const every = tiledDenoiser(nudged, tileOptions);
    const skipping = tiledDenoiser(nudged, { ...tileOptions, settle: 2 / 255 });
    const a1 = await every.denoise(x, new Float32Array([0.5]));
    const b1 = await skipping.denoise(x, new Float32Array([0.5]));
    expect(maxAbsDiff(a1, b1)).toBe(0);
    const a2 = await every.denoise(a1, new Float32Array([0.2]));
    const b2 = await skipping.denoise(b1, new Float32Array([0.2]));
    expect(skipping.tiles.skipped).toBeGreaterThan(0);
    expect(maxAbsDiff(a2, b2)).toBeLessThan(2 / 255);
    expect(maxAbsDiff(a2, b2)).toBeGreaterThan(0);
  });

  test('one-tile images of a batch: the settled ones keep their input, the others go to the model alone', async () => {
    const flat = flatWithBlock(1, 32, 32, 32, 32); // the block lies outside: flat
    const busy = flatWithBlock(2, 32, 32, 0, 0);
    const x = new Tensor(2, 3, 32, 32);
    x.data.set(flat.data, 0);
    x.data.set(busy.data, flat.data.length);
    const model = sharpening();
    const d = tiledDenoiser(model, { ...tileOptions, settle: 2 / 255 });
    const y1 = await d.denoise(x, new Float32Array([0.5, 0.5]));
    const y2 = await d.denoise(y1, new Float32Array([0.2, 0.2]));
    expect(model.tiles).toEqual([2, 1]);
    expect(d.tiles).toEqual({ run: 3, skipped: 1 });
    expect(Array.from(y2.data.subarray(0, flat.data.length))).toEqual(Array.from(flat.data));
  });

  fcTest.prop([fc.integer({ min: 0, max: 1e6 })], { numRuns: 6 })('superres with skipping keeps the known patch means exactly (eta 0 plan)', async (seed) => {
    const gt = flatWithBlock(seed, 96, 64, 24, 16);
    const y = upsampleNearest(patchMeans(gt, 4), 4);
    const op = superresOperator(y, 4);
    const model = sharpening(0.05);
    const [out] = await editFullResolution(model, [{ operator: op, seed, scales: 'tiles' }], {
      tile: 32,
      overlap: 4,
      batch: 4,
      settle: 2 / 255,
      first: { sigmas: [0.3, 0.2, 0.1, 0.05, 0.002], start: 'estimate', eta: 0, samples: 1, views: false },
      refine: { sigmas: [0.1, 0.002], start: 'estimate', eta: 0, samples: 1, views: false },
      sigmaMin: 0.002,
    });
    expect(maxAbsDiff(patchMeans(out, 4), patchMeans(y, 4))).toBeLessThan(1e-5);
  });

  test('with fresh noise between steps (eta 1) nothing settles', async () => {
    const gt = flatWithBlock(9, 96, 64, 24, 16);
    const op = superresOperator(upsampleNearest(patchMeans(gt, 4), 4), 4);
    const d = tiledDenoiser(sharpening(), { ...tileOptions, settle: 2 / 255 });
    await sample(d, { operator: op, sigmas: [0.5, 0.3, 0.1, 0.002], sigmaMin: 0.002, noise: gaussianNoise(new Rng(1)), start: 'estimate', eta: 1 });
    expect(d.tiles.skipped).toBe(0);
  });
});

describe('cm --flat-below (the real small model)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-flat-'));
  const run = (...args: string[]) => spawnSync(process.execPath, [CM_BIN, ...args], { cwd: ROOT, encoding: 'utf8' });

  // On one flat colour the default plan's later steps still change single pixels by up to ~20 grey levels (what is
  // left of the start's noise), so the default of 1 skips nothing there; 32 skips.
  test('a flat image: tiles are skipped and said in --json; 0 skips none; the patch means stay exact', async () => {
    const w = 64;
    const h = 48;
    const px = Buffer.alloc(w * h * 3);
    for (let i = 0; i < w * h; i++) px.set([90, 140, 200], 3 * i);
    const input = join(dir, 'flat.png');
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(input);
    const counts: Record<string, { run: number; skipped: number }> = {};
    for (const level of ['0', '32']) {
      const out = join(dir, `out-${level}.png`);
      const r = run('superres', '-x', '4', input, '-o', out, '--device', 'cpu', '--seed', '0', '--json', '-q', '--flat-below', level);
      expect(r.status, r.stderr).toBe(0);
      counts[level] = JSON.parse(r.stdout.trim()).tiles;
      const { data } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
      // 4x4 patch means of the output: the input's colour (within 8-bit rounding).
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let p = 0; p < 16 * w * h; p++) s += data[3 * p + c];
        expect(Math.abs(s / (16 * w * h) - [90, 140, 200][c])).toBeLessThan(0.5);
      }
    }
    expect(counts['0'].skipped).toBe(0);
    expect(counts['32'].skipped).toBeGreaterThan(0);
    expect(counts['32'].run + counts['32'].skipped).toBe(counts['0'].run);
  }, 120_000);

  test('a bad --flat-below: one line naming the flag, exit 2, no output', () => {
    const out = join(dir, 'bad.png');
    const r = run('superres', '-x', '2', join(ROOT, 'fixtures', 'does-not-matter.png'), '-o', out, '--flat-below', '-1');
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('--flat-below');
    expect(existsSync(out)).toBe(false);
  });
});
