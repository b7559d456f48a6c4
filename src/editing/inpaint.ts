/**
 * Inpainting: A = identity, Omega = the mask. P(x) = keep * y + fill * x, exactly, per pixel. Its classical estimate
 * is the harmonic fill of the hole. Pure.
 */
import { clamp, cropTensor, halveTensor, Tensor } from '../tensor.js';
import { harmonicFill } from './harmonic.js';
import { once, type Operator } from './operator.js';

/**
 * @param y the reference [N,C,H,W]
 * @param fill the mask [N or 1,1,H,W]: 1 where the model generates, 0 where y is kept (values in between blend)
 */
export function inpaintOperator(y: Tensor, fill: Tensor): Operator {
  if (fill.c !== 1 || fill.h !== y.h || fill.w !== y.w || (fill.n !== 1 && fill.n !== y.n)) {
    throw new RangeError(`inpaint: mask [${fill.shape}] does not fit image [${y.shape}]`);
  }
  const plane = y.h * y.w;
  const m = (i: number): number => {
    const img = Math.floor(i / y.imageSize);
    return fill.data[(fill.n === 1 ? 0 : img) * plane + (i % plane)];
  };
  const yd = y.data;
  const start = y.map((v, i) => (1 - m(i)) * v);
  const project = (x: Tensor): Tensor => x.map((v, i) => (1 - m(i)) * yd[i] + m(i) * v);
  // Pixels are independent: clamping the generated ones is the exact projection (y is in range already).
  return {
    start,
    estimate: once(() => harmonicFill(y, fill)),
    project,
    projectInRange: (x) => project(clamp(x)),
    generates(n, x0, y0, w, h) {
      const base = (fill.n === 1 ? 0 : n) * plane;
      for (let r = y0; r < y0 + h; r++) for (let u = x0; u < x0 + w; u++) if (fill.data[base + r * y.w + u] > 0) return true;
      return false;
    },
    crop: (x0, y0, w, h) => inpaintOperator(cropTensor(y, x0, y0, w, h), cropTensor(fill, x0, y0, w, h)),
    coarsen() {
      // A coarse pixel is known only where all of its pixels are (their mean); it is filled where any of them is.
      const keep = fill.map((v) => (v > 0 ? 0 : 1));
      const coarseKeep = halveTensor(keep);
      return inpaintOperator(halveTensor(y, keep), coarseKeep.map((v) => (v < 1 ? 1 : 0)));
    },
  };
}
