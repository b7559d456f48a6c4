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
}

/** The smallest weight a tile gives a pixel (at its very edge): the sum over tiles is never 0. */
const EDGE_WEIGHT = 1e-3;

export function checkTileOptions(o: TileOptions): void {
  if (!Number.isInteger(o.tile) || o.tile < 8) throw new RangeError(`Expected a tile of at least 8 pixels but received ${o.tile}`);
  if (!Number.isInteger(o.overlap) || o.overlap < 0 || 2 * o.overlap >= o.tile) {
    throw new RangeError(`Expected an overlap between 0 and ${Math.ceil(o.tile / 2) - 1} for tiles of ${o.tile} but received ${o.overlap}`);
  }
  if (!Number.isInteger(o.batch) || o.batch < 1) throw new RangeError(`Expected a positive batch but received ${o.batch}`);
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

/** A Denoiser over images of any size, evaluating `inner` on tiles. `calls` counts its evaluations so far. */
export function tiledDenoiser(model: Denoiser, options: TileOptions): Denoiser & { readonly calls: number } {
  checkTileOptions(options);
  const { overlap } = options;
  const maxTile = options.maxTile ?? options.tile;
  const ramps = new Map<number, Float32Array>();
  const rampOf = (tile: number): Float32Array => {
    let r = ramps.get(tile);
    if (!r) ramps.set(tile, (r = Float32Array.from({ length: tile }, (_, u) => rampWeight(u, tile, overlap))));
    return r;
  };
  let calls = 0;
  return {
    get calls() {
      return calls;
    },
    views: true,
    async denoise(x: Tensor, sigma: Float32Array, view = 0): Promise<Tensor> {
      const call = calls++;
      // Each tile (square but for an image of the model's size) in the view asked for, turned back before blending.
      const inner: Denoiser = view === 0 ? model : { denoise: async (t, s) => fromView(await model.denoise(toView(t, view), s), view) };
      const small = options.small;
      if (small !== undefined && small < options.tile && x.w <= small && x.h <= small) {
        if (x.w === small && x.h === small) return inner.denoise(x, sigma);
        const out = await inner.denoise(mirrorPad(x, small, small), sigma);
        return cropTensor(out, 0, 0, x.w, x.h);
      }
      const grid = planTiles(x.w, x.h, options.tile, overlap, maxTile);
      const tile = grid.tile;
      const ramp = rampOf(tile);
      const batch = options.callPixels === undefined ? options.batch : Math.max(1, Math.min(options.batch, Math.floor(options.callPixels / (tile * tile))));
      if (x.h === tile && x.w === tile) return inner.denoise(x, sigma);
      const padded = x.h < tile || x.w < tile ? mirrorPad(x, Math.max(tile, x.w), Math.max(tile, x.h)) : x;
      const xs = tileStarts(padded.w, tile, overlap, shiftOf(call, grid.x.shifts, 0.6180339887));
      const ys = tileStarts(padded.h, tile, overlap, shiftOf(call, grid.y.shifts, 0.7548776662));
      const jobs: { n: number; x: number; y: number }[] = [];
      for (let n = 0; n < x.n; n++) {
        for (const ty of ys) {
          for (const tx of xs) {
            if (!options.needed || options.needed(n, tx, ty, Math.min(tile, x.w - tx), Math.min(tile, x.h - ty))) jobs.push({ n, x: tx, y: ty });
          }
        }
      }
      const acc = new Float64Array(padded.data.length);
      const wsum = new Float64Array(padded.n * padded.h * padded.w);
      const plane = padded.h * padded.w;
      // The next batch goes to the model before this one is blended, so that blending overlaps the model call.
      const run = (k: number): Promise<Tensor> => {
        const group = jobs.slice(k, k + batch);
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
      let pending = jobs.length > 0 ? run(0) : undefined;
      for (let k = 0; k < jobs.length; k += batch) {
        const out = await (pending as Promise<Tensor>);
        pending = k + batch < jobs.length ? run(k + batch) : undefined;
        jobs.slice(k, k + batch).forEach((j, i) => {
          for (let r = 0; r < tile; r++) {
            const wr = ramp[r];
            for (let u = 0; u < tile; u++) {
              const w = wr * ramp[u];
              const p = (j.y + r) * padded.w + j.x + u;
              wsum[j.n * plane + p] += w;
              for (let c = 0; c < x.c; c++) acc[(j.n * x.c + c) * plane + p] += w * out.data[((i * x.c + c) * tile + r) * tile + u];
            }
          }
        });
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
    },
  };
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
