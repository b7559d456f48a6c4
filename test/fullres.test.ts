/**
 * Full-resolution editing (ALGORITHMS.md section 5): the tiler's invariants with analytic denoisers, coarse to fine
 * and windows as pure code, then the CLI on images larger than the model: no visible seams, known data exact.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, test } from 'vitest';
import { colorizeOperator, luminance } from '../src/editing/colorize.js';
import { inpaintOperator } from '../src/editing/inpaint.js';
import { unconstrained } from '../src/editing/operator.js';
import { halvingsToFit, holeWindows } from '../src/editing/regions.js';
import { patchMeans, superresOperator, upsampleNearest } from '../src/editing/superres.js';
import { Rng } from '../src/rng.js';
import { editFullResolution } from '../src/sampler/fullres.js';
import { carryUp } from '../src/sampler/pyramid.js';
import { gaussianNoise, sample, type Denoiser } from '../src/sampler/sample.js';
import { karrasSigma } from '../src/sampler/schedule.js';
import { axisGrid, mirrorPad, planTiles, rampWeight, tiledDenoiser, tileStarts } from '../src/sampler/tiles.js';
import { maxAbsDiff, Tensor } from '../src/tensor.js';
import { randomTensor } from './helpers/arbitrary.js';
import { CM_BIN, ROOT, TINY_MODEL } from './helpers/paths.js';

const GRID = { sigmaMin: 0.002, sigmaMax: 80, rho: 7, size: 40 };
const SIGMAS = [20, 28, 39].map((t) => karrasSigma(GRID, t));

/** A denoiser whose output depends on the whole tile it sees (its mean), as a network's does. */
function tileAware(calls: number[] = []): Denoiser {
  return {
    async denoise(x, sigma) {
      calls.push(x.n);
      const out = x.zerosLike();
      const size = x.imageSize;
      for (let n = 0; n < x.n; n++) {
        let m = 0;
        for (let i = 0; i < size; i++) m += x.data[n * size + i];
        m /= size;
        for (let i = 0; i < size; i++) out.data[n * size + i] = Math.tanh(0.7 * x.data[n * size + i] + 0.2 * m) / (1 + 0.01 * sigma[n]);
      }
      return out;
    },
  };
}

