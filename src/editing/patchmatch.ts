/**
 * Exemplar-based hole filling: multi-scale PatchMatch completion (Barnes et al. 2009, "PatchMatch"; Wexler et al.
 * 2007, "Space-time completion of video"), inpainting's textured classical estimate (ALGORITHMS.md 4b).
 *
 * Each hole is completed inside a window around it (holeWindows: CONTEXT x its size, at least MIN_WINDOW), so the
 * work grows with the hole, not with the photo. In the window, a pyramid is built by halving (a coarse pixel is in
 * the hole when any of its children is). At the coarsest level the hole starts from an onion-peel average of its
 * border; then, at every level, a few rounds of:
 * - search: for every patch touching the hole (a "target", P x P around each pixel within P/2 of the hole), the most
 *   similar patch lying wholly in the known part of the window (a "source"), by PatchMatch: the sources of the
 *   neighbours shifted by one (propagation, scan order alternating) and random tries in shrinking radii around the
 *   best so far; the distance is the sum of squared differences over the target's pixels inside the window, the
 *   hole's pixels at their current values (so the known border pulls the fill into continuity);
 * - vote: every hole pixel takes what the most similar of the targets covering it says it is.
 * The nearest-neighbour field and the filled hole are carried to the next finer level (offsets doubled), which
 * starts searching from there. With a base (the harmonic fill), the fill's shading is the base's: the fill plus the
 * Gaussian blur (SHADING pixels) of base - fill over the hole's pixels (a blur normalised by the hole's own), so
 * colours meet the border smoothly while the detail stays the patches'. Known pixels are never changed. Deterministic
 * for a given Rng. Pure.
 *
 * Measured on training crops (object64 and strokes holes, estimates alone, bench/fill-threshold.mjs): Wexler's
 * weighted mean vote left the texture at 0.30 of the photo's (median), the best-patch vote at every round 0.65;
 * the shading from the harmonic fill brings the fill from 1.80 dB under the harmonic fill's PSNR to 1.25 dB under
 * (Gaussian of 4 pixels; of 6: 1.57 dB under) at the same texture. That blur counted the known pixels around the hole
 * as zeros, so a thin hole (a stroke) got about half the base's shading: normalised by the blur of the hole itself,
 * strokes went from 1.23 to 1.00 dB under, object64 0.82 to 0.75, the box 0.49 to 0.46, texture 2-3% lower
 * (bench/results/fill-shading.md, 40 training photos); through the CLI (24 training crops of 256x256) strokes
 * +0.28 dB at 4% less texture, box and object64 +0.02 dB at 1% less. A narrower Gaussian gains more PSNR for more
 * texture: 3 pixels, strokes +0.49 dB through the CLI but 6% less texture (20% along the strokes of Set5's whole
 * photos), so the width stays 4.
 * A finer level used to start from the coarser level's values enlarged (2 x 2 blocks, 8 x 8 after three levels):
 * its search then matched the blur with smooth sources, and the fill of a big hole was blocks of smudge with
 * staircase edges (a quarter-box hole). It now starts from its own pixels of the coarser level's copies, and runs
 * one round instead of three. 16 training photos, PSNR under the harmonic fill / texture (median), before -> after:
 * quarter box of 768x512 photos 0.26 dB / 1.10 (much of it the staircase edges) -> 0.23 dB / 0.64; object64 in
 * 256x256 crops 1.24 / 0.69 -> 1.09 / 0.70; the same with three rounds 0.21 / 0.54 and 1.11 / 0.56; with no
 * round 0.40 / 1.26 and 1.35 / 0.96 (the coarse copies' seams). Texture features in the distance (Newson et al.
 * 2014, mean absolute differences over 5 x 5, weights 1 and 3) did not raise the quarter box's (0.48-0.49).
 */
import { Rng } from '../rng.js';
import { Tensor, cropTensor } from '../tensor.js';
import { holeWindows, maskBounds, type Rect } from './regions.js';

/** Patch side (odd). */
export const PATCH = 7;
/** A hole's window is this many times its size ... */
export const CONTEXT = 3;
/** ... and at least this many pixels on a side (where the image allows). */
export const MIN_WINDOW = 64;
/** Coarsen while the hole's longer side is above this many patches. */
const COARSEST_HOLE = 2;
/**
 * Search-and-vote rounds at the coarsest level and at the finer ones; PatchMatch passes per round. The coarsest level
 * chooses what is copied where; a finer level starts from the same copies at its own resolution (fromField) and only
 * mends them: each round drifts towards smooth sources (a flat patch is near anything under the sum of squared
 * differences), so more rounds there cost texture (training photos, below).
 */
