/**
 * Inpainting: A = identity, Omega = the mask. P(x) = keep * y + fill * x, exactly, per pixel. Its classical estimate
 * fills the hole by the harmonic fill (smooth), by PatchMatch completion (patch: texture copied from the known part
 * of a window around the hole, src/editing/patchmatch.ts), or by either per hole (auto: patches where the hole's
 * surroundings are textured). Pure.
 */
import { clamp, cropTensor, halveTensor, Tensor } from '../tensor.js';
import { harmonicFill } from './harmonic.js';
import { once, type Operator } from './operator.js';
import { fillWindows, patchFill, surroundTexture } from './patchmatch.js';

export const FILLS = ['auto', 'patch', 'smooth'] as const;
export type Fill = (typeof FILLS)[number];

/**
 * auto: a hole gets patches when the known pixels around it (a band a quarter of its size, 4 to 16 pixels) differ
 * from their 3 x 3 mean by more than this mean square (values in [-1, 1]; an RMS of about 2.9 levels of 255), below
 * it the harmonic fill. Chosen on training photos (bench/fill-threshold.mjs, bench/results/fill-threshold.md: 95% of
 * object64 and strokes holes get patches; 1.15 dB under the harmonic fill's PSNR where patches everywhere lose 1.25,
 * and the texture 0.77 of the photo's on average where patches everywhere give 1.19, too much in smooth places).
 */
export const TEXTURED = 5e-4;

export interface FillOptions {
  fill: Fill;
  /** The patch search's seed. */
  seed: number;
}

/** The hole of y filled as `options` say (default: the harmonic fill); every other pixel exactly y's. */
export function classicalFill(y: Tensor, fill: Tensor, options?: FillOptions): Tensor {
  if (!options || options.fill === 'smooth') return harmonicFill(y, fill);
  const smooth = harmonicInWindows(y, fill);
  const use = options.fill === 'auto' ? (n: number, r: Parameters<typeof surroundTexture>[3]) => surroundTexture(y, fill, n, r) >= TEXTURED : undefined;
  return patchFill(y, fill, options.seed, { base: smooth, use });
}

/**
 * The harmonic fill solved in each patch-fill window on its own (each contains its holes and the known pixels around
 * them, which are all a hole's harmonic fill depends on): the same fill, but holes far apart in a big photo are not
 * solved over the box spanning all of them (three 100x100 holes across a 12 MP photo: 41 s as one box).
 */
function harmonicInWindows(y: Tensor, fill: Tensor): Tensor {
  const out = y.clone();
  const plane = y.w * y.h;
  for (let n = 0; n < y.n; n++) {
    const m = fill.n === 1 ? fill : fill.image(n);
    const yn = y.n === 1 ? y : y.image(n);
    for (const r of fillWindows(m)) {
      const part = harmonicFill(cropTensor(yn, r.x, r.y, r.w, r.h), cropTensor(m, r.x, r.y, r.w, r.h));
      for (let c = 0; c < y.c; c++) {
        for (let yy = 0; yy < r.h; yy++) {
          for (let xx = 0; xx < r.w; xx++) {
            const p = (r.y + yy) * y.w + r.x + xx;
            if (m.data[p] > 0) out.data[(n * y.c + c) * plane + p] = part.data[(c * r.h + yy) * r.w + xx];
          }
        }
      }
    }
  }
  return out;
}

/**
 * @param y the reference [N,C,H,W]
 * @param fill the mask [N or 1,1,H,W]: 1 where the model generates, 0 where y is kept (values in between blend)
 * @param options how the classical estimate fills the hole (default: the harmonic fill)
 */
export function inpaintOperator(y: Tensor, fill: Tensor, options?: FillOptions): Operator {
  return withFillEstimate(y, fill, options, undefined);
}

/**
 * The operator, its estimate either made from y (`given` undefined) or given (a coarser level's of a patch fill: the
 * finer level's halved, so every level of coarse to fine carries one texture and the search runs once).
 */
function withFillEstimate(y: Tensor, fill: Tensor, options: FillOptions | undefined, given: (() => Tensor) | undefined): Operator {
  if (fill.c !== 1 || fill.h !== y.h || fill.w !== y.w || (fill.n !== 1 && fill.n !== y.n)) {
    throw new RangeError(`inpaint: mask [${fill.shape}] does not fit image [${y.shape}]`);
  }
  const plane = y.h * y.w;
  const m = (i: number): number => {
    const img = Math.floor(i / y.imageSize);
    return fill.data[(fill.n === 1 ? 0 : img) * plane + (i % plane)];
  };
  const yd = y.data;
  const start = y.map((v, i) => (1 - m(i)) * v);
  const project = (x: Tensor): Tensor => x.map((v, i) => (1 - m(i)) * yd[i] + m(i) * v);
  const estimate = once(given ?? (() => classicalFill(y, fill, options)));
  const textured = options !== undefined && options.fill !== 'smooth';
  // Pixels are independent: clamping the generated ones is the exact projection (y is in range already).
  return {
    start,
    estimate,
    project,
    projectInRange: (x) => project(clamp(x)),
    generates(n, x0, y0, w, h) {
      const base = (fill.n === 1 ? 0 : n) * plane;
      for (let r = y0; r < y0 + h; r++) for (let u = x0; u < x0 + w; u++) if (fill.data[base + r * y.w + u] > 0) return true;
      return false;
    },
    crop: (x0, y0, w, h) => inpaintOperator(cropTensor(y, x0, y0, w, h), cropTensor(fill, x0, y0, w, h), options),
    coarsen() {
      // A coarse pixel is known only where all of its pixels are (their mean); it is filled where any of them is.
      const keep = fill.map((v) => (v > 0 ? 0 : 1));
      const coarseKeep = halveTensor(keep);
      const coarseFill = coarseKeep.map((v) => (v < 1 ? 1 : 0));
      // The patch fill's coarser levels are its own halving (its known cells are the coarse known data exactly).
      return withFillEstimate(halveTensor(y, keep), coarseFill, options, textured ? once(() => halveTensor(estimate())) : undefined);
    },
  };
}