describe('tiles', () => {
  test('tile starts cover the axis from 0 to its end, for every shift', () => {
    for (const [size, tile, overlap] of [[200, 64, 8], [64, 64, 8], [65, 64, 16], [1000, 128, 0]]) {
      for (let shift = 0; shift < tile - overlap; shift += 7) {
        const s = tileStarts(size, tile, overlap, shift);
        expect(s[0]).toBe(0);
        expect(s[s.length - 1] + tile).toBe(Math.max(size, tile));
        for (let i = 1; i < s.length; i++) expect(s[i] - s[i - 1]).toBeLessThanOrEqual(tile - overlap);
      }
    }
  });

  test('an axis keeps its tile count at every shift, and the grid can move by twice the overlap', () => {
    for (const [size, tile, overlap] of [[2048, 128, 8], [2048, 168, 8], [768, 144, 8], [200, 64, 8], [65, 64, 16], [1000, 128, 0], [130, 128, 8]]) {
      const g = axisGrid(size, tile, overlap);
      if (size > tile) expect(g.shifts - 1).toBeGreaterThanOrEqual(Math.min(2 * overlap, tile - overlap - 1));
      for (let shift = 0; shift < g.shifts; shift++) {
        const s = tileStarts(size, tile, overlap, shift);
        expect(s.length).toBeLessThanOrEqual(g.count);
        expect(s[0]).toBe(0);
        expect(s[s.length - 1] + tile).toBe(Math.max(size, tile));
        for (let i = 1; i < s.length; i++) expect(s[i] - s[i - 1]).toBeLessThanOrEqual(tile - overlap);
      }
    }
  });

  test('fitted tiles hold no more pixels than tiles of the given side, and a pointwise denoiser cannot tell', async () => {
    const rng = new Rng(17);
    for (let k = 0; k < 200; k++) {
      const [w, h] = [8 + Math.floor(rng.uniform() * 3000), 8 + Math.floor(rng.uniform() * 3000)];
      const fixed = planTiles(w, h, 128, 8);
      const fitted = planTiles(w, h, 128, 8, 192);
      const cost = (g: typeof fixed) => g.x.count * g.y.count * g.tile ** 2;
      expect(fixed.tile).toBe(128);
      expect(fitted.tile >= 128 && fitted.tile <= 192 && fitted.tile % 8 === 0).toBe(true);
      expect(cost(fitted)).toBeLessThanOrEqual(cost(fixed));
    }
    const fit = planTiles(2048, 2048, 128, 8, 192);
    expect([fit.tile, fit.x.count, fit.y.count]).toEqual([168, 13, 13]);
    // With the same function at every pixel, blending gives that function back whatever the tiles.
    const pointwise: Denoiser = { denoise: async (x) => x.map((v) => Math.tanh(v)) };
    const x = randomTensor(9, 1, 3, 150, 333);
    const d = tiledDenoiser(pointwise, { tile: 64, overlap: 8, maxTile: 96, batch: 3 });
    for (let call = 0; call < 3; call++) expect(maxAbsDiff(await d.denoise(x, new Float32Array([1])), x.map((v) => Math.tanh(v)))).toBeLessThan(1e-6);
    // callPixels: fitted tiles larger than `tile` come fewer to a call, and the result is the same.
    const { tile } = planTiles(333, 150, 64, 8, 96);
    expect(tile).toBeGreaterThan(64);
    const calls: number[] = [];
    const byPixels = await tiledDenoiser(tileAware(calls), { tile: 64, overlap: 8, maxTile: 96, batch: 4, callPixels: 4 * 64 * 64 }).denoise(x, new Float32Array([1]));
    const byCount = await tiledDenoiser(tileAware(), { tile: 64, overlap: 8, maxTile: 96, batch: 4 }).denoise(x, new Float32Array([1]));
    const perCall = Math.max(1, Math.floor((4 * 64 * 64) / (tile * tile)));
    expect(perCall).toBeLessThan(4);
    expect(calls.slice(0, -1).every((n) => n === perCall)).toBe(true);
    expect(maxAbsDiff(byPixels, byCount)).toBe(0);
  });

  test('blend weights are positive everywhere and 1 away from the overlap', () => {
    for (let u = 0; u < 64; u++) {
      const w = rampWeight(u, 64, 8);
      expect(w).toBeGreaterThan(0);
      if (u >= 8 && u < 56) expect(w).toBe(1);
    }
  });

  test('an image of exactly one tile gives the untiled result, byte for byte', async () => {
    const y = randomTensor(3, 2, 3, 64, 64);
    const run = (d: Denoiser) => sample(d, { operator: unconstrained(y), sigmas: SIGMAS, sigmaMin: 0.002, noise: gaussianNoise(new Rng(4)) });
    const plain = await run(tileAware());
    const tiled = await run(tiledDenoiser(tileAware(), { tile: 64, overlap: 8, batch: 3 }));
    expect(Buffer.from(tiled.data.buffer).equals(Buffer.from(plain.data.buffer))).toBe(true);
  });

  test('the batch of tiles changes nothing; every call moves the grid', async () => {
    const x = randomTensor(5, 1, 3, 150, 200);
    const sigma = new Float32Array([0.5]);
    const calls: number[] = [];
    const one = tiledDenoiser(tileAware(calls), { tile: 64, overlap: 8, batch: 1 });
    const many = tiledDenoiser(tileAware(), { tile: 64, overlap: 8, batch: 7 });
    const a = await one.denoise(x, sigma);
    const b = await many.denoise(x, sigma);
    expect(maxAbsDiff(a, b)).toBe(0);
    expect(calls.every((n) => n === 1)).toBe(true);
    expect(calls.length).toBe(tileStarts(200, 64, 8, 0).length * tileStarts(150, 64, 8, 0).length);
    // The second call sees another grid, so a tile-dependent denoiser answers differently.
    expect(maxAbsDiff(await one.denoise(x, sigma), a)).toBeGreaterThan(0);
  });

  test('calls in flight at once (a model of several processes): same bits, answers taken in grid order, failures reported', async () => {
    const x = randomTensor(6, 1, 3, 150, 200);
    const sigma = new Float32Array([0.5]);
    const plain = await tiledDenoiser(tileAware(), { tile: 64, overlap: 8, batch: 4 }).denoise(x, sigma);
    // Answers come back out of order (a later call sooner), as from two processes that run at different speeds.
    let inFlight = 0;
    let most = 0;
    const sizes: number[] = [];
    const inner = tileAware(sizes);
    const racing = (parallel: number, failAt = -1): Denoiser => {
      let k = 0;
      return {
        parallel,
        async denoise(t, s) {
          const call = k++;
          inFlight++;
          most = Math.max(most, inFlight);
          await new Promise((r) => setTimeout(r, call % 2 === 0 ? 6 : 1));
          inFlight--;
          if (call === failAt) throw new Error(`call ${call} failed`);
          return inner.denoise(t, s);
        },
      };
    };
    const two = await tiledDenoiser(racing(2), { tile: 64, overlap: 8, batch: 4 }).denoise(x, sigma);
    expect(maxAbsDiff(two, plain)).toBe(0);
    expect(most).toBe(2);
    const tiles = tileStarts(200, 64, 8, 0).length * tileStarts(150, 64, 8, 0).length;
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(tiles);
    // Few tiles: split so that every process has some (4 tiles in two calls of 2, not one call of 4).
    sizes.length = 0;
    const small = randomTensor(7, 1, 3, 100, 100);
    const whole = await tiledDenoiser(tileAware(), { tile: 64, overlap: 8, batch: 4 }).denoise(small, sigma);
    expect(maxAbsDiff(await tiledDenoiser(racing(2), { tile: 64, overlap: 8, batch: 4 }).denoise(small, sigma), whole)).toBe(0);
    expect(sizes).toEqual([2, 2]);
    // A call that fails while another is in flight fails the evaluation (and leaves no unhandled rejection behind).
    most = 0;
    await expect(tiledDenoiser(racing(3, 1), { tile: 64, overlap: 8, batch: 2 }).denoise(x, sigma)).rejects.toThrow('call 1 failed');
    expect(most).toBe(3);
  });

  test('images smaller than a tile are mirrored out and cropped back; skipped tiles pass their input', async () => {
    const x = randomTensor(6, 1, 3, 40, 50);
    const padded = mirrorPad(x, 64, 64);
    expect(padded.data[(0 * 64 + 39) * 64 + 49]).toBe(x.data[39 * 50 + 49]);
    expect(padded.data[(0 * 64 + 41) * 64 + 51]).toBe(x.data[37 * 50 + 47]); // reflected about the last row/column
    const out = await tiledDenoiser(tileAware(), { tile: 64, overlap: 8, batch: 2 }).denoise(x, new Float32Array([1]));
    expect(out.shape).toEqual([1, 3, 40, 50]);
    const none = await tiledDenoiser(tileAware(), { tile: 32, overlap: 4, batch: 2, needed: () => false }).denoise(x, new Float32Array([1]));
    expect(maxAbsDiff(none, x)).toBe(0);
  });
});

