/**
 * An edit, as data (ALGORITHMS.md section 4): an orthogonal map A with a mask Omega over A's coordinates, given the
 * reference y. Each task builds one; the sampler only calls these two members. Pure.
 */
import { clamp, concatBatch, Tensor } from '../tensor.js';

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
}

/** Nothing known: sampling starts from `start` (zeros, or a guide image for SDEdit) and no projection is made. */
export function unconstrained(start: Tensor): Operator {
  return { start, estimate: () => start, project: (x) => x, projectInRange: (x) => clamp(x) };
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
  };
}
