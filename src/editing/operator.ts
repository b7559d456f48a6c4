/**
 * An edit, as data (ALGORITHMS.md section 4): an orthogonal map A with a mask Omega over A's coordinates, given the
 * reference y. Each task builds one; the sampler only calls these two members. Pure.
 */
import { clamp, Tensor } from '../tensor.js';

export interface Operator {
  /**
   * Where sampling starts before noise is added: the known part alone, A^T[(A y)(1 - Omega)]; for guided generation
   * (SDEdit) the guide image itself; zeros for unconditional generation.
   */
  readonly start: Tensor;
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
  return { start, project: (x) => x, projectInRange: (x) => clamp(x) };
}
