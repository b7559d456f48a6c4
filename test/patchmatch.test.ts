/**
 * PatchMatch completion (src/editing/patchmatch.ts) and the inpaint operator's --fill estimates: known pixels exact
 * (odd sizes, several holes, holes at the border, coarse levels, through tiles), a periodic texture continued into the
 * hole with its period, deterministic under a seed; the CLI's --fill end to end on the shipped model.
 */
import { fc, test } from '@fast-check/vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect } from 'vitest';
import { classicalFill, inpaintOperator, TEXTURED } from '../src/editing/inpaint.js';
import { fillWindows, patchFill, surroundTexture } from '../src/editing/patchmatch.js';
import { holeWindows } from '../src/editing/regions.js';
import { editFullResolution } from '../src/sampler/fullres.js';
import type { Denoiser } from '../src/sampler/sample.js';
import { karrasSigma } from '../src/sampler/schedule.js';
import { maxAbsDiff, Tensor } from '../src/tensor.js';
import { randomTensor, rngFor } from './helpers/arbitrary.js';
import { CM_BIN, ROOT, TINY_MODEL } from './helpers/paths.js';

/** A texture of period px x py: a random tile repeated (values in [-0.9, 0.9]). */
function periodic(seed: number, c: number, h: number, w: number, px: number, py: number): Tensor {
  const tile = randomTensor(seed, 1, c, py, px);
  const t = new Tensor(1, c, h, w);
  for (let k = 0; k < c; k++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) t.data[(k * h + y) * w + x] = 0.9 * tile.data[(k * py + (y % py)) * px + (x % px)];
  return t;
}

function boxes(h: number, w: number, rects: [number, number, number, number][]): Tensor {
  const m = new Tensor(1, 1, h, w);
  for (const [x0, y0, bw, bh] of rects) for (let y = y0; y < y0 + bh; y++) for (let x = x0; x < x0 + bw; x++) m.data[y * w + x] = 1;
  return m;
}

/** Every value outside the hole equal to y's, bit for bit; how many inside differ from `inside`. */
function knownExact(out: Tensor, y: Tensor, fill: Tensor): void {
  const plane = y.w * y.h;
  let bad = 0;
  for (let i = 0; i < y.data.length; i++) {
    const n = fill.n === 1 ? 0 : Math.floor(i / y.imageSize);
    if (!(fill.data[n * plane + (i % plane)] > 0) && out.data[i] !== y.data[i]) bad++;
  }
  expect(bad).toBe(0);
}