const ROUNDS_COARSEST = 6;
const ROUNDS = 1;
const PASSES = 2;
/** The fill's shading: the base (the harmonic fill) blurred by a Gaussian of this many pixels replaces the patches'. */
export const SHADING = 4;

/**
 * The windows patchFill works in, one per group of nearby holes of image 0 of fill (see holeWindows): each contains
 * its holes whole and a margin of about their size around them.
 */
export function fillWindows(fill: Tensor): Rect[] {
  return holeWindows(fill, MIN_WINDOW, CONTEXT);
}

/**
 * @param y the image [N,C,H,W] (values inside the hole are ignored)
 * @param fill [N or 1,1,H,W]: the hole is where fill > 0
 * @param seed the random search's seed (window v of image n draws from stream n * 4096 + v)
 * @param use which windows to fill by patches (default all); the others' holes are left as they are in `base`
 * @param base what the holes hold where no patch fill is made (default y), and the patch fill's shading (above)
 * @param shading the shading's Gaussian in pixels (default SHADING)
 * @returns y with the holes filled; every other pixel exactly y's. A window with no whole known patch in it keeps
 *   base's values.
 */
export function patchFill(
  y: Tensor,
  fill: Tensor,
  seed: number,
  options: { base?: Tensor; use?: (n: number, window: Rect) => boolean; shading?: number } = {},
): Tensor {
  if (fill.c !== 1 || fill.h !== y.h || fill.w !== y.w || (fill.n !== 1 && fill.n !== y.n)) {
    throw new RangeError(`patchFill: mask [${fill.shape}] does not fit image [${y.shape}]`);
  }
  const plane = y.h * y.w;
  const C = y.c;
  const out = y.clone();
  const base = options.base;
  const shading = options.shading ?? SHADING;
  for (let n = 0; n < y.n; n++) {
    const m = fill.n === 1 ? fill : fill.image(n);
    const windows = fillWindows(m);
    for (let v = 0; v < windows.length; v++) {
      const r = windows[v];
      if (base) {
        // Every hole of the image lies in one window: its pixels start as the base's.
        for (let yy = r.y; yy < r.y + r.h; yy++) {
          for (let xx = r.x; xx < r.x + r.w; xx++) {
            const p = yy * y.w + xx;
            if (m.data[p] > 0) for (let c = 0; c < C; c++) out.data[(n * C + c) * plane + p] = base.data[(n * C + c) * plane + p];
          }
        }
      }
      if (options.use && !options.use(n, r)) continue;
      // The window as interleaved pixels (C values each) and its hole.
      const img = new Float32Array(r.w * r.h * C);
      const hole = new Uint8Array(r.w * r.h);
      for (let yy = 0; yy < r.h; yy++) {
        for (let xx = 0; xx < r.w; xx++) {
          const p = (r.y + yy) * y.w + r.x + xx;
          const q = yy * r.w + xx;
          hole[q] = m.data[p] > 0 ? 1 : 0;
          for (let c = 0; c < C; c++) img[q * C + c] = hole[q] ? 0 : y.data[(n * C + c) * plane + p];
        }
      }
      const done = completeWindow(img, hole, r.w, r.h, C, new Rng(seed, n * 4096 + v));
      if (!done) continue;
      if (base) {
        // base - fill over the hole, blurred, added: the base's shading under the patches' detail. Only the hole's box
        // and 3 SHADING around it hold a blur that matters.
        const b = boxOf(hole, r.w, r.h, Math.ceil(3 * shading));
        const sub = new Float32Array(b.w * b.h * C);
        for (let yy = 0; yy < b.h; yy++) {
          for (let xx = 0; xx < b.w; xx++) {
            const q = (b.y + yy) * r.w + b.x + xx;
            if (!hole[q]) continue;
            const p = (r.y + b.y + yy) * y.w + r.x + b.x + xx;
            for (let c = 0; c < C; c++) sub[(yy * b.w + xx) * C + c] = base.data[(n * C + c) * plane + p] - done[q * C + c];
          }
        }
        // Normalised by the blur of the hole itself, so that the difference is averaged over the hole's pixels only:
        // in a thin hole or near its border the zeros outside would otherwise take most of the base's shading away.
        const inHole = new Float32Array(b.w * b.h);
        for (let yy = 0; yy < b.h; yy++) for (let xx = 0; xx < b.w; xx++) inHole[yy * b.w + xx] = hole[(b.y + yy) * r.w + b.x + xx];
        const smooth = gaussian(sub, b.w, b.h, C, shading);
        const weight = gaussian(inHole, b.w, b.h, 1, shading);
        for (let yy = 0; yy < b.h; yy++) {
          for (let xx = 0; xx < b.w; xx++) {
            const q = (b.y + yy) * r.w + b.x + xx;
            if (!hole[q]) continue;
            const k = yy * b.w + xx;
            for (let c = 0; c < C; c++) done[q * C + c] = Math.max(-1, Math.min(1, done[q * C + c] + smooth[k * C + c] / weight[k]));
          }
        }
      }
      for (let yy = 0; yy < r.h; yy++) {
        for (let xx = 0; xx < r.w; xx++) {
          const q = yy * r.w + xx;
          if (!hole[q]) continue;
          const p = (r.y + yy) * y.w + r.x + xx;
          for (let c = 0; c < C; c++) out.data[(n * C + c) * plane + p] = done[q * C + c];
        }
      }
    }
  }
  return out;
}

