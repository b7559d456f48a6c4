/**
 * Coarse to fine (ALGORITHMS.md section 5), for what does not fit in one tile: the colours of a whole scene, a big
 * hole. The coarsest level is sampled with the task's own plan; every finer level starts from the coarser result
 * upsampled (bicubic) as its warm start, projected onto that level's known data, and runs a short low-sigma plan. It
 * is the same sampler at every level. A level marked not to be sampled only takes the upsampled result, projected
 * (colorize above a working size: the chroma comes from below, the luminance is the image's own). Pure.
 */
import { withEstimate, type Operator } from '../editing/operator.js';
import { resample } from '../editing/resample.js';
import type { Tensor } from '../tensor.js';
import { sample, type Denoiser, type NoiseSource, type StartKind, type StepEvent } from './sample.js';

export interface Stage {
  sigmas: readonly number[];
  start: StartKind;
  eta: number;
  samples: number;
}

export interface Level {
  operator: Operator;
  /** false: take the upsampled coarser result, projected, without running the model. */
  sample: boolean;
}

export interface CoarseToFineOptions {
  /** From the coarsest to the finest (the image's own size). */
  levels: readonly Level[];
  /** The coarsest level's plan and knobs (the task's). */
  first: Stage;
  /** Every finer level's. */
  refine: Stage;
  sigmaMin: number;
  /** Noise of sample k at level l. */
  noise: (level: number, sample: number) => NoiseSource;
  startIsNoisy?: boolean;
  onStep?: (event: StepEvent & { level: number; levels: number }) => void;
}

/** @param denoiser the model, or the model to use at each level */
export async function sampleCoarseToFine(denoiser: Denoiser | ((level: number) => Denoiser), o: CoarseToFineOptions): Promise<Tensor> {
  if (o.levels.length === 0) throw new RangeError('sampleCoarseToFine: no levels');
  let x: Tensor | undefined;
  for (let l = 0; l < o.levels.length; l++) {
    const { operator, sample: run } = o.levels[l];
    const op = x ? withEstimate(operator, resample(x, operator.start.w, operator.start.h, 'bicubic')) : operator;
    if (x && !run) {
      x = op.projectInRange(op.project(op.estimate()));
      continue;
    }
    const stage = l === 0 ? o.first : o.refine;
    x = await sample(typeof denoiser === 'function' ? denoiser(l) : denoiser, {
      operator: op,
      sigmas: stage.sigmas,
      sigmaMin: o.sigmaMin,
      noise: Array.from({ length: stage.samples }, (_, k) => o.noise(l, k)),
      start: l === 0 ? stage.start : 'estimate',
      eta: stage.eta,
      startIsNoisy: l === 0 && o.startIsNoisy,
      onStep: (e) => o.onStep?.({ ...e, level: l, levels: o.levels.length }),
    });
  }
  return x as Tensor;
}