describe('coarse to fine and windows', () => {
  /** Tiles of `tile` pixels, the plan SIGMAS at the coarsest level (eta as given), its last two levels above it. */
  const options = (tile: number, eta: number) => ({
    tile,
    overlap: tile / 8,
    batch: 4,
    first: { sigmas: SIGMAS, start: 'estimate' as const, eta, samples: 1 },
    refine: { sigmas: SIGMAS.slice(1), start: 'estimate' as const, eta: 0, samples: 1 },
    sigmaMin: 0.002,
  });

  test('windows: one per hole, merged when they overlap, at least a tile, inside the image', () => {
    const fill = new Tensor(1, 1, 300, 400);
    const hole = (x0: number, y0: number, s: number) => {
      for (let y = y0; y < y0 + s; y++) for (let x = x0; x < x0 + s; x++) fill.data[y * 400 + x] = 1;
    };
    hole(20, 20, 10);
    hole(300, 200, 30);
    hole(330, 250, 10); // within the second's window: merged
    const wins = holeWindows(fill, 64, 3);
    expect(wins).toHaveLength(2);
    for (const r of wins) expect(r.x >= 0 && r.y >= 0 && r.x + r.w <= 400 && r.y + r.h <= 300 && r.w >= 64 && r.h >= 64).toBe(true);
    expect(halvingsToFit(1000, 700, 64)).toBe(4);
  });

  test('a finer level starts from its own classical estimate plus the coarser level\'s sampled change, upsampled', () => {
    const img = randomTensor(21, 1, 3, 48, 64).map((v) => 0.7 * v);
    const keep = new Tensor(1, 1, 48, 64);
    for (let y = 0; y < 48; y++) for (let x = 0; x < 64; x++) keep.data[y * 64 + x] = x > 10 && x < 50 && y > 8 && y < 40 ? 0 : 1;
    const fine = inpaintOperator(img, keep);
    const coarse = fine.coarsen?.();
    if (!coarse) throw new Error('inpaint has a coarser version');
    // Sampling that changed nothing at the coarse level: the fine level gets exactly its own harmonic fill.
    expect(maxAbsDiff(carryUp(fine.estimate(), coarse.estimate(), coarse.estimate()), fine.estimate())).toBe(0);
    // A change of c everywhere at the coarse level comes up as c (bicubic keeps constants).
    const shifted = coarse.estimate().map((v) => v + 0.25);
    expect(maxAbsDiff(carryUp(fine.estimate(), coarse.estimate(), shifted), fine.estimate().map((v) => v + 0.25))).toBeLessThan(1e-5);
  });

  test('colorize coarse to fine keeps the full-resolution luminance exactly', async () => {
    const y = randomTensor(8, 1, 3, 100, 150).map((v) => 0.8 * v);
    const op = colorizeOperator(y);
    const [out] = await editFullResolution(tileAware(), [{ operator: op, seed: 3, scales: 'coarse-to-fine', maxSampledSide: 80 }], options(32, 1));
    expect(maxAbsDiff(luminance(out), luminance(y))).toBeLessThan(1e-5);
  });

  test('superres over tiles at an odd size (37x23 x4): every patch mean exact, and no patch grid where the model adds none', async () => {
    // Smooth low-res means; a denoiser that returns a flat image, so the output is the projection's own correction.
    const low = new Tensor(1, 3, 23, 37).map((_, i) => 0.5 * Math.sin((i % 37) / 6 + Math.floor(i / 37) / 5) * Math.cos(Math.floor(i / (37 * 23)) + (i % 37) / 9));
    const y = upsampleNearest(low, 4);
    const flat: Denoiser = { denoise: async (x) => x.zerosLike() };
    const run = (op: ReturnType<typeof superresOperator>) =>
      editFullResolution(flat, [{ operator: op, seed: 2, scales: 'tiles' }], { ...options(32, 0), maxTile: 40 }).then(([out]) => out);
    const [smooth, blocky] = await Promise.all([run(superresOperator(y, 4)), run(superresOperator(y, 4, 'orthogonal'))]);
    expect([smooth.w, smooth.h]).toEqual([148, 92]);
    expect(maxAbsDiff(patchMeans(smooth, 4), low)).toBeLessThan(1e-5);
    expect(maxAbsDiff(patchMeans(blocky, 4), low)).toBeLessThan(1e-5);
    const grid = (x: Tensor): number => {
      // neighbour differences across 4x4 patch borders over those inside patches
      let [a, na, b, nb] = [0, 0, 0, 0];
      for (let i = 0; i < x.data.length; i++) {
        const u = i % x.w;
        if (u + 1 === x.w) continue;
        const d = (x.data[i + 1] - x.data[i]) ** 2;
        if ((u + 1) % 4 === 0) (a += d), na++;
        else (b += d), nb++;
      }
      return a / na / (b / nb);
    };
    expect(grid(smooth)).toBeLessThan(1.5);
    expect(grid(blocky)).toBeGreaterThan(10);
  });

  test('colorize with several samples, sampled at the coarsest level only (as the CLI does) at an odd size: the luminance exact', async () => {
    const y = randomTensor(10, 1, 3, 101, 67).map((v) => 0.8 * v);
    const o = { ...options(32, 1), first: { ...options(32, 1).first, samples: 4 } };
    const [out] = await editFullResolution(tileAware(), [{ operator: colorizeOperator(y), seed: 5, scales: 'coarse-to-fine', maxSampledSide: 0 }], o);
    expect([out.w, out.h]).toEqual([67, 101]);
    expect(maxAbsDiff(luminance(out), luminance(y))).toBeLessThan(1e-5);
    expect(Math.max(...out.data.map(Math.abs))).toBeLessThanOrEqual(1);
  });

  test('inpainting in windows changes only the holes, and only their windows are evaluated', async () => {
    const y = randomTensor(9, 1, 3, 200, 300);
    const fill = new Tensor(1, 1, 200, 300).map((_, i) => ((i % 300) >= 40 && (i % 300) < 52 && i / 300 >= 30 && i / 300 < 42 ? 1 : 0));
    const op = inpaintOperator(y, fill);
    const calls: number[] = [];
    const [out] = await editFullResolution(tileAware(calls), [{ operator: op, seed: 1, scales: 'coarse-to-fine', windows: holeWindows(fill, 64, 3) }], options(64, 0));
    for (let i = 0; i < out.data.length; i++) if (!fill.data[i % 60000]) expect(out.data[i]).toBe(y.data[i]);
    expect(calls).toEqual([1, 1]); // one 64x64 window, two evaluations
    let changed = 0;
    for (let i = 0; i < out.data.length; i++) if (fill.data[i % 60000] && out.data[i] !== 0) changed++;
    expect(changed).toBe(3 * 144);
  });
});