/**
 * How textured the known surroundings of each window's holes are: the mean squared difference between a known pixel
 * and the mean of its 3 x 3 neighbourhood (all of it known), over the known pixels within `band` of a hole, per
 * value (images in [-1, 1]). Smooth sky or a wall is near 0; grass, foliage, gravel far above.
 */
export function surroundTexture(y: Tensor, fill: Tensor, n: number, r: Rect): number {
  const plane = y.h * y.w;
  const m = fill.n === 1 ? fill : fill.image(n);
  const crop = cropTensor(m, r.x, r.y, r.w, r.h);
  const hole = Uint8Array.from(crop.data, (v) => (v > 0 ? 1 : 0));
  // The band: known pixels within `band` (Chebyshev) of the hole, band a quarter of the hole's size, 4 to 16 pixels.
  const box = maskBounds(hole, r.w, r.h);
  if (!box) return 0;
  const { x0, y0, x1, y1 } = box;
  const band = Math.max(4, Math.min(16, Math.round(Math.max(x1 - x0 + 1, y1 - y0 + 1) / 4)));
  const near = dilate(hole, r.w, r.h, band);
  const holeNear = dilate(hole, r.w, r.h, 1);
  let s = 0;
  let count = 0;
  for (let yy = 1; yy < r.h - 1; yy++) {
    for (let xx = 1; xx < r.w - 1; xx++) {
      const q = yy * r.w + xx;
      if (!near[q] || holeNear[q]) continue; // inside the band, with its whole 3 x 3 neighbourhood known
      const p = (r.y + yy) * y.w + r.x + xx;
      for (let c = 0; c < y.c; c++) {
        const base = (n * y.c + c) * plane;
        let mean = 0;
        for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) mean += y.data[base + p + dy * y.w + dx];
        const d = y.data[base + p] - mean / 9;
        s += d * d;
        count++;
      }
    }
  }
  return count ? s / count : 0;
}

/** The bounding box of the set pixels, `margin` wider on every side where the plane allows. */
function boxOf(set: Uint8Array, w: number, h: number, margin: number): Rect {
  const b = maskBounds(set, w, h);
  if (!b) return { x: 0, y: 0, w: 0, h: 0 };
  const x0 = Math.max(0, b.x0 - margin);
  const y0 = Math.max(0, b.y0 - margin);
  const x1 = Math.min(w - 1, b.x1 + margin);
  const y1 = Math.min(h - 1, b.y1 + margin);
  return { x: x0, y: y0, w: x1 - x0 + 1, h: y1 - y0 + 1 };
}

/** A Gaussian blur (standard deviation s, cut at 3 s) of interleaved pixels, zero outside the w x h plane. */
function gaussian(src: Float32Array, w: number, h: number, C: number, s: number): Float32Array {
  const r = Math.ceil(3 * s);
  const k = new Float64Array(2 * r + 1);
  let sum = 0;
  for (let i = -r; i <= r; i++) sum += k[i + r] = Math.exp(-(i * i) / (2 * s * s));
  for (let i = 0; i < k.length; i++) k[i] /= sum;
  const tmp = new Float32Array(src.length);
  const out = new Float32Array(src.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < C; c++) {
        let a = 0;
        for (let i = Math.max(-r, -x); i <= Math.min(r, w - 1 - x); i++) a += k[i + r] * src[(y * w + x + i) * C + c];
        tmp[(y * w + x) * C + c] = a;
      }
    }
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < C; c++) {
        let a = 0;
        for (let i = Math.max(-r, -y); i <= Math.min(r, h - 1 - y); i++) a += k[i + r] * tmp[((y + i) * w + x) * C + c];
        out[(y * w + x) * C + c] = a;
      }
    }
  }
  return out;
}

