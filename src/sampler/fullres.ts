/**
 * Edits at the image's own size, whatever the model's (ALGORITHMS.md section 5): the one sampler over tiles, coarse
 * to fine where the answer does not fit in a tile, and windows around small holes. Each edit brings its operator at
 * full size; this module decides what runs where:
 * - "tiles": the sampler at full size, the model on overlapping tiles (superres, denoise, stroke; any image that
 *   fits in one tile is simply that tile, and same-size images of a batch share the model calls);
 * - "coarse-to-fine": each window (default: the whole image) is halved until it fits in a tile, sampled there with
 *   the task's plan, then refined level by level with a short low-sigma plan (colorize, big holes); levels above
 *   `maxSampledSide` take the upsampled result, projected, without the model;
 * - "resize": the same, but only the coarsest level is sampled (the old behaviour, `inpaint --strategy resize`).
 * Windows are cut from the operator (its `crop`), edited alone and pasted back: pixels outside every window keep the
 * operator's known data. Pure: the model is a Denoiser, randomness comes from the seeds.
 */
import { stackOperators, type Operator } from '../editing/operator.js';
import { halvingsToFit, type Rect } from '../editing/regions.js';
import { Rng } from '../rng.js';
import { pasteTensor, type Tensor } from '../tensor.js';
import { sampleCoarseToFine, type Level, type Stage } from './pyramid.js';
import { perImageNoise, sample, type Denoiser, type StepEvent } from './sample.js';
import { tiledDenoiser, type TileCounts } from './tiles.js';

export type Scales = 'tiles' | 'coarse-to-fine' | 'resize';

export interface FullResEdit {
  /** The edit of one image (batch 1) at the output size. */
  operator: Operator;
  /** Noise seed of this image. */
  seed: number;
  scales: Scales;
  /** Windows edited on their own; default: the whole image. */
  windows?: readonly Rect[];
  /** coarse-to-fine: levels whose longer side exceeds this are upsampled and projected, not sampled. */
  maxSampledSide?: number;
}

export interface FullResOptions {
  tile: number;
  overlap: number;
  /** The largest side tiles may be fitted to (see tiles.ts); default `tile`. */
  maxTile?: number;
  /** The model's resolution: images (and levels) that fit in it run as one tile of that size. */
  small?: number;
  /** Images or tiles per model call. */
  batch: number;
  /** Tiles per call as many as hold this many pixels, at most `batch` (see tiles.ts); default: `batch` tiles. */
  callPixels?: number;
  /** Tiles whose model change fell below this ([-1, 1] units) skip their later, lower-sigma steps (tiles.ts); default 0, never. */
  settle?: number;
  /** The task's plan and knobs (the coarsest level's, or the only level's). */
  first: Stage;
  /** The finer levels' of coarse to fine. */
  refine: Stage;
  sigmaMin: number;
  startIsNoisy?: boolean;
  onStep?: (event: StepEvent, edits: number[]) => void;
  /** After the edits of `edits` are done: the model tiles they ran and skipped as settled. */
  onTiles?: (counts: TileCounts, edits: number[]) => void;
}

/**
 * Noise stream of sample k at level l of window v: stream k of the seed for the whole image at its own size, so an
 * image that fits in one tile gets exactly the untiled result and `--samples 1` is the seed's own stream.
 */
export function streamOf(window: number, level: number, k: number): number {
  return window * 4096 + level * 64 + k;
}