// ---- the CLI -------------------------------------------------------------------------------------------------------

let dir: string;
const at = (name: string): string => join(dir, name);
const DEFAULT_MODEL = join(ROOT, 'models', 'default.onnx');

function cm(...args: string[]): { status: number | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, [CM_BIN, ...args, '--device', 'cpu', '-q', '--seed', '2'], { cwd: dir, maxBuffer: 64 << 20 });
  return { status: r.status, stderr: r.stderr.toString(), stdout: r.stdout.toString() };
}

async function raw(path: string): Promise<{ data: Buffer; w: number; h: number; c: number }> {
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  return { data, w: info.width, h: info.height, c: info.channels };
}

async function smooth(path: string, w: number, h: number): Promise<void> {
  const d = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      d[i] = Math.round(60 + (120 * x) / w);
      d[i + 1] = Math.round(40 + (150 * y) / h);
      d[i + 2] = Math.round(128 + 60 * Math.sin((x + y) / 60));
    }
  }
  await sharp(d, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-fullres-'));
  await smooth(at('smooth.png'), 400, 150);
  await smooth(at('big.png'), 1000, 700);
  await smooth(at('odd.png'), 333, 251);
  const m = Buffer.alloc(1000 * 700);
  for (let y = 100; y < 130; y++) for (let x = 200; x < 230; x++) m[y * 1000 + x] = 255; // a small hole
  for (let y = 400; y < 640; y++) for (let x = 500; x < 900; x++) m[y * 1000 + x] = 255; // a big one
  await sharp(m, { raw: { width: 1000, height: 700, channels: 1 } }).png().toFile(at('big-mask.png'));
});

