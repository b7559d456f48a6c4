// cm's own classical estimates (the warm starts of ALGORITHMS.md 4b), computed by the CLI's code in dist/ on a
// benchmark image: the Lanczos upsampling projected onto the patch means (smoothly, or per patch as before), the
// harmonic fill of the hole.
import { join } from 'node:path';
import { ROOT } from './common.mjs';

const dist = (p) => import(join(ROOT, 'dist', p));

/** A benchmark image ({w, h, data} 0-255, interleaved RGB) as a [1,3,H,W] tensor in [-1, 1] (Tensor: dist's class). */
export function toTensor(Tensor, img) {
  const t = new Tensor(1, 3, img.h, img.w);
  const plane = img.w * img.h;
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) t.data[c * plane + p] = Math.round(img.data[p * 3 + c]) / 127.5 - 1;
  return t;
}

/** A [1,3,H,W] tensor in [-1, 1] back to a benchmark image, rounded to 8-bit levels. */
export function toImg(t) {
  const plane = t.w * t.h;
  const data = new Float32Array(plane * 3);
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) data[p * 3 + c] = Math.round((t.data[c * plane + p] + 1) * 127.5);
  return { w: t.w, h: t.h, data };
}

/**
 * task 'superres' (img: the low-res input, opts.scale, opts.correction: 'smooth', the default, 'lanczos' or 'orthogonal') or
 * 'inpaint' (img with its hole, opts.mask 1 = hole).
 */
export async function cmEstimate(task, img, opts) {
  const { Tensor } = await dist('tensor.js');
  let op;
  if (task === 'superres') {
    const { superresOperator, upsampleNearest } = await dist('editing/superres.js');
    op = superresOperator(upsampleNearest(toTensor(Tensor, img), opts.scale), opts.scale, opts.correction);
  } else {
    const { inpaintOperator } = await dist('editing/inpaint.js');
    op = inpaintOperator(toTensor(Tensor, img), new Tensor(1, 1, img.h, img.w, Float32Array.from(opts.mask)));
  }
  return toImg(op.projectInRange(op.project(op.estimate())));
}