describe('PatchMatch completion', () => {
  test('a periodic texture: the hole is filled with that texture, its period found in the fill', () => {
    const [px, py] = [6, 5];
    const truth = periodic(4, 3, 77, 83, px, py);
    const fill = boxes(77, 83, [[30, 25, 21, 19]]);
    const y = truth.map((v, i) => (fill.data[i % (77 * 83)] ? 0 : v)); // nothing of the hole's truth goes in
    const out = patchFill(y, fill, 7);
    knownExact(out, y, fill);
    // The fill is the texture itself (with its phase: the border fixes it), so it repeats with the period ...
    const plane = 77 * 83;
    let err = 0;
    let n = 0;
    for (let i = 0; i < out.data.length; i++) {
      if (!fill.data[i % plane]) continue;
      err += Math.abs(out.data[i] - truth.data[i]);
      n++;
    }
    expect(err / n).toBeLessThan(0.01);
    // ... and the autocorrelation inside the hole peaks at the period, not at a shift of one or two.
    const shiftDiff = (dx: number, dy: number): number => {
      let s = 0;
      let k = 0;
      for (let c = 0; c < 3; c++) {
        for (let yy = 25; yy + dy < 44; yy++) {
          for (let xx = 30; xx + dx < 51; xx++) {
            s += Math.abs(out.data[(c * 77 + yy) * 83 + xx] - out.data[(c * 77 + yy + dy) * 83 + xx + dx]);
            k++;
          }
        }
      }
      return s / k;
    };
    expect(shiftDiff(px, 0)).toBeLessThan(0.01);
    expect(shiftDiff(0, py)).toBeLessThan(0.01);
    for (const [dx, dy] of [[1, 0], [2, 0], [3, 0], [0, 1], [0, 2]]) expect(shiftDiff(dx, dy)).toBeGreaterThan(0.1);
  });

  test.prop([fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 33, max: 71 }), fc.integer({ min: 33, max: 71 })], { numRuns: 12 })(
    'odd sizes, several holes, holes at the border: every known value exact, every hole value in range, one seed one answer',
    (s, w, h) => {
      const rng = rngFor(s);
      const y = randomTensor(s, 1, 3, h, w).map((v) => 0.95 * v);
      const rects: [number, number, number, number][] = [[0, 0, 5, 7]]; // the corner
      for (let k = 0; k < 3; k++) {
        const bw = 2 + Math.floor(rng.uniform() * 12);
        const bh = 2 + Math.floor(rng.uniform() * 12);
        rects.push([Math.floor(rng.uniform() * (w - bw)), Math.floor(rng.uniform() * (h - bh)), bw, bh]);
      }
      const fill = boxes(h, w, rects);
      const out = patchFill(y, fill, s);
      knownExact(out, y, fill);
      expect(Math.max(...out.data.map(Math.abs))).toBeLessThanOrEqual(0.95 + 1e-6);
      expect(maxAbsDiff(patchFill(y, fill, s), out)).toBe(0);
    },
  );

  test.prop([fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 1 })], { numRuns: 3 })(
    'a big hole (three coarser levels), odd size, with the harmonic base: every known value exact, in range, one seed one answer',
    (s, dw, dh) => {
      const [w, h] = [151 + 2 * dw, 109 + 2 * dh];
      const y = randomTensor(s, 1, 3, h, w).map((v) => 0.9 * v);
      const fill = boxes(h, w, [[37, 27, 77, 55]]); // a quarter of the image
      const out = classicalFill(y, fill, { fill: 'patch', seed: s });
      knownExact(out, y, fill);
      expect(Math.max(...out.data.map(Math.abs))).toBeLessThanOrEqual(1);
      expect(maxAbsDiff(classicalFill(y, fill, { fill: 'patch', seed: s }), out)).toBe(0);
    },
  );

  test('a big hole in a textured region beside a smooth one: the finer levels keep what the coarse level copied, texture and all', () => {
    // Fine noise over a slow wave; the top rows and the right columns carry the wave alone (smooth sources).
    const [w, h] = [161, 121];
    const noise = randomTensor(5, 1, 3, h, w);
    const t = new Tensor(1, 3, h, w);
    for (let c = 0; c < 3; c++) {
      for (let yy = 0; yy < h; yy++) {
        for (let xx = 0; xx < w; xx++) {
          const i = (c * h + yy) * w + xx;
          t.data[i] = 0.3 * Math.sin(xx / 7 + c) * Math.cos(yy / 9) + (yy < 24 || xx > 140 ? 0 : 0.4 * noise.data[i]);
        }
      }
    }
    const [x0, y0, bw, bh] = [40, 30, 81, 61];
    const fill = boxes(h, w, [[x0, y0, bw, bh]]);
    // High-frequency energy inside the hole (each value against the mean of its 4 neighbours).
    const hf = (img: Tensor): number => {
      let e = 0;
      for (let c = 0; c < 3; c++) {
        for (let yy = y0 + 1; yy < y0 + bh - 1; yy++) {
          for (let xx = x0 + 1; xx < x0 + bw - 1; xx++) {
            const i = (c * h + yy) * w + xx;
            e += (img.data[i] - (img.data[i - 1] + img.data[i + 1] + img.data[i - w] + img.data[i + w]) / 4) ** 2;
          }
        }
      }
      return e;
    };
    // Finer levels that started from the coarse values enlarged copied the smooth rows only: 0.000 for seeds 1-8.
    // From their own pixels of the coarse copies: 0.14-0.32 (still well under the photo's 1: see patchmatch.ts).
    for (const seed of [1, 2]) expect(hf(patchFill(t, fill, seed)) / hf(t)).toBeGreaterThan(0.1);
  });

  test('two images, one mask each; a window with no whole known patch keeps the base (the harmonic fill)', () => {
    const y = randomTensor(3, 2, 3, 40, 45);
    const fill = new Tensor(2, 1, 40, 45);
    for (let i = 0; i < 40 * 45; i++) {
      const x = i % 45;
      const r = Math.floor(i / 45);
      fill.data[i] = x > 10 && x < 20 && r > 5 && r < 17 ? 1 : 0;
      fill.data[40 * 45 + i] = (x + r) % 4 === 0 ? 1 : 0; // holes everywhere: no 7x7 patch is whole
    }
    const base = y.map((v) => v * 0.5);
    const out = patchFill(y, fill, 1, { base });
    knownExact(out, y, fill);
    // image 1: every hole value is the base's
    for (let i = 0; i < 3 * 40 * 45; i++) if (fill.data[40 * 45 + (i % (40 * 45))]) expect(out.data[3 * 40 * 45 + i]).toBe(base.data[3 * 40 * 45 + i]);
  });

  test.prop([fc.integer({ min: 0, max: 1000 }), fc.double({ min: -0.3, max: 0.3, noNaN: true })], { numRuns: 6 })(
    "the base's shading is taken whole, in a thin stroke too: a base that is the fill plus a constant gives the fill plus that constant",
    (s, d) => {
      const [w, h] = [67, 59];
      const y = randomTensor(s, 1, 3, h, w).map((v) => 0.5 * v);
      // a stroke 3 pixels wide and a 13 x 11 box: near their borders the unnormalised blur gave half of d or less
      const fill = boxes(h, w, [[8, 20, 40, 3], [40, 35, 13, 11]]);
      const alone = patchFill(y, fill, s); // no base, no shading: the search does not depend on the base
      const base = alone.map((v, i) => (fill.data[i % (w * h)] ? v + d : v));
      const out = patchFill(y, fill, s, { base });
      knownExact(out, y, fill);
      let worst = 0;
      for (let i = 0; i < out.data.length; i++) if (fill.data[i % (w * h)]) worst = Math.max(worst, Math.abs(out.data[i] - alone.data[i] - d));
      expect(worst).toBeLessThan(1e-5);
    },
  );

  test('surroundTexture: flat surroundings score 0, noise far above the auto threshold', () => {
    const fill = boxes(64, 64, [[24, 24, 16, 16]]);
    const [r] = fillWindows(fill);
    expect(surroundTexture(new Tensor(1, 3, 64, 64).map(() => 0.3), fill, 0, r)).toBe(0);
    expect(surroundTexture(randomTensor(2, 1, 3, 64, 64).map((v) => 0.5 * v), fill, 0, r)).toBeGreaterThan(100 * TEXTURED);
  });
});