describe('full resolution through the CLI', () => {
  test('no seams: across tile borders the gradient is within 10% of inside (default model and tiles, denoise); without overlap it is not', async () => {
    const ratio = async (overlap?: number): Promise<number> => {
      const name = `seam${overlap ?? 'default'}.png`;
      const flags = overlap === undefined ? [] : ['--overlap', String(overlap)];
      expect(cm('denoise', 'smooth.png', '--noise', '10', '--steps', '1', '--model', DEFAULT_MODEL, ...flags, '-o', name).status).toBe(0);
      const { data, w, h, c } = await raw(at(name));
      const col = new Float64Array(w - 1);
      for (let y = 0; y < h; y++) for (let x = 0; x < w - 1; x++) for (let k = 0; k < 3; k++) col[x] += Math.abs(data[(y * w + x + 1) * c + k] - data[(y * w + x) * c + k]);
      // One evaluation: the first call's grid (no shift) of tiles fitted to the image from 128 pixels up (to 192). A
      // seam sits where one tile ends and the next begins.
      const { tile } = planTiles(w, h, 128, overlap ?? 8, 192);
      const starts = tileStarts(w, tile, overlap ?? 8, 0);
      expect(starts.length).toBeGreaterThan(2);
      const border = new Set<number>();
      for (let i = 1; i < starts.length; i++) {
        border.add(starts[i] - 1); // the next tile begins
        border.add(starts[i - 1] + tile - 1); // the previous one ends
      }
      let b = 0;
      let nb = 0;
      let inside = 0;
      let ni = 0;
      for (let x = 0; x < w - 1; x++) {
        if (border.has(x)) {
          b += col[x];
          nb++;
        } else {
          inside += col[x];
          ni++;
        }
      }
      return b / nb / (inside / ni);
    };
    const blended = await ratio();
    const hard = await ratio(0);
    console.info(`gradient across tile borders / inside: ${blended.toFixed(3)} blended, ${hard.toFixed(3)} without overlap`);
    expect(Math.abs(blended - 1)).toBeLessThan(0.1);
    expect(hard).toBeGreaterThan(1.1);
  });

  test('inpaint 1000x700 (a small and a big hole): every unmasked pixel is the input', async () => {
    for (const strategy of ['auto', 'crop', 'resize']) {
      expect(cm('inpaint', 'big.png', '--mask', 'big-mask.png', '--model', TINY_MODEL, '--strategy', strategy, '-o', `big-${strategy}.png`).status).toBe(0);
      const [src, out, mask] = await Promise.all([raw(at('big.png')), raw(at(`big-${strategy}.png`)), raw(at('big-mask.png'))]);
      expect([out.w, out.h]).toEqual([1000, 700]);
      let bad = 0;
      let filled = 0;
      for (let p = 0; p < 1000 * 700; p++) {
        for (let k = 0; k < 3; k++) {
          if (mask.data[p * mask.c] === 0) bad += out.data[p * 3 + k] !== src.data[p * 3 + k] ? 1 : 0;
          else filled += out.data[p * 3 + k] !== src.data[p * 3 + k] ? 1 : 0;
        }
      }
      expect(bad).toBe(0);
      expect(filled).toBeGreaterThan(0);
    }
  });

  test('superres x4 of 333x251: 1332x1004 out, every 4x4 patch mean within 1 grey level of its input pixel', async () => {
    expect(cm('superres', 'odd.png', '-x', '4', '--model', TINY_MODEL, '-o', 'odd-x4.png').status).toBe(0);
    const [low, out] = await Promise.all([raw(at('odd.png')), raw(at('odd-x4.png'))]);
    expect([out.w, out.h]).toEqual([1332, 1004]);
    let worst = 0;
    for (let y = 0; y < 251; y++) {
      for (let x = 0; x < 333; x++) {
        for (let k = 0; k < 3; k++) {
          let s = 0;
          for (let dy = 0; dy < 4; dy++) for (let dx = 0; dx < 4; dx++) s += out.data[((4 * y + dy) * 1332 + 4 * x + dx) * 3 + k];
          worst = Math.max(worst, Math.abs(s / 16 - low.data[(y * 333 + x) * 3 + k]));
        }
      }
    }
    expect(worst).toBeLessThanOrEqual(1);
  });

  test('colorize 1000x700: the luminance within 1 grey level of the input', async () => {
    await sharp(at('big.png')).greyscale().png().toFile(at('big-gray.png'));
    expect(cm('colorize', 'big-gray.png', '--model', TINY_MODEL, '-o', 'big-colour.png').status).toBe(0);
    const [g, out] = await Promise.all([raw(at('big-gray.png')), raw(at('big-colour.png'))]);
    let worst = 0;
    for (let p = 0; p < 1000 * 700; p++) {
      const l = 0.2989 * out.data[p * 3] + 0.587 * out.data[p * 3 + 1] + 0.114 * out.data[p * 3 + 2];
      worst = Math.max(worst, Math.abs(l - g.data[p * g.c]));
    }
    expect(worst).toBeLessThanOrEqual(1);
  });

  test('--batch (tiles per call) and --tile beyond one tile never change a tiled result beyond blending', () => {
    expect(cm('superres', 'smooth.png', '-x', '2', '--model', TINY_MODEL, '--batch', '1', '-o', 'b1.png').status).toBe(0);
    expect(cm('superres', 'smooth.png', '-x', '2', '--model', TINY_MODEL, '--batch', '9', '-o', 'b9.png').status).toBe(0);
    expect(readFileSync(at('b1.png')).equals(readFileSync(at('b9.png')))).toBe(true);
  });

  test('--tile and --overlap are checked', () => {
    expect(cm('denoise', 'smooth.png', '--noise', '5', '--model', TINY_MODEL, '--tile', '60', '-o', 'x.png').stderr).toMatch(/Expected a multiple of 8 between 8 and 4096 for --tile but received 60/);
    expect(cm('denoise', 'smooth.png', '--noise', '5', '--model', TINY_MODEL, '--overlap', '64', '-o', 'x.png').status).toBe(2);
  });
});