/** 1 where a pixel lies within Chebyshev distance k of a set pixel (a box dilation, by running sums). */
function dilate(set: Uint8Array, w: number, h: number, k: number): Uint8Array {
  const rows = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    let last = -Infinity;
    for (let x = 0; x < w; x++) {
      if (set[y * w + x]) last = x;
      if (x - last <= k) rows[y * w + x] = 1;
    }
    last = Infinity;
    for (let x = w - 1; x >= 0; x--) {
      if (set[y * w + x]) last = x;
      if (last - x <= k) rows[y * w + x] = 1;
    }
  }
  const out = new Uint8Array(w * h);
  for (let x = 0; x < w; x++) {
    let last = -Infinity;
    for (let y = 0; y < h; y++) {
      if (rows[y * w + x]) last = y;
      if (y - last <= k) out[y * w + x] = 1;
    }
    last = Infinity;
    for (let y = h - 1; y >= 0; y--) {
      if (rows[y * w + x]) last = y;
      if (last - y <= k) out[y * w + x] = 1;
    }
  }
  return out;
}

interface Level {
  w: number;
  h: number;
  img: Float32Array;
  hole: Uint8Array;
}

/** Half size (rounded up): a pixel is in the hole if any child is, else the mean of its children. */
function halve(l: Level, C: number): Level {
  const w = Math.ceil(l.w / 2);
  const h = Math.ceil(l.h / 2);
  const img = new Float32Array(w * h * C);
  const hole = new Uint8Array(w * h);
  const count = new Uint8Array(w * h);
  for (let y = 0; y < l.h; y++) {
    for (let x = 0; x < l.w; x++) {
      const p = y * l.w + x;
      const q = (y >> 1) * w + (x >> 1);
      if (l.hole[p]) hole[q] = 1;
      count[q]++;
      for (let c = 0; c < C; c++) img[q * C + c] += l.img[p * C + c];
    }
  }
  for (let q = 0; q < w * h; q++) for (let c = 0; c < C; c++) img[q * C + c] = hole[q] ? 0 : img[q * C + c] / count[q];
  return { w, h, img, hole };
}

/** Sources: centres of P x P patches lying wholly inside the level and wholly known. */
function sourcesOf(l: Level, r: number): Uint8Array {
  const { w, h, hole } = l;
  const near = dilate(hole, w, h, r);
  const ok = new Uint8Array(w * h);
  for (let y = r; y < h - r; y++) for (let x = r; x < w - r; x++) ok[y * w + x] = near[y * w + x] ? 0 : 1;
  return ok;
}

/**
 * Complete one window's hole; returns the window with its hole filled (known values untouched), or null when the
 * window holds no whole known patch to copy from.
 */
function completeWindow(img0: Float32Array, hole0: Uint8Array, w0: number, h0: number, C: number, rng: Rng): Float32Array | null {
  const P = PATCH;
  const r = P >> 1;
  const levels: Level[] = [{ w: w0, h: h0, img: img0, hole: hole0 }];
  const holeSide = (l: Level): number => {
    let x0 = l.w;
    let x1 = -1;
    let y0 = l.h;
    let y1 = -1;
    for (let q = 0; q < l.hole.length; q++) {
      if (!l.hole[q]) continue;
      const x = q % l.w;
      const y = (q - x) / l.w;
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
    }
    return x1 < 0 ? 0 : Math.max(x1 - x0 + 1, y1 - y0 + 1);
  };
  const count = (a: Uint8Array): number => a.reduce((s, v) => s + v, 0);
  if (count(sourcesOf(levels[0], r)) === 0) return null;
  // Coarser levels while the hole is more than a few patches across and the coarser level still has sources.
  while (holeSide(levels[0]) > COARSEST_HOLE * P) {
    const coarser = halve(levels[0], C);
    if (Math.min(coarser.w, coarser.h) < 4 * P || count(sourcesOf(coarser, r)) < 16) break;
    levels.unshift(coarser);
  }
  let nnf: Int32Array | null = null;
  let prev: Level | null = null;
  for (let li = 0; li < levels.length; li++) {
    const l = levels[li];
    const level = l; // the finest level's pixels are patchFill's own copy of the window: filled in place
    if (!prev) onionPeel(level, C);
    else upsampleInto(prev, level, C);
    const sources = sourcesOf(level, r);
    const list: number[] = [];
    for (let q = 0; q < sources.length; q++) if (sources[q]) list.push(q);
    const targets = dilate(level.hole, level.w, level.h, r);
    nnf = initField(level, targets, sources, list, nnf, prev, rng);
    if (prev) fromField(level, C, nnf);
    const rounds = prev ? ROUNDS : ROUNDS_COARSEST;
    const dist = new Float64Array(level.w * level.h);
    for (let k = 0; k < rounds; k++) {
      for (let q = 0; q < dist.length; q++) if (targets[q]) dist[q] = distance(level, C, q, nnf[q], Infinity);
      for (let pass = 0; pass < PASSES; pass++) search(level, C, targets, sources, nnf, dist, pass, rng);
      vote(level, C, targets, nnf, dist);
    }
    levels[li] = level;
    prev = level;
  }
  return (prev as Level).img;
}

