/**
 * Coarse to fine (ALGORITHMS.md section 5), for what does not fit in one tile: the colours of a whole scene, a big
 * hole. The coarsest level is sampled with the task's own plan; every finer level gets a warm start made from the
 * coarser result, projected onto that level's known data, and runs a short low-sigma plan. It is the same sampler at
 * every level. A level marked not to be sampled only takes its warm start, projected (colorize above a working
 * size: the chroma comes from below, the luminance is the image's own).
 *
 * The warm start of a finer level is its own classical estimate plus what sampling added to the coarser level's,
 * upsampled: E_fine + up(x_coarse - E_coarse) (a Laplacian-pyramid step). What the classical method solves at any
 * scale (a harmonic fill's smooth interior, the luminance's detail) is then solved at full resolution, and only the
 * model's own contribution comes from below. Plainly upsampling x_coarse instead scored 0.1-0.9 dB below the
 * full-resolution harmonic fill on whole-photo holes (training photos, then the benchmark), and put colorize's
 * luminance detail along the luma weights (0.30, 0.59, 0.11) rather than along gray, a green/magenta tint on edges.
 * Pure.
 */
import { withEstimate, type Operator } from '../editing/operator.js';
import { resample } from '../editing/resample.js';
import { addScaled, type Tensor } from '../tensor.js';
import { sample, type Denoiser, type NoiseSource, type StartKind, type StepEvent } from './sample.js';

export interface Stage {
  sigmas: readonly number[];
  start: StartKind;
  eta: number;
  samples: number;
  /** Each evaluation on another dihedral view (sample.ts); default false. */
  views?: boolean;
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
  // The classical estimate of the level x was sampled at: each level's is made once and handed up.
  let below: Tensor | undefined;
  for (let l = 0; l < o.levels.length; l++) {
    const { operator, sample: run } = o.levels[l];
    let op = operator;
    if (x) {
      const own = operator.estimate();
      op = withEstimate(operator, carryUp(own, below ?? o.levels[l - 1].operator.estimate(), x));
      below = own;
    }
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
      views: stage.views,
      startIsNoisy: l === 0 && o.startIsNoisy,
      onStep: (e) => o.onStep?.({ ...e, level: l, levels: o.levels.length }),
    });
  }
  return x as Tensor;
}

/** E_fine + up(x_coarse - E_coarse): the finer level's estimate plus the coarser level's sampled change, upsampled. */
export function carryUp(fineEstimate: Tensor, coarseEstimate: Tensor, xCoarse: Tensor): Tensor {
  const change = addScaled(xCoarse, -1, coarseEstimate);
  const out = resample(change, fineEstimate.w, fineEstimate.h, 'bicubic');
  const ef = fineEstimate.data;
  for (let i = 0; i < out.data.length; i++) out.data[i] += ef[i];
  return out;
}