describe('depth and alpha', () => {
  test('16-bit PNG in, 16-bit PNG out (inpaint, denoise, colorize): inpaint keeps every unmasked 16-bit value', async () => {
    const w = 96;
    const h = 80;
    const px = new Uint16Array(w * h * 4);
    for (let p = 0; p < w * h; p++) {
      px[p * 4] = (p * 97) % 65536;
      px[p * 4 + 1] = (p * 31 + 7) % 65536;
      px[p * 4 + 2] = 40000 + (p % 300);
      px[p * 4 + 3] = p % 2 ? 65535 : 1000 + p; // alpha, 16-bit too
    }
    await sharp(px, { raw: { width: w, height: h, channels: 4 } }).toColourspace('rgb16').png().toFile(at('deep.png'));
    const m = Buffer.alloc(w * h);
    for (let y = 30; y < 50; y++) for (let x = 40; x < 60; x++) m[y * w + x] = 255;
    await sharp(m, { raw: { width: w, height: h, channels: 1 } }).png().toFile(at('deep-mask.png'));
    expect(cm('inpaint', 'deep.png', '--mask', 'deep-mask.png', '--model', TINY_MODEL, '-o', 'deep-out.png').status).toBe(0);
    const meta = await sharp(at('deep-out.png')).metadata();
    expect([meta.depth, meta.channels]).toEqual(['ushort', 4]);
    const { data } = await sharp(at('deep-out.png')).toColourspace('rgb16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
    const out = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
    for (let p = 0; p < w * h; p++) {
      const x = p % w;
      const y = (p - x) / w;
      const hole = y >= 30 && y < 50 && x >= 40 && x < 60;
      for (let c = 0; c < 4; c++) if (!hole || c === 3) expect(out[p * 4 + c]).toBe(px[p * 4 + c]);
    }
    for (const [task, extra] of [['denoise', ['--noise', '5']], ['colorize', []]] as const) {
      expect(cm(task, 'deep.png', ...extra, '--model', TINY_MODEL, '-o', `deep-${task}.png`).status).toBe(0);
      expect((await sharp(at(`deep-${task}.png`)).metadata()).depth).toBe('ushort');
    }
  });

  test('superres resizes the alpha channel with the image', async () => {
    const w = 20;
    const h = 16;
    const px = Buffer.alloc(w * h * 4);
    for (let p = 0; p < w * h; p++) px.set([p % 256, 100, 50, p % w < 10 ? 255 : 0], p * 4);
    await sharp(px, { raw: { width: w, height: h, channels: 4 } }).png().toFile(at('alpha.png'));
    expect(cm('superres', 'alpha.png', '-x', '2', '--model', TINY_MODEL, '-o', 'alpha-x2.png').status).toBe(0);
    const { data, info } = await sharp(at('alpha-x2.png')).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([40, 32, 4]);
    expect(data[(5 * 40 + 2) * 4 + 3]).toBe(255); // opaque left half
    expect(data[(5 * 40 + 37) * 4 + 3]).toBe(0); // transparent right half
  });
});
