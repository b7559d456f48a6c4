/**
 * Separable resampling with a real bicubic (Keys, a = -0.5), Lanczos-3 or cubic B-spline kernel, the convention of PIL's
 * `Image.resize`: output pixel i samples the input at (i + 0.5) in/out - 0.5, the kernel is widened by in/out when
 * shrinking (so it also antialiases), the taps are cut at the image border and renormalised. The warm start of
 * super-resolution and the scale changes of full-resolution editing use it (sharp ignores the kernel when enlarging).
 * Pure.
 */
import { Tensor } from '../tensor.js';

/** bspline3: the cubic B-spline, positive and C2 (not interpolating: superres's smooth correction uses it). */
export type Kernel = 'bicubic' | 'lanczos3' | 'bspline3';

const SUPPORT: Record<Kernel, number> = { bicubic: 2, lanczos3: 3, bspline3: 2 };

function weight(kernel: Kernel, x: number): number {
  const t = Math.abs(x);
  if (kernel === 'bicubic') {
    const a = -0.5;
    if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
    if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
    return 0;
  }
  if (kernel === 'bspline3') return t < 1 ? (4 - 6 * t * t + 3 * t * t * t) / 6 : t < 2 ? (2 - t) ** 3 / 6 : 0;
  if (t >= 3) return 0;
  return sinc(t) * sinc(t / 3);
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

/** For each output index: the first input index and the normalised weights of its taps. */
export interface Taps {
  first: Int32Array;
  count: Int32Array;
  weights: Float64Array;
  stride: number;
}

export function taps(kernel: Kernel, inSize: number, outSize: number): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = SUPPORT[kernel] * filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * stride);
  for (let i = 0; i < outSize; i++) {
    const centre = (i + 0.5) * scale;
    const lo = Math.max(Math.trunc(centre - support + 0.5), 0);
    const hi = Math.min(Math.trunc(centre + support + 0.5), inSize);
    let sum = 0;
    for (let j = lo; j < hi; j++) {
      const w = weight(kernel, (j - centre + 0.5) / filterScale);
      weights[i * stride + j - lo] = w;
      sum += w;
    }
    for (let j = lo; j < hi; j++) weights[i * stride + j - lo] /= sum === 0 ? 1 : sum;
    first[i] = lo;
    count[i] = hi - lo;
  }
  return { first, count, weights, stride };
}

/** Every plane of x resampled to width x height (either or both may grow or shrink). */
export function resample(x: Tensor, width: number, height: number, kernel: Kernel): Tensor {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`resample: expected a positive integer size but received ${width}x${height}`);
  }
  if (width === x.w && height === x.h) return x.clone();
  const planes = x.n * x.c;
  // Horizontal pass into [planes, x.h, width], then vertical into [planes, height, width].
  const tx = taps(kernel, x.w, width);
  const mid = new Float64Array(planes * x.h * width);
  for (let p = 0; p < planes; p++) {
    for (let r = 0; r < x.h; r++) {
      const src = (p * x.h + r) * x.w;
      const dst = (p * x.h + r) * width;
      for (let i = 0; i < width; i++) {
        let s = 0;
        const w0 = i * tx.stride;
        const f = src + tx.first[i];
        for (let k = 0; k < tx.count[i]; k++) s += tx.weights[w0 + k] * x.data[f + k];
        mid[dst + i] = s;
      }
    }
  }
  const ty = taps(kernel, x.h, height);
  const out = new Tensor(x.n, x.c, height, width);
  const row = new Float64Array(width);
  for (let p = 0; p < planes; p++) {
    for (let r = 0; r < height; r++) {
      row.fill(0);
      const w0 = r * ty.stride;
      for (let k = 0; k < ty.count[r]; k++) {
        const w = ty.weights[w0 + k];
        const src = (p * x.h + ty.first[r] + k) * width;
        for (let i = 0; i < width; i++) row[i] += w * mid[src + i];
      }
      out.data.set(row, (p * height + r) * width);
    }
  }
  return out;
}
