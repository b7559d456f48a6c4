/**
 * An edit, as data (ALGORITHMS.md section 4): an orthogonal map A with a mask Omega over A's coordinates, given the
 * reference y, built at the image's own size. The sampler only uses these members; for images larger than the
 * model it also asks an operator for its crops (a window of the image) and coarser versions (coarse to fine). Pure.
 */
import { clamp, concatBatch, cropTensor, halveTensor, Tensor } from '../tensor.js';

export interface Operator {
  /**
   * Where sampling starts before noise is added: the known part alone, A^T[(A y)(1 - Omega)]; for guided generation
   * (SDEdit) the guide image itself; zeros for unconditional generation.
   */
  readonly start: Tensor;
  /**
   * The task's classical estimate of the whole answer (ALGORITHMS.md 4b): Lanczos upsampling, the harmonic fill,
   * the gray image; for guided and denoising tasks the input itself. A warm-started plan begins from P(estimate).
   * Computed on first use.
   */
  estimate(): Tensor;
  /** P(x) = A^T[(A y)(1 - Omega) + (A x) Omega]: the known coordinates of y, the generated ones of x. Idempotent. */
  project(x: Tensor): Tensor;
  /**
   * The nearest image with values in [-1, 1] whose known coordinates are y's: the sampler's final output, so that
   * encoding (which clips to 0..255) never changes known data.
   */
  projectInRange(x: Tensor): Tensor;
  /**
   * How several independent samples (each in range, with the known data) make the answer; default their mean.
   * Must keep the known data and the range.
   */
  combine?(samples: readonly Tensor[]): Tensor;
  /**
   * The sampler's answer made from its combined output (in range, with the known data), applied once at the very
   * end: a clean-up of what the projections leave, which must keep the known data and the range. Default: none.
   * Superres deblocks its patch borders. It runs once per `sample` call, so coarse to fine (which samples each level
   * with the level's operator) would run it at every sampled level: superres has no coarser levels or windows.
   */
  finish?(x: Tensor): Tensor;
  /** Whether the w x h rectangle at (x, y) of image n has a generated coordinate (default: yes). */
  generates?(n: number, x: number, y: number, w: number, h: number): boolean;
  /** The same edit on the w x h window at (x, y) of a one-image batch. */
  crop?(x: number, y: number, w: number, h: number): Operator;
  /** The same edit at half the size (rounded up), its known data averaged over 2 x 2 cells. */
  coarsen?(): Operator;
}

/** Nothing known: sampling starts from `start` (zeros, or a guide image for SDEdit) and no projection is made. */
export function unconstrained(start: Tensor): Operator {
  return {
    start,
    estimate: () => start,
    project: (x) => x,
    projectInRange: (x) => clamp(x),
    crop: (x, y, w, h) => unconstrained(cropTensor(start, x, y, w, h)),
    coarsen: () => unconstrained(halveTensor(start)),
  };
}

/** The operator with another classical estimate (coarse to fine: the upsampled coarser result). */
export function withEstimate(op: Operator, estimate: Tensor): Operator {
  return { ...op, estimate: () => estimate };
}

/** A function computed on its first call only. */
export function once<T>(f: () => T): () => T {
  let value: T | undefined;
  let done = false;
  return () => {
    if (!done) {
      value = f();
      done = true;
    }
    return value as T;
  };
}

/** Several single-image operators as one operator over their batch (image i of x goes to operator i). */
export function stackOperators(ops: readonly Operator[]): Operator {
  if (ops.length === 1) return ops[0];
  const each = (x: Tensor, f: (op: Operator, xi: Tensor) => Tensor): Tensor => {
    if (x.n !== ops.length) throw new RangeError(`stackOperators: a batch of ${x.n} for ${ops.length} operators`);
    return concatBatch(ops.map((op, i) => f(op, x.image(i))));
  };
  return {
    start: concatBatch(ops.map((op) => op.start)),
    estimate: once(() => concatBatch(ops.map((op) => op.estimate()))),
    project: (x) => each(x, (op, xi) => op.project(xi)),
    projectInRange: (x) => each(x, (op, xi) => op.projectInRange(xi)),
    ...(ops.some((op) => op.combine) && {
      combine: (xs: readonly Tensor[]) => concatBatch(ops.map((op, i) => (op.combine ?? meanOf)(xs.map((x) => x.image(i))))),
    }),
    ...(ops.some((op) => op.finish) && { finish: (x: Tensor) => each(x, (op, xi) => op.finish?.(xi) ?? xi) }),
    generates: (n, x, y, w, h) => ops[n].generates?.(0, x, y, w, h) ?? true,
  };
}

/** The mean of several samples (the default combination: affine known data and a convex range are kept). */
export function meanOf(xs: readonly Tensor[]): Tensor {
  const out = xs[0].zerosLike();
  const sum = new Float64Array(out.data.length);
  for (const x of xs) for (let i = 0; i < sum.length; i++) sum[i] += x.data[i];
  for (let i = 0; i < sum.length; i++) out.data[i] = sum[i] / xs.length;
  return out;
}