describe('the inpaint operator with --fill', () => {
  const y = randomTensor(12, 1, 3, 61, 53).map((v) => 0.8 * v);
  const fill = boxes(61, 53, [[10, 12, 15, 9], [30, 40, 8, 11]]);

  test('patch and auto estimates keep the known data; auto is smooth on flat surroundings and patches on textured ones', () => {
    for (const f of ['patch', 'auto'] as const) knownExact(inpaintOperator(y, fill, { fill: f, seed: 3 }).estimate(), y, fill);
    const flat = new Tensor(1, 3, 61, 53).map((_, i) => 0.2 + 0.001 * (i % 53));
    const smooth = classicalFill(flat, fill);
    expect(maxAbsDiff(inpaintOperator(flat, fill, { fill: 'auto', seed: 3 }).estimate(), smooth)).toBeLessThan(1e-5); // solved per window
    expect(maxAbsDiff(inpaintOperator(y, fill, { fill: 'auto', seed: 3 }).estimate(), inpaintOperator(y, fill, { fill: 'patch', seed: 3 }).estimate())).toBe(0);
  });

  test('its coarser levels carry the patch fill halved, their known cells exactly the coarse known data', () => {
    const op = inpaintOperator(y, fill, { fill: 'patch', seed: 5 });
    const coarse = op.coarsen?.();
    if (!coarse) throw new Error('inpaint has a coarser version');
    const est = coarse.estimate();
    expect([est.w, est.h]).toEqual([27, 31]);
    expect(maxAbsDiff(coarse.project(est), est)).toBe(0); // known cells are the coarse operator's own data
    const coarser = coarse.coarsen?.();
    expect(maxAbsDiff(coarser?.project(coarser.estimate()) ?? est, coarser?.estimate() ?? est)).toBe(0);
  });

  test('coarse to fine in windows through tiles, odd size, two holes: every unmasked value exact', async () => {
    const big = randomTensor(30, 1, 3, 157, 203).map((v) => 0.9 * v);
    const m = boxes(157, 203, [[20, 30, 25, 21], [150, 100, 31, 40]]);
    const grid = { sigmaMin: 0.002, sigmaMax: 80, rho: 7, size: 40 };
    const sigmas = [36, 37, 39].map((t) => karrasSigma(grid, t));
    const model: Denoiser = { denoise: async (x) => x.map((v) => Math.tanh(1.1 * v)) };
    for (const f of ['patch', 'auto'] as const) {
      const op = inpaintOperator(big, m, { fill: f, seed: 9 });
      const o = {
        tile: 48,
        overlap: 8,
        batch: 2,
        first: { sigmas, start: 'estimate' as const, eta: 0, samples: 2 },
        refine: { sigmas: sigmas.slice(1), start: 'estimate' as const, eta: 0, samples: 1 },
        sigmaMin: grid.sigmaMin,
      };
      for (const windows of [holeWindows(m, 48, 3), undefined]) {
        const [out] = await editFullResolution(model, [{ operator: op, seed: 4, scales: 'coarse-to-fine', windows }], o);
        knownExact(out, big, m);
      }
    }
  });
});

// ---- the CLI on the shipped model -------------------------------------------------------------------------------

