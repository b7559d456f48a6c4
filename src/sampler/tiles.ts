/**
 * Tiled evaluation of the model (ALGORITHMS.md section 5): a Denoiser for images of any size made from one that
 * runs on tiles. Each call cuts x into overlapping tiles, runs them through the model `batch` tiles at a time, and
 * blends the denoised tiles into one full-size estimate with smooth weights (a product of raised-cosine ramps across
 * the overlap, never 0). The tile grid moves by a different offset at every call, so seams never sit in one place.
 * The sampler projects and renoises the full image; noise is drawn for the full image, so the tile size, overlap
 * and batch never change a result beyond blending, and an image of exactly one tile gives the untiled result.
 * Images smaller than a tile are mirrored out to a tile and cropped back. Memory: the tiles of one call, and two
 * full-size planes. Pure.
 *
 * The grid of an image keeps one tile count for all its calls, with room to move: each axis has the fewest tiles
 * that cover it with the grid moved back by up to twice the overlap (so that a call's seams can lie clear of the
 * last call's), and the grid moves within that room. Where the network takes any size (`maxTile`), the tile side is
 * fitted to the image, between `tile` and `maxTile`, so that those tiles hold the fewest pixels: a 2048-pixel side
 * takes 13 tiles of 168 (1.07x its pixels) where tiles of 128 would need 18 (1.13x).
 *
 * Tiles with nothing left to change (`settle`): after each call, a pixel is settled when the model changed it by less
 * than `settle` (max over channels of |f(x) - x|), kept track of in blocks of 8 x 8 (a block is settled when all its
 * pixels are). At a later call at a lower sigma (a later step of the same sample),
 * a tile whose blocks are all settled is not evaluated: it gives its input instead of the model's answer, blended
 * with its usual weights (so no seam), and its pixels stay settled. A new sample (sigma back up) evaluates everything
 * again. With fresh noise between steps nothing settles (the model removes the noise); plans without it (eta 0) skip
 * where the model has converged (with the shipped model's default plans, what is left of the start's noise keeps
 * even flat tiles changing by more than a grey level until the last step: bench/results/flat.md). Pixels under no
 * skipped tile get exactly the sums they get without skipping.
 */
import { cropTensor, fromView, Tensor, toView } from '../tensor.js';
import type { Denoiser } from './sample.js';

export interface TileOptions {
  /** Tile side in pixels (the model's resolution, or a multiple of 8 the network accepts). */
  tile: number;
  /** Pixels shared by neighbouring tiles, less than half a tile. */
  overlap: number;
  /** Tiles per model call. */
  batch: number;
  /**
   * The largest tile side the tiles may be fitted to (a multiple of 8 from `tile` up; the network must take any
   * multiple of 8). Default: `tile`, tiles of exactly that side.
   */
  maxTile?: number;
  /**
   * When given, tiles per call are as many as hold at most this many pixels (at least 1, at most `batch`), so that
   * fitted tiles larger than `tile` come fewer to a call (on the CPU the network's speed per pixel falls once a
   * call's tensors outgrow the caches).
   */
  callPixels?: number;
  /**
   * The model's own resolution, when tiles are larger: an image that fits in it is run as one tile of that size (so
   * a model-sized image gets exactly the untiled result).
   */
  small?: number;
  /**
   * Whether a tile has anything to generate; skipped tiles pass their input through (the projection puts the known
   * data back there anyway). Default: every tile is needed.
   */
  needed?: (image: number, x: number, y: number, w: number, h: number) => boolean;
  /**
   * Skip tiles with nothing left to change: a change below this ([-1, 1] units, max over channels) at a call settles
   * a pixel, and a tile of settled pixels skips the later, lower-sigma calls (see above). Default 0: never skip.
   */
  settle?: number;
}

/** Model tiles a tiled denoiser evaluated and skipped as settled, over all its calls so far. */
export interface TileCounts {
  run: number;
  skipped: number;
}

/** The smallest weight a tile gives a pixel (at its very edge): the sum over tiles is never 0. */
const EDGE_WEIGHT = 1e-3;

