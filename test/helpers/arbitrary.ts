/** fast-check generators for small random images. */
import fc from 'fast-check';
import { Rng } from '../../src/rng.js';
import { Tensor } from '../../src/tensor.js';

/** A tensor of the given shape with values uniform in [-1, 1], from a seed. */
export function randomTensor(seed: number, n: number, c: number, h: number, w: number): Tensor {
  const rng = rngFor(seed);
  const t = new Tensor(n, c, h, w);
  for (let i = 0; i < t.data.length; i++) t.data[i] = 2 * rng.uniform() - 1;
  return t;
}

export const seed = fc.integer({ min: 0, max: 0xffffffff });
/** Small image sides that every superres factor in the tests divides. */
export const side = fc.constantFrom(8, 16);
export const batch = fc.integer({ min: 1, max: 2 });

/** An Rng from any integer (seeds derived in tests by arithmetic may leave the uint32 range). */
export function rngFor(seed: number): Rng {
  return new Rng(seed >>> 0);
}
