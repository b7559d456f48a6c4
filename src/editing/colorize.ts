/**
 * Colorization: per pixel, A = a 3x3 orthogonal Q whose first row is w/|w| (w = the luminance weights); the
 * luminance coordinate is known, the two chroma coordinates are generated. Closed form, exact whatever the completion
 * of Q: P(x) = x + w (w.y - w.x) / (w.w).
 *
 * Several samples (colorize draws CHROMA_SAMPLES unless --samples says) make one answer by their chroma: the mean
 * chroma m (each sample minus the gray of the same luminance), shrunk toward gray by how much the samples disagree,
 * m |m|^2 / (|m|^2 + 2 v) with v the mean squared distance of their chroma to m, both smoothed over a few pixels.
 * Where the samples agree their colour stays; where the model only guesses (a gray wall painted green by one sample
 * and purple by the next) it goes to gray rather than to a tint. Pure.
 */
import { cropTensor, halveTensor, Tensor } from '../tensor.js';
import { projectBlockInRange } from './box.js';
import type { Operator } from './operator.js';

/** ITU-R BT.601 luma weights, as in the paper's code. */
export const LUMA: readonly [number, number, number] = [0.2989, 0.587, 0.114];
const LUMA_NORM2 = LUMA[0] ** 2 + LUMA[1] ** 2 + LUMA[2] ** 2;
/** The gray of luminance L: (L, L, L) / (sum of the weights), exactly on the luminance. */
const LUMA_SUM = LUMA[0] + LUMA[1] + LUMA[2];

/**
 * The chroma samples colorize combines by default, and the weight of their disagreement. Chosen on the validation
 * photos (19, at 768 pixels, the default model, colours sampled at the coarsest level), PSNR against the gray input's
 * and colourfulness against the photos': one sample (the old default) -1.39 dB, 0.47 (the worst photo -6.7 dB); the
 * mean of 8, -0.41 dB, 0.28; shrunk with weight 1, -0.03 dB, 0.15; with weight 2, +0.02 dB, 0.11 (the worst photo
 * -0.37 dB); 4 samples with weight 2, -0.03 dB, 0.15. The model's colours are little better than guesses (their
 * correlation with the photos' chroma is 0.1-0.2), so keeping more of them costs PSNR: weight 2 is the one that does
 * no harm there.
 */
export const CHROMA_SAMPLES = 8;
const DISAGREEMENT_WEIGHT = 2;

/** w.x for every pixel of an RGB tensor: [N,1,H,W]. */
export function luminance(x: Tensor): Tensor {
  if (x.c !== 3) throw new RangeError(`colorize: expected 3 channels but received ${x.c}`);
  const out = new Tensor(x.n, 1, x.h, x.w);
  const plane = x.h * x.w;
  for (let n = 0; n < x.n; n++) {
    const base = n * 3 * plane;
    for (let p = 0; p < plane; p++) {
      out.data[n * plane + p] =
        LUMA[0] * x.data[base + p] + LUMA[1] * x.data[base + plane + p] + LUMA[2] * x.data[base + 2 * plane + p];
    }
  }
  return out;
}

/** x + w (L - w.x) / (w.w) per pixel, where L is a target luminance [N,1,H,W]. */
function withLuminance(x: Tensor, target: Tensor): Tensor {
  const lx = luminance(x);
  const plane = x.h * x.w;
  return x.map((v, i) => {
    const n = Math.floor(i / (3 * plane));
    const c = Math.floor(i / plane) % 3;
    const p = n * plane + (i % plane);
    return v + (LUMA[c] * (target.data[p] - lx.data[p])) / LUMA_NORM2;
  });
}

/**
 * @param y any RGB image whose luminance is the one to keep (e.g. a gray image replicated over 3 channels); its
 * classical estimate is the gray image of that luminance
 */
