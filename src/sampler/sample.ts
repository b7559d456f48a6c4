/**
 * The one multistep consistency sampler (ALGORITHMS.md sections 3, 4 and 4b). Every task runs through `sample`: it
 * only differs in the operator (the known data, its projection, its classical estimate), the plan and the three
 * knobs: where sampling starts (the known part alone, or the projected estimate), how much fresh noise comes back
 * between steps (eta), and how many independent samples are averaged. start "known" with eta 1 and one sample is
 * the paper's Algorithm 4. Pure: the network is behind the Denoiser interface, randomness behind NoiseSources.
 */
import { addScaled, clamp, concatBatch, Tensor } from '../tensor.js';
import type { Operator } from '../editing/operator.js';

/**
 * f(x, sigma): the consistency function of a model, sigma given per batch item. A denoiser with `views` also takes a
 * dihedral view (0-7, src/tensor.ts toView): it evaluates the model on that mirrored or turned copy of its input and
 * turns the answer back (tiles.ts does, per tile).
 */
export interface Denoiser {
  denoise(x: Tensor, sigma: Float32Array, view?: number): Promise<Tensor>;
  readonly views?: boolean;
  /** How many calls at once it can work on (inference processes): callers with independent batches keep that many going. */
  readonly parallel?: number;
}

/**
 * The view of evaluation e (over all steps and samples of a run) when views are on: the identity first, and each
 * next one as unlike the views before as the group allows (a mirror, a half turn, ...), so that a few evaluations
 * already average over different orientations.
 */
export const VIEW_ORDER = [0, 6, 5, 3, 2, 4, 7, 1];

/** Noise for step `step` (0 = the initial noise), shaped like `like`. */
export type NoiseSource = (step: number, like: Tensor) => Tensor;

export interface StepEvent {
  /** 1-based step number and the total number of evaluations (over all samples). */
  step: number;
  steps: number;
  sigma: number;
  /** The projected denoised sample of this step. */
  denoised: Tensor;
}

/** Where sampling starts: the known part alone (Algorithm 4) or the projected classical estimate (warm start). */
export type StartKind = 'known' | 'estimate';
export const START_KINDS: readonly StartKind[] = ['known', 'estimate'];

export interface SampleOptions {
  operator: Operator;
  /** Noise levels: the model is evaluated at each but the last (see schedule.ts). */
  sigmas: readonly number[];
  sigmaMin: number;
  /** One noise source per sample; with several, their outputs are averaged (--samples K). */
  noise: NoiseSource | readonly NoiseSource[];
  /** The start already carries noise of level sigmas[0] (denoising a noisy photo): add none before the first step. */
  startIsNoisy?: boolean;
  /** Default "known". */
  start?: StartKind;
  /** The share of fresh noise between steps, in [0, 1]; default 1 (the paper). */
  eta?: number;
  /**
   * Evaluate each step on another dihedral view of x (VIEW_ORDER in turn, over steps and samples), undone on the
   * answer: the model's errors that depend on orientation average out over the steps and samples. Default false.
   */
  views?: boolean;
  onStep?: (event: StepEvent) => void;
}

/**
 * x = start + sigma_0 z_0; per step x0 = P(clamp(f(x, sigma_i))) and x = x0 + eta sqrt(sigma_{i+1}^2 - eps^2) z_{i+1};
 * the output is the last x0 projected into [-1, 1] with the known data kept. With K noise sources the K outputs are
 * averaged: P is affine and the in-range set convex, so the mean keeps the known data and the range too. An operator
 * with a combination of its own (colorize: the mean colour shrunk by the samples' disagreement) makes the answer
 * from the K outputs instead, then projected into range. Last, the operator's finish, if it has one (superres
 * deblocks its patch borders), makes the answer from that.
 */
export async function sample(denoiser: Denoiser, options: SampleOptions): Promise<Tensor> {
  const out = await sampleAll(denoiser, options);
  return options.operator.finish ? options.operator.finish(out) : out;
}