/** Fill the hole from its border inwards: each ring takes the mean of its already-filled 8-neighbours. */
function onionPeel(l: Level, C: number): void {
  const { w, h, img } = l;
  const filled = Uint8Array.from(l.hole, (v) => 1 - v);
  let frontier = true;
  while (frontier) {
    frontier = false;
    const next: number[] = [];
    for (let q = 0; q < w * h; q++) {
      if (filled[q]) continue;
      const x = q % w;
      const y = (q - x) / w;
      let n = 0;
      const sum = new Float64Array(C);
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          const yy = y + dy;
          if (xx < 0 || yy < 0 || xx >= w || yy >= h || !filled[yy * w + xx]) continue;
          n++;
          for (let c = 0; c < C; c++) sum[c] += img[(yy * w + xx) * C + c];
        }
      }
      if (n === 0) continue;
      for (let c = 0; c < C; c++) img[q * C + c] = sum[c] / n;
      next.push(q);
    }
    for (const q of next) filled[q] = 1;
    frontier = next.length > 0;
  }
}

/** The finer level's hole starts from the coarser level's filled values (each coarse pixel for its 2 x 2). */
function upsampleInto(coarse: Level, fine: Level, C: number): void {
  for (let y = 0; y < fine.h; y++) {
    for (let x = 0; x < fine.w; x++) {
      const p = y * fine.w + x;
      if (!fine.hole[p]) continue;
      const q = (y >> 1) * coarse.w + (x >> 1);
      for (let c = 0; c < C; c++) fine.img[p * C + c] = coarse.img[q * C + c];
    }
  }
}

/**
 * Every hole pixel from its own target's source (the field carried up from the coarser level): the finer level's
 * pixels of what the coarser level copied, texture included, instead of the coarse values enlarged (a blur that the
 * search then matched best with smooth sources).
 */
function fromField(l: Level, C: number, nnf: Int32Array): void {
  const { img, hole } = l;
  for (let p = 0; p < hole.length; p++) {
    if (!hole[p] || nnf[p] < 0) continue;
    for (let c = 0; c < C; c++) img[p * C + c] = img[nnf[p] * C + c];
  }
}

/** The starting field: the coarser level's sources doubled (plus the pixel's offset in its 2 x 2), else random. */
function initField(l: Level, targets: Uint8Array, sources: Uint8Array, list: number[], coarseField: Int32Array | null, coarse: Level | null, rng: Rng): Int32Array {
  const nnf = new Int32Array(l.w * l.h).fill(-1);
  for (let q = 0; q < nnf.length; q++) {
    if (!targets[q]) continue;
    if (coarseField && coarse) {
      const x = q % l.w;
      const y = (q - x) / l.w;
      const cs = coarseField[(y >> 1) * coarse.w + (x >> 1)];
      if (cs >= 0) {
        const sx = (cs % coarse.w) * 2 + (x & 1);
        const sy = Math.floor(cs / coarse.w) * 2 + (y & 1);
        if (sx < l.w && sy < l.h && sources[sy * l.w + sx]) {
          nnf[q] = sy * l.w + sx;
          continue;
        }
      }
    }
    nnf[q] = list[Math.floor(rng.uniform() * list.length)];
  }
  return nnf;
}