export function colorizeOperator(y: Tensor): Operator {
  const target = luminance(y);
  return {
    combine: (xs) => shrinkChroma(xs, target),
    start: withLuminance(y.zerosLike(), target),
    // Not cached: cheap to make, and coarse to fine asks each level for it once (a cached 4000x3000 plane would stay).
    estimate: () => {
      const plane = y.h * y.w;
      return y.map((_, i) => target.data[Math.floor(i / (3 * plane)) * plane + (i % plane)]);
    },
    project: (x) => withLuminance(x, target),
    crop: (x0, y0, w, h) => colorizeOperator(cropTensor(y, x0, y0, w, h)),
    coarsen: () => colorizeOperator(halveTensor(y)),
    projectInRange: (x) => {
      const out = x.clone();
      const plane = x.h * x.w;
      const idx = new Int32Array(3);
      for (let n = 0; n < x.n; n++) {
        for (let p = 0; p < plane; p++) {
          for (let c = 0; c < 3; c++) idx[c] = (n * 3 + c) * plane + p;
          projectBlockInRange(out.data, idx, LUMA, target.data[n * plane + p]);
        }
      }
      return out;
    },
  };
}

/** The width (pixels of the sampled level) over which agreement is measured: at the coarsest level, 16 pixels of a Kodak photo. */
const AGREEMENT_BLUR = 2;

/**
 * gray + m |m|^2 / (|m|^2 + 2 v) per pixel (module comment), with |m|^2 and v smoothed by a Gaussian of AGREEMENT_BLUR
 * pixels. A per-pixel convex combination of the mean (in range, its luminance exact) and the gray (the same
 * luminance), so the luminance stays exact and the range is kept up to the gray's 1e-4 (the sampler ends with
 * projectInRange).
 */
export function shrinkChroma(xs: readonly Tensor[], target: Tensor): Tensor {
  const [first] = xs;
  const { n, h, w } = first;
  const plane = h * w;
  const k = xs.length;
  const out = first.zerosLike();
  const m2 = new Float64Array(n * plane);
  const v = new Float64Array(n * plane);
  for (let b = 0; b < n; b++) {
    for (let p = 0; p < plane; p++) {
      const gray = target.data[b * plane + p] / LUMA_SUM;
      let norm = 0;
      let spread = 0;
      for (let c = 0; c < 3; c++) {
        const i = (b * 3 + c) * plane + p;
        let mean = 0;
        for (const x of xs) mean += x.data[i];
        mean = mean / k - gray;
        for (const x of xs) spread += (x.data[i] - gray - mean) ** 2;
        norm += mean * mean;
        out.data[i] = mean;
      }
      m2[b * plane + p] = norm;
      v[b * plane + p] = spread / k;
    }
  }
  const sm = gaussianBlur(m2, h, w, AGREEMENT_BLUR);
  const sv = gaussianBlur(v, h, w, AGREEMENT_BLUR);
  for (let b = 0; b < n; b++) {
    for (let p = 0; p < plane; p++) {
      const q = b * plane + p;
      const keep = sm[q] > 0 ? sm[q] / (sm[q] + DISAGREEMENT_WEIGHT * sv[q]) : 1;
      const gray = target.data[q] / LUMA_SUM;
      for (let c = 0; c < 3; c++) {
        const i = (b * 3 + c) * plane + p;
        out.data[i] = gray + keep * out.data[i];
      }
    }
  }
  return out;
}

/** Planes of h x w (any number, one after another) blurred by a Gaussian of sigma pixels (cut at 3 sigma, renormalised at the borders). */
function gaussianBlur(a: Float64Array, h: number, w: number, sigma: number): Float64Array {
  const r = Math.ceil(3 * sigma);
  const kernel = Float64Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigma * sigma)));
  // One pass along rows (step 1) or columns (step w).
  const pass = (src: Float64Array, alongRows: boolean): Float64Array => {
    const dst = new Float64Array(src.length);
    const [step, len] = alongRows ? [1, w] : [w, h];
    for (let q = 0; q < src.length; q++) {
      const pos = alongRows ? q % w : Math.floor(q / w) % h;
      let s = 0;
      let ws = 0;
      for (let d = Math.max(-r, -pos); d <= Math.min(r, len - 1 - pos); d++) {
        s += kernel[d + r] * src[q + d * step];
        ws += kernel[d + r];
      }
      dst[q] = s / ws;
    }
    return dst;
  };
  return pass(pass(a, true), false);
}