/** The results, one [1,C,H,W] tensor per edit, in the order given. */
export async function editFullResolution(model: Denoiser, edits: readonly FullResEdit[], o: FullResOptions): Promise<Tensor[]> {
  const results: Tensor[] = new Array(edits.length);
  // Plain tiled edits of one size share their model calls (images of the model's size stack into one batch).
  const plain = (e: FullResEdit): boolean => e.scales === 'tiles' && !e.windows;
  const done = new Set<number>();
  for (let i = 0; i < edits.length; i++) {
    if (done.has(i)) continue;
    const e = edits[i];
    if (plain(e)) {
      const { w, h } = e.operator.start;
      const group = edits.map((f, j) => j).filter((j) => !done.has(j) && plain(edits[j]) && edits[j].operator.start.w === w && edits[j].operator.start.h === h);
      group.forEach((j) => done.add(j));
      const op = stackOperators(group.map((j) => edits[j].operator));
      const tiled = tilesOf(model, o, op.generates);
      const x = await sample(tiled, {
        operator: op,
        sigmas: o.first.sigmas,
        sigmaMin: o.sigmaMin,
        noise: Array.from({ length: o.first.samples }, (_, k) => perImageNoise(group.map((j) => new Rng(edits[j].seed, streamOf(0, 0, k))))),
        start: o.first.start,
        eta: o.first.eta,
        views: o.first.views,
        startIsNoisy: o.startIsNoisy,
        onStep: (ev) => o.onStep?.(ev, group),
      });
      group.forEach((j, k) => (results[j] = x.image(k)));
      o.onTiles?.(tiled.tiles, group);
      continue;
    }
    done.add(i);
    results[i] = await editWindows(model, e, i, o);
  }
  return results;
}

async function editWindows(model: Denoiser, e: FullResEdit, index: number, o: FullResOptions): Promise<Tensor> {
  const full = e.operator;
  const { w, h } = full.start;
  const windows = e.windows ?? [{ x: 0, y: 0, w, h }];
  let canvas = full.start;
  for (let v = 0; v < windows.length; v++) {
    const r = windows[v];
    const whole = r.x === 0 && r.y === 0 && r.w === w && r.h === h;
    const op = whole ? full : cropOf(full, r);
    const levels = e.scales === 'tiles' ? [{ operator: op, sample: true }] : pyramid(op, o.tile, e.scales === 'resize' ? 0 : (e.maxSampledSide ?? Infinity));
    // One tiled denoiser per level, so that tiles with nothing to generate are skipped at every level.
    const perLevel = levels.map((l) => tilesOf(model, o, l.operator.generates));
    const x = await sampleCoarseToFine((l) => perLevel[l], {
      levels,
      first: o.first,
      refine: o.refine,
      sigmaMin: o.sigmaMin,
      startIsNoisy: o.startIsNoisy,
      noise: (l, k) => perImageNoise([new Rng(e.seed, streamOf(v, l, k))]),
      onStep: (ev) => o.onStep?.(ev, [index]),
    });
    canvas = whole ? x : pasteTensor(canvas, x, r.x, r.y);
    o.onTiles?.(
      perLevel.reduce((t, d) => ({ run: t.run + d.tiles.run, skipped: t.skipped + d.tiles.skipped }), { run: 0, skipped: 0 }),
      [index],
    );
  }
  return windows.length === 1 && windows[0].w === w && windows[0].h === h ? canvas : full.projectInRange(canvas);
}

/** The model on tiles as the options say, skipping tiles with nothing to generate. */
function tilesOf(model: Denoiser, o: FullResOptions, needed: Operator['generates']): ReturnType<typeof tiledDenoiser> {
  return tiledDenoiser(model, { tile: o.tile, overlap: o.overlap, maxTile: o.maxTile, batch: o.batch, callPixels: o.callPixels, small: o.small, needed, settle: o.settle });
}

function cropOf(op: Operator, r: Rect): Operator {
  if (!op.crop) throw new RangeError('this edit cannot be cut into windows');
  return op.crop(r.x, r.y, r.w, r.h);
}

/** The operator halved until it fits in a tile, coarsest first; only levels up to maxSampledSide are sampled. */
function pyramid(op: Operator, tile: number, maxSampledSide: number): Level[] {
  const { w, h } = op.start;
  const k = halvingsToFit(w, h, tile);
  const ops: Operator[] = [op];
  for (let i = 0; i < k; i++) {
    const coarser = ops[0].coarsen;
    if (!coarser) throw new RangeError('this edit has no coarser version');
    ops.unshift(coarser());
  }
  return ops.map((operator, i) => ({ operator, sample: i === 0 || Math.max(operator.start.w, operator.start.h) <= maxSampledSide }));
}