export function checkTileOptions(o: TileOptions): void {
  if (!Number.isInteger(o.tile) || o.tile < 8) throw new RangeError(`Expected a tile of at least 8 pixels but received ${o.tile}`);
  if (!Number.isInteger(o.overlap) || o.overlap < 0 || 2 * o.overlap >= o.tile) {
    throw new RangeError(`Expected an overlap between 0 and ${Math.ceil(o.tile / 2) - 1} for tiles of ${o.tile} but received ${o.overlap}`);
  }
  if (!Number.isInteger(o.batch) || o.batch < 1) throw new RangeError(`Expected a positive batch but received ${o.batch}`);
  if (o.settle !== undefined && !(o.settle >= 0 && o.settle < 2)) throw new RangeError(`Expected a settle threshold between 0 and 2 but received ${o.settle}`);
  const maxTile = o.maxTile ?? o.tile;
  if (!Number.isInteger(maxTile) || maxTile < o.tile || (maxTile - o.tile) % 8 !== 0) {
    throw new RangeError(`Expected a largest tile of ${o.tile} plus a multiple of 8 but received ${maxTile}`);
  }
}

/**
 * Tile origins along an axis of `size` (at least `tile`) for tiles of `tile` pixels overlapping by `overlap`, the
 * grid moved back by `shift` (0 <= shift < stride): every pixel is covered, the first tile starts at 0 and the last
 * ends at `size`.
 */
export function tileStarts(size: number, tile: number, overlap: number, shift: number): number[] {
  if (size <= tile) return [0];
  const stride = tile - overlap;
  const out: number[] = [];
  for (let p = -shift; ; p += stride) {
    const s = Math.min(Math.max(p, 0), size - tile);
    if (out.length === 0 || s > out[out.length - 1]) out.push(s);
    if (s + tile >= size) break;
  }
  return out;
}

/** One axis of a tile grid: at most `count` tiles, the grid moved back by 0 to `shifts - 1` pixels. */
export interface AxisGrid {
  count: number;
  shifts: number;
}

/** The tiles of an image: their side, and each axis's grid. */
export interface TileGrid {
  tile: number;
  x: AxisGrid;
  y: AxisGrid;
}

/** The fewest tiles along `size` that still cover it with the grid moved back by up to twice the overlap. */
export function axisGrid(size: number, tile: number, overlap: number): AxisGrid {
  if (size <= tile) return { count: 1, shifts: 1 };
  const stride = tile - overlap;
  const count = Math.ceil((size - tile + 2 * overlap) / stride) + 1;
  const room = (count - 1) * stride - (size - tile); // the most the grid can move back and still end at size
  return { count, shifts: Math.min(room, stride - 1) + 1 };
}

/**
 * The grid for a w x h image: tiles of `tile` pixels, or of the side from `tile` to `maxTile` (steps of 8) whose grid
 * holds the fewest pixels (the smaller side on a tie).
 */
export function planTiles(w: number, h: number, tile: number, overlap: number, maxTile = tile): TileGrid {
  let best: TileGrid | undefined;
  let bestCost = Infinity;
  for (let t = tile; t <= Math.max(tile, maxTile); t += 8) {
    const x = axisGrid(w, t, overlap);
    const y = axisGrid(h, t, overlap);
    const cost = x.count * y.count * t * t;
    if (cost < bestCost) [best, bestCost] = [{ tile: t, x, y }, cost];
  }
  return best as TileGrid;
}

/** Blend weight of a tile's pixel at offset u along one axis of a tile of `tile` pixels. */
export function rampWeight(u: number, tile: number, overlap: number): number {
  if (overlap === 0) return 1;
  const d = Math.min(u, tile - 1 - u); // distance to the nearer edge, in pixels
  if (d >= overlap) return 1;
  const r = 0.5 - 0.5 * Math.cos((Math.PI * (d + 0.5)) / overlap);
  return EDGE_WEIGHT + (1 - EDGE_WEIGHT) * r;
}

/**
 * How far the grid moves back at the k-th call, out of `shifts` offsets: spread by the golden ratio (by the plastic
 * number's inverse on the other axis, so that the two axes do not move in step).
 */
