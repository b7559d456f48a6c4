/**
 * Seeded random numbers: xoshiro128** seeded through splitmix32, Gaussian values by Box-Muller.
 * Every random draw in `cm` comes from an Rng passed in, so the same seed gives the same result.
 */
import { Tensor } from './tensor.js';

export const MAX_SEED = 0xffffffff;

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | undefined;

  /**
   * @param seed the user's seed
   * @param stream an independent stream of the same seed (the k-th of --samples K); stream 0 is the seed's own
   */
  constructor(seed: number, stream = 0) {
    if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
      throw new RangeError(`Expected an integer between 0 and ${MAX_SEED} for seed but received ${seed}`);
    }
    if (!Number.isInteger(stream) || stream < 0 || stream > MAX_SEED) {
      throw new RangeError(`Expected an integer between 0 and ${MAX_SEED} for stream but received ${stream}`);
    }
    let x = seed >>> 0;
    const next = (): number => {
      // splitmix32
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if (stream > 0) {
      // Mix the stream number into the state through a second splitmix sequence (never all zero: s0..s3 come from
      // distinct splitmix outputs, and xor with another sequence's outputs keeps them a function of both inputs).
      x = (Math.imul(stream, 0x632be5ab) ^ 0x5bd1e995) >>> 0;
      this.s0 = (this.s0 ^ next()) >>> 0;
      this.s1 = (this.s1 ^ next()) >>> 0;
      this.s2 = (this.s2 ^ next()) >>> 0;
      this.s3 = (this.s3 ^ next()) >>> 0;
      if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
    }
  }

  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    this.s3 >>>= 0;
    return result;
  }

  /** A uniform number in (0, 1): never 0, so its logarithm is finite. */
  uniform(): number {
    return (this.nextUint32() + 0.5) / 4294967296;
  }

  /** A standard normal number. */
  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const theta = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** A tensor of standard normal values. */
  normalTensor(n: number, c: number, h: number, w: number): Tensor {
    const t = new Tensor(n, c, h, w);
    const d = t.data;
    for (let i = 0; i < d.length; i++) d[i] = this.normal();
    return t;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