/** Sum of squared differences between the patch at target t and the patch at source s, over t's pixels in the level. */
function distance(l: Level, C: number, t: number, s: number, limit: number): number {
  const { w, h, img } = l;
  const r = PATCH >> 1;
  const tx = t % w;
  const ty = (t - tx) / w;
  const dy0 = Math.max(-r, -ty);
  const dy1 = Math.min(r, h - 1 - ty);
  const dx0 = Math.max(-r, -tx);
  const dx1 = Math.min(r, w - 1 - tx);
  let d = 0;
  for (let dy = dy0; dy <= dy1; dy++) {
    let a = ((ty + dy) * w + tx + dx0) * C;
    let b = (s + dy * w + dx0) * C;
    const n = (dx1 - dx0 + 1) * C;
    for (let i = 0; i < n; i++, a++, b++) {
      const e = img[a] - img[b];
      d += e * e;
    }
    if (d > limit) return d;
  }
  return d;
}

/** One PatchMatch pass: propagation from the two previous neighbours in scan order, then random search. */
function search(l: Level, C: number, targets: Uint8Array, sources: Uint8Array, nnf: Int32Array, dist: Float64Array, pass: number, rng: Rng): void {
  const { w, h } = l;
  const r = PATCH >> 1;
  const dir = pass % 2 === 0 ? 1 : -1;
  const try1 = (q: number, s: number): void => {
    if (s < 0 || s === nnf[q] || !sources[s]) return;
    const d = distance(l, C, q, s, dist[q]);
    if (d < dist[q]) {
      dist[q] = d;
      nnf[q] = s;
    }
  };
  const ys = dir > 0 ? 0 : h - 1;
  const xs = dir > 0 ? 0 : w - 1;
  for (let y = ys; y >= 0 && y < h; y += dir) {
    for (let x = xs; x >= 0 && x < w; x += dir) {
      const q = y * w + x;
      if (!targets[q]) continue;
      // Propagation: the neighbour's source, shifted back by the same step (where it stays inside the level).
      const nx = x - dir;
      if (nx >= 0 && nx < w && targets[q - dir]) {
        const s = nnf[q - dir];
        const sx = (s % w) + dir;
        if (sx >= 0 && sx < w) try1(q, s + dir);
      }
      const ny = y - dir;
      if (ny >= 0 && ny < h && targets[q - dir * w]) {
        const s = nnf[q - dir * w];
        const sy = Math.floor(s / w) + dir;
        if (sy >= 0 && sy < h) try1(q, s + dir * w);
      }
      // Random search around the best so far, the radius halving from the level's size.
      for (let rad = Math.max(w, h); rad >= 1; rad >>= 1) {
        const s = nnf[q];
        const sx = s % w;
        const sy = (s - sx) / w;
        const cx = Math.min(w - 1 - r, Math.max(r, sx + Math.floor((2 * rng.uniform() - 1) * rad + 0.5)));
        const cy = Math.min(h - 1 - r, Math.max(r, sy + Math.floor((2 * rng.uniform() - 1) * rad + 0.5)));
        try1(q, cy * w + cx);
      }
    }
  }
}

/**
 * Every hole pixel: what the most similar of the targets covering it (the smallest distance per value; the first in
 * scan order on a tie) says it is. The texture is copied, not averaged into a blur.
 */
function vote(l: Level, C: number, targets: Uint8Array, nnf: Int32Array, dist: Float64Array): void {
  const { w, h, img, hole } = l;
  const r = PATCH >> 1;
  const bestD = new Float64Array(w * h).fill(Infinity);
  const pick = new Float32Array(w * h * C);
  for (let t = 0; t < w * h; t++) {
    if (!targets[t]) continue;
    const s = nnf[t];
    const tx = t % w;
    const ty = (t - tx) / w;
    const d = dist[t] / ((Math.min(r, w - 1 - tx) + Math.min(r, tx) + 1) * (Math.min(r, h - 1 - ty) + Math.min(r, ty) + 1) * C);
    for (let dy = Math.max(-r, -ty); dy <= Math.min(r, h - 1 - ty); dy++) {
      for (let dx = Math.max(-r, -tx); dx <= Math.min(r, w - 1 - tx); dx++) {
        const p = t + dy * w + dx;
        if (!hole[p] || !(d < bestD[p])) continue;
        bestD[p] = d;
        const src = (s + dy * w + dx) * C;
        for (let c = 0; c < C; c++) pick[p * C + c] = img[src + c];
      }
    }
  }
  for (let p = 0; p < w * h; p++) if (hole[p] && bestD[p] < Infinity) for (let c = 0; c < C; c++) img[p * C + c] = pick[p * C + c];
}