let dir: string;
const at = (name: string): string => join(dir, name);
const DEFAULT_MODEL = join(ROOT, 'models', 'default.onnx');
const [W, H] = [211, 149];

function cm(...args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [CM_BIN, ...args, '--device', 'cpu', '-q'], { cwd: dir, maxBuffer: 64 << 20 });
  return { status: r.status, stderr: r.stderr.toString() };
}

async function raw(path: string): Promise<Buffer> {
  return (await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true })).data;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-patch-'));
  // Stripes and checks with a little grain (textured), and a smooth gradient at the right (auto: harmonic there).
  const d = Buffer.alloc(W * H * 3);
  const rng = rngFor(5);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      const tex = x < 140 ? (((x >> 2) + (y >> 3)) % 2) * 90 + 20 * rng.uniform() : 0;
      d[i] = Math.round(x < 140 ? 60 + tex : 90 + x / 4);
      d[i + 1] = Math.round(x < 140 ? 100 + tex / 2 : 120 + y / 4);
      d[i + 2] = Math.round(x < 140 ? 40 + tex / 3 : 150);
    }
  }
  await sharp(d, { raw: { width: W, height: H, channels: 3 } }).png().toFile(at('img.png'));
  const m = Buffer.alloc(W * H);
  const hole = (x0: number, y0: number, w: number, h: number): void => {
    for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) m[y * W + x] = 255;
  };
  hole(40, 50, 27, 23); // in the texture
  hole(0, 120, 9, 29); // at the corner, in the texture
  hole(170, 60, 21, 25); // in the gradient
  await sharp(m, { raw: { width: W, height: H, channels: 1 } }).png().toFile(at('mask.png'));
});

describe('cm inpaint --fill (the shipped model)', () => {
  test('patch, auto and smooth, whole and through tiles: every unmasked pixel exact; the same seed the same bytes; patch textured where smooth is not', async () => {
    const [src, mask] = await Promise.all([raw(at('img.png')), sharp(at('mask.png')).greyscale().raw().toBuffer()]);
    const texture = (out: Buffer): number => {
      // mean squared difference of neighbours inside the first hole
      let s = 0;
      let n = 0;
      for (let y = 51; y < 72; y++) for (let x = 41; x < 66; x++) for (let k = 0; k < 3; k++) (s += (out[(y * W + x) * 3 + k] - out[(y * W + x + 1) * 3 + k]) ** 2), n++;
      return s / n;
    };
    const outs: Record<string, Buffer> = {};
    for (const [name, flags] of [
      ['patch', ['--fill', 'patch']],
      ['auto', []],
      ['smooth', ['--fill', 'smooth']],
      ['patch-tiles', ['--fill', 'patch', '--tile', '64', '--strategy', 'tile']],
      ['auto-crop', ['--fill', 'auto', '--tile', '64', '--strategy', 'crop']],
    ] as const) {
      const r = cm('inpaint', 'img.png', '--mask', 'mask.png', '--model', DEFAULT_MODEL, '--seed', '11', ...flags, '-o', `${name}.png`);
      expect(r.status, r.stderr).toBe(0);
      const out = await raw(at(`${name}.png`));
      outs[name] = out;
      let bad = 0;
      for (let p = 0; p < W * H; p++) for (let k = 0; k < 3; k++) if (mask[p] === 0 && out[p * 3 + k] !== src[p * 3 + k]) bad++;
      expect(bad, name).toBe(0);
    }
    expect(cm('inpaint', 'img.png', '--mask', 'mask.png', '--model', DEFAULT_MODEL, '--seed', '11', '--fill', 'patch', '-o', 'again.png').status).toBe(0);
    expect(readFileSync(at('again.png')).equals(readFileSync(at('patch.png')))).toBe(true);
    const truth = texture(src);
    expect(texture(outs.patch)).toBeGreaterThan(0.3 * truth);
    expect(texture(outs.smooth)).toBeLessThan(0.1 * truth);
    // auto: the textured holes as patch does, the hole in the gradient as smooth does (within the model's noise)
    let gradDiff = 0;
    let n = 0;
    for (let y = 60; y < 85; y++) for (let x = 170; x < 191; x++) for (let k = 0; k < 3; k++) (gradDiff += Math.abs(outs.auto[(y * W + x) * 3 + k] - outs.smooth[(y * W + x) * 3 + k])), n++;
    expect(gradDiff / n).toBeLessThan(2);
    expect(texture(outs.auto)).toBe(texture(outs.patch));
  });

  test('--fill takes patch, smooth or auto only', () => {
    const r = cm('inpaint', 'img.png', '--mask', 'mask.png', '--model', TINY_MODEL, '--fill', 'texture', '-o', 'bad.png');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/fill/);
  });
});