function shiftOf(call: number, shifts: number, ratio: number): number {
  if (call === 0 || shifts <= 1) return 0;
  const v = call * ratio;
  return Math.floor((v - Math.floor(v)) * shifts);
}

/**
 * A Denoiser over images of any size, evaluating `inner` on tiles. `calls` counts its evaluations so far, `tiles`
 * the model tiles run and skipped as settled (an image of one tile counts as one).
 */
export function tiledDenoiser(model: Denoiser, options: TileOptions): Denoiser & { readonly calls: number; readonly tiles: TileCounts } {
  checkTileOptions(options);
  const { overlap } = options;
  const maxTile = options.maxTile ?? options.tile;
  const settle = options.settle ?? 0;
  const ramps = new Map<number, Float32Array>();
  const rampOf = (tile: number): Float32Array => {
    let r = ramps.get(tile);
    if (!r) ramps.set(tile, (r = Float32Array.from({ length: tile }, (_, u) => rampWeight(u, tile, overlap))));
    return r;
  };
  let calls = 0;
  const counts: TileCounts = { run: 0, skipped: 0 };
  // The last call's settled blocks (1 per BLOCK x BLOCK block of each image) and sigmas; only for the same shape.
  let settled: { mask: Uint8Array; sigma: Float32Array; n: number; c: number; h: number; w: number } | undefined;
  return {
    get calls() {
      return calls;
    },
    get tiles() {
      return { ...counts };
    },
    views: true,
    async denoise(x: Tensor, sigma: Float32Array, view = 0): Promise<Tensor> {
      const call = calls++;
      const last = settle > 0 && settled && settled.n === x.n && settled.c === x.c && settled.h === x.h && settled.w === x.w ? settled : undefined;
      // Whether image n's w x h rectangle at (x0, y0) has nothing left to change at this call: every block it touches
      // is settled.
      const still = (n: number, x0: number, y0: number, w: number, h: number): boolean => {
        if (!last || !(sigma[n] < last.sigma[n])) return false;
        const bw = Math.ceil(x.w / BLOCK);
        const bh = Math.ceil(x.h / BLOCK);
        for (let by = Math.floor(y0 / BLOCK); by <= Math.floor((Math.min(y0 + h, x.h) - 1) / BLOCK); by++) {
          const row = (n * bh + by) * bw;
          for (let bx = Math.floor(x0 / BLOCK); bx <= Math.floor((Math.min(x0 + w, x.w) - 1) / BLOCK); bx++) if (!last.mask[row + bx]) return false;
        }
        return true;
      };
      const out = await evaluate(x, sigma, view, call, still);
      if (settle > 0) settled = settledOf(x, out, sigma, settle);
      return out;
    },
  };

  async function evaluate(x: Tensor, sigma: Float32Array, view: number, call: number, still: (n: number, x0: number, y0: number, w: number, h: number) => boolean): Promise<Tensor> {
    // Each tile (square but for an image of the model's size) in the view asked for, turned back before blending.
    const inner: Denoiser = view === 0 ? model : { denoise: async (t, s) => fromView(await model.denoise(toView(t, view), s), view) };
    const small = options.small;
    if (small !== undefined && small < options.tile && x.w <= small && x.h <= small) {
      return wholeImages(x, sigma, still, async (xs, s) => {
        if (xs.w === small && xs.h === small) return inner.denoise(xs, s);
        return cropTensor(await inner.denoise(mirrorPad(xs, small, small), s), 0, 0, xs.w, xs.h);
      });
    }
    const grid = planTiles(x.w, x.h, options.tile, overlap, maxTile);
    const tile = grid.tile;
    const ramp = rampOf(tile);
    if (x.h === tile && x.w === tile) return wholeImages(x, sigma, still, (xs, s) => inner.denoise(xs, s));
    const padded = x.h < tile || x.w < tile ? mirrorPad(x, Math.max(tile, x.w), Math.max(tile, x.h)) : x;
    const xs = tileStarts(padded.w, tile, overlap, shiftOf(call, grid.x.shifts, 0.6180339887));
    const ys = tileStarts(padded.h, tile, overlap, shiftOf(call, grid.y.shifts, 0.7548776662));
    // Every tile blended, in grid order; `skip` tiles give their input instead of the model's answer.
    const jobs: { n: number; x: number; y: number; skip: boolean }[] = [];
    for (let n = 0; n < x.n; n++) {
      for (const ty of ys) {
        for (const tx of xs) {
          const w = Math.min(tile, x.w - tx);
          const h = Math.min(tile, x.h - ty);
          if (!options.needed || options.needed(n, tx, ty, w, h)) jobs.push({ n, x: tx, y: ty, skip: still(n, tx, ty, w, h) });
        }
      }
    }
    const evaluated = jobs.filter((j) => !j.skip);
    // Calls at once: as many as the model works on (its inference processes), then no fewer calls than that (4 tiles
    // in two calls of 2, not one of 4). onnxruntime gives each tile the same output whatever its call holds.
    const parallel = Math.max(1, model.parallel ?? 1);
    const perCall = options.callPixels === undefined ? options.batch : Math.max(1, Math.min(options.batch, Math.floor(options.callPixels / (tile * tile))));
    const batch = Math.max(1, Math.min(perCall, Math.ceil(evaluated.length / parallel)));
    counts.run += evaluated.length;
    counts.skipped += jobs.length - evaluated.length;
    const acc = new Float64Array(padded.data.length);
    const wsum = new Float64Array(padded.n * padded.h * padded.w);
    const plane = padded.h * padded.w;
    const blend = (j: { n: number; x: number; y: number }, src: Float32Array, at: (c: number, r: number) => number): void => {
      for (let r = 0; r < tile; r++) {
        const wr = ramp[r];
        for (let u = 0; u < tile; u++) {
          const w = wr * ramp[u];
          const p = (j.y + r) * padded.w + j.x + u;
          wsum[j.n * plane + p] += w;
          for (let c = 0; c < x.c; c++) acc[(j.n * x.c + c) * plane + p] += w * src[at(c, r) + u];
        }
      }
    };
    // The next batch goes to the model before this one is blended, so that blending overlaps the model call.
    const run = (k: number): Promise<Tensor> => {
      const group = evaluated.slice(k, k + batch);
      const tiles = new Tensor(group.length, x.c, tile, tile);
      const sig = new Float32Array(group.length);
      group.forEach((j, i) => {
        sig[i] = sigma[j.n];
        for (let c = 0; c < x.c; c++) {
          for (let r = 0; r < tile; r++) {
            const src = ((j.n * x.c + c) * padded.h + j.y + r) * padded.w + j.x;
            tiles.data.set(padded.data.subarray(src, src + tile), ((i * x.c + c) * tile + r) * tile);
          }
        }
      });
      return inner.denoise(tiles, sig);
    };
    // Calls in flight, by their first tile: `parallel` of them, each next one sent as the earliest is taken.
    const inFlight = new Map<number, Promise<Tensor>>();
    const send = (k: number): void => {
      if (k >= evaluated.length) return;
      const call = run(k);
      call.catch(() => undefined); // awaited in its turn below: a failure meanwhile is not an unhandled rejection
      inFlight.set(k, call);
    };
    for (let k = 0; k < parallel; k++) send(k * batch);
    // Tiles are blended in grid order whether skipped or not, so that a pixel's sums never depend on the skipping.
    let out: Tensor | undefined;
    let done = 0; // evaluated tiles blended so far
    for (const j of jobs) {
      if (j.skip) {
        blend(j, padded.data, (c, r) => ((j.n * x.c + c) * padded.h + j.y + r) * padded.w + j.x);
        continue;
      }
      const i = done % batch;
      if (i === 0) {
        out = await (inFlight.get(done) as Promise<Tensor>);
        inFlight.delete(done);
        send(done + parallel * batch);
      }
      const o = out as Tensor;
      blend(j, o.data, (c, r) => ((i * x.c + c) * tile + r) * tile);
      done++;
    }
    // Pixels no needed tile covered keep their input.
    const result = new Tensor(x.n, x.c, x.h, x.w);
    for (let n = 0; n < x.n; n++) {
      for (let c = 0; c < x.c; c++) {
        for (let r = 0; r < x.h; r++) {
          for (let u = 0; u < x.w; u++) {
            const p = r * padded.w + u;
            const w = wsum[n * plane + p];
            const i = ((n * x.c + c) * x.h + r) * x.w + u;
            result.data[i] = w > 0 ? acc[(n * x.c + c) * plane + p] / w : x.data[i];
          }
        }
      }
    }
    return result;
  }

  /** Images of one tile each: the settled ones keep their input, the others go to the model together. */
  async function wholeImages(x: Tensor, sigma: Float32Array, still: (n: number, x0: number, y0: number, w: number, h: number) => boolean, run: (x: Tensor, sigma: Float32Array) => Promise<Tensor>): Promise<Tensor> {
    const keep = Array.from({ length: x.n }, (_, n) => still(n, 0, 0, x.w, x.h));
    const todo = keep.flatMap((k, n) => (k ? [] : [n]));
    counts.run += todo.length;
    counts.skipped += x.n - todo.length;
    if (todo.length === x.n) return run(x, sigma);
    const result = x.zerosLike();
    result.data.set(x.data);
    if (todo.length === 0) return result;
    const per = x.c * x.h * x.w;
    const sub = new Tensor(todo.length, x.c, x.h, x.w);
    todo.forEach((n, i) => sub.data.set(x.data.subarray(n * per, (n + 1) * per), i * per));
    const out = await run(sub, Float32Array.from(todo, (n) => sigma[n]));
    todo.forEach((n, i) => result.data.set(out.data.subarray(i * per, (i + 1) * per), n * per));
    return result;
  }
}

