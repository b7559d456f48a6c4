/**
 * The one multistep consistency sampler (ALGORITHMS.md sections 3-4). Every task runs through `sample`: it only
 * differs in the operator (where sampling starts, and the projection onto the known data) and in the plan.
 * Pure: the network is behind the Denoiser interface, randomness behind a NoiseSource.
 */
import { addScaled, clamp, concatBatch, Tensor } from '../tensor.js';
import type { Operator } from '../editing/operator.js';

/** f(x, sigma): the consistency function of a model, sigma given per batch item. */
export interface Denoiser {
  denoise(x: Tensor, sigma: Float32Array): Promise<Tensor>;
}

/** Noise for step `step` (0 = the initial noise), shaped like `like`. */
export type NoiseSource = (step: number, like: Tensor) => Tensor;

export interface StepEvent {
  /** 1-based step number and the total number of evaluations. */
  step: number;
  steps: number;
  sigma: number;
  /** The projected denoised sample of this step. */
  denoised: Tensor;
}

export interface SampleOptions {
  operator: Operator;
  /** Noise levels: the model is evaluated at each but the last (see schedule.ts). */
  sigmas: readonly number[];
  sigmaMin: number;
  noise: NoiseSource;
  /** The start already carries noise of level sigmas[0] (denoising a noisy photo): add none before the first step. */
  startIsNoisy?: boolean;
  onStep?: (event: StepEvent) => void;
}

export async function sample(denoiser: Denoiser, options: SampleOptions): Promise<Tensor> {
  const { operator, sigmas, sigmaMin, noise, onStep } = options;
  if (sigmas.length < 2) throw new RangeError(`Expected at least two noise levels but received ${sigmas.length}`);
  const steps = sigmas.length - 1;
  const start = operator.start;
  let x = options.startIsNoisy ? start : addScaled(start, sigmas[0], noise(0, start));
  let x0 = x;
  for (let i = 0; i < steps; i++) {
    const sigma = sigmas[i];
    const f = await denoiser.denoise(x, new Float32Array(x.n).fill(sigma));
    x0 = operator.project(clamp(f));
    onStep?.({ step: i + 1, steps, sigma, denoised: x0 });
    const next = sigmas[i + 1];
    const scale = Math.sqrt(Math.max(0, next * next - sigmaMin * sigmaMin));
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
