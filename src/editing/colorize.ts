/**
 * Colorization: per pixel, A = a 3x3 orthogonal Q whose first row is w/|w| (w = the luminance weights); the
 * luminance coordinate is known, the two chroma coordinates are generated. Closed form, exact whatever the completion
 * of Q: P(x) = x + w (w.y - w.x) / (w.w). Pure.
 */
import { cropTensor, halveTensor, Tensor } from '../tensor.js';
import { projectBlockInRange } from './box.js';
import type { Operator } from './operator.js';

/** ITU-R BT.601 luma weights, as in the paper's code. */
export const LUMA: readonly [number, number, number] = [0.2989, 0.587, 0.114];
const LUMA_NORM2 = LUMA[0] ** 2 + LUMA[1] ** 2 + LUMA[2] ** 2;

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