/** Side of the blocks in which settled pixels are kept track of: a block is settled when all its pixels are. */
const BLOCK = 8;

/**
 * The BLOCK x BLOCK blocks whose pixels the model all changed by less than `settle` (max over channels), with the
 * call's sigmas. A block stops at its first changed pixel, so an image with nothing settled costs about one pixel
 * per block.
 */
function settledOf(x: Tensor, out: Tensor, sigma: Float32Array, settle: number): { mask: Uint8Array; sigma: Float32Array; n: number; c: number; h: number; w: number } {
  const { w, h } = x;
  const plane = h * w;
  const bw = Math.ceil(w / BLOCK);
  const bh = Math.ceil(h / BLOCK);
  const mask = new Uint8Array(x.n * bh * bw);
  const a = out.data;
  const b = x.data;
  for (let n = 0; n < x.n; n++) {
    for (let by = 0; by < bh; by++) {
      for (let bx = 0; bx < bw; bx++) {
        let ok = 1;
        for (let c = 0; c < x.c && ok; c++) {
          const base = (n * x.c + c) * plane;
          for (let r = by * BLOCK; r < Math.min(h, (by + 1) * BLOCK) && ok; r++) {
            for (let u = bx * BLOCK; u < Math.min(w, (bx + 1) * BLOCK); u++) {
              const d = a[base + r * w + u] - b[base + r * w + u];
              if (d >= settle || d <= -settle || d !== d) {
                ok = 0;
                break;
              }
            }
          }
        }
        mask[(n * bh + by) * bw + bx] = ok;
      }
    }
  }
  return { mask, sigma: Float32Array.from(sigma), n: x.n, c: x.c, h: x.h, w: x.w };
}

/** x mirrored (without repeating the edge pixel, as numpy's "reflect") out to w x h at the right and bottom. */
export function mirrorPad(x: Tensor, w: number, h: number): Tensor {
  const out = new Tensor(x.n, x.c, h, w);
  const fold = (i: number, size: number): number => {
    if (size === 1) return 0;
    const period = 2 * (size - 1);
    const m = i % period;
    return m < size ? m : period - m;
  };
  for (let p = 0; p < x.n * x.c; p++) {
    for (let r = 0; r < h; r++) {
      const sr = fold(r, x.h);
      for (let u = 0; u < w; u++) out.data[(p * h + r) * w + u] = x.data[(p * x.h + sr) * x.w + fold(u, x.w)];
    }
  }
  return out;
}