/** `sample` before the operator's finish: the one sample, or the combination of all of them. */
async function sampleAll(denoiser: Denoiser, options: SampleOptions): Promise<Tensor> {
  const { operator, sigmas } = options;
  if (sigmas.length < 2) throw new RangeError(`Expected at least two noise levels but received ${sigmas.length}`);
  const eta = options.eta ?? 1;
  if (!(eta >= 0 && eta <= 1)) throw new RangeError(`Expected eta between 0 and 1 but received ${eta}`);
  const noises = typeof options.noise === 'function' ? [options.noise] : options.noise;
  if (noises.length < 1) throw new RangeError('Expected at least one noise source');
  const steps = sigmas.length - 1;
  const total = steps * noises.length;
  if (options.views && !denoiser.views) throw new RangeError('Expected a denoiser that takes views (a tiled one) for views');
  const outs: Tensor[] = [];
  let sum: Float64Array | undefined;
  let last: Tensor | undefined;
  for (let k = 0; k < noises.length; k++) {
    const out = await sampleOnce(denoiser, options, noises[k], eta, k * steps, (e) => options.onStep?.({ ...e, step: k * steps + e.step, steps: total }));
    if (noises.length === 1) return out;
    // Without a combination of its own, only the running sum is kept (not K full-size images).
    if (operator.combine) {
      outs.push(out);
      continue;
    }
    sum ??= new Float64Array(out.data.length);
    for (let i = 0; i < sum.length; i++) sum[i] += out.data[i];
    last = out;
  }
  if (operator.combine) return operator.projectInRange(operator.combine(outs));
  const mean = (last as Tensor).zerosLike();
  for (let i = 0; i < mean.data.length; i++) mean.data[i] = (sum as Float64Array)[i] / noises.length;
  return mean;
}

async function sampleOnce(
  denoiser: Denoiser,
  options: SampleOptions,
  noise: NoiseSource,
  eta: number,
  firstEvaluation: number,
  onStep: (event: StepEvent) => void,
): Promise<Tensor> {
  const { operator, sigmas, sigmaMin } = options;
  const steps = sigmas.length - 1;
  const start = options.start === 'estimate' && !options.startIsNoisy ? operator.project(operator.estimate()) : operator.start;
  let x = options.startIsNoisy ? start : addScaled(start, sigmas[0], noise(0, start));
  let x0 = x;
  for (let i = 0; i < steps; i++) {
    const sigma = sigmas[i];
    const sig = new Float32Array(x.n).fill(sigma);
    const f = await (options.views ? denoiser.denoise(x, sig, VIEW_ORDER[(firstEvaluation + i) % VIEW_ORDER.length]) : denoiser.denoise(x, sig));
    x0 = operator.project(clamp(f));
    onStep({ step: i + 1, steps, sigma, denoised: x0 });
    const next = sigmas[i + 1];
    const scale = eta * Math.sqrt(Math.max(0, next * next - sigmaMin * sigmaMin));
    x = scale > 0 ? addScaled(x0, scale, noise(i + 1, x0)) : x0;
  }
  return operator.projectInRange(x);
}

interface NormalSource {
  normalTensor(n: number, c: number, h: number, w: number): Tensor;
}

/** Fresh standard normal noise for every step from one seeded stream. */
export function gaussianNoise(rng: NormalSource): NoiseSource {
  return (_step, like) => rng.normalTensor(like.n, like.c, like.h, like.w);
}

/**
 * Noise for a batch whose image i draws from its own stream: an image gets the same noise whether it is sampled
 * alone or with others, so --batch never changes a result.
 */
export function perImageNoise(rngs: readonly NormalSource[]): NoiseSource {
  return (_step, like) => {
    if (like.n !== rngs.length) throw new RangeError(`perImageNoise: a batch of ${like.n} for ${rngs.length} streams`);
    return concatBatch(rngs.map((r) => r.normalTensor(1, like.c, like.h, like.w)));
  };
}
