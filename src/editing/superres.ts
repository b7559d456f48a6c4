/**
 * Super-resolution by p: per channel and p x p patch, A = an orthogonal p^2 x p^2 matrix whose first row is 1/p
 * everywhere, so the first coordinate is p times the patch mean; it is known, the rest are generated.
 * Closed form: P(x) = x - patchmean(x) + patchmean(y). Its classical estimate is the Lanczos-3 upsampling of the
 * low-res image (the patch means). Pure.
 */
import { Tensor } from '../tensor.js';
import { projectBlockInRange } from './box.js';
import { once, type Operator } from './operator.js';
import { resample } from './resample.js';

/** Mean of every p x p patch, one value per patch: [N,C,H/p,W/p]. */
export function patchMeans(x: Tensor, p: number): Tensor {
  checkFactor(x, p);
  const out = new Tensor(x.n, x.c, x.h / p, x.w / p);
  const inv = 1 / (p * p);
  for (let nc = 0; nc < x.n * x.c; nc++) {
    for (let py = 0; py < out.h; py++) {
      for (let px = 0; px < out.w; px++) {
        let s = 0;
        for (let dy = 0; dy < p; dy++) {
          const row = (nc * x.h + py * p + dy) * x.w + px * p;
          for (let dx = 0; dx < p; dx++) s += x.data[row + dx];
        }
        out.data[(nc * out.h + py) * out.w + px] = s * inv;
      }
    }
  }
  return out;
}

/** Nearest-neighbour upsampling by p: every low-res value becomes a p x p patch (whose mean is that value). */
export function upsampleNearest(low: Tensor, p: number): Tensor {
  const out = new Tensor(low.n, low.c, low.h * p, low.w * p);
  return out.map((_, i) => {
    const x = i % out.w;
    const y = Math.floor(i / out.w) % out.h;
    const nc = Math.floor(i / (out.w * out.h));
    return low.data[(nc * low.h + Math.floor(y / p)) * low.w + Math.floor(x / p)];
  });
}

/** @param y the reference at the output size: any image whose p x p patch means are the low-res pixels */
export function superresOperator(y: Tensor, p: number): Operator {
  const target = patchMeans(y, p);
  const keep = upsampleNearest(target, p);
  const ones = new Float64Array(p * p).fill(1);
  const idx = new Int32Array(p * p);
  return {
    start: keep,
    estimate: once(() => resample(target, y.w, y.h, 'lanczos3')),
    project: (x) => {
      // x - upsampleNearest(patchMeans(x)) + keep, without making the upsampled plane.
      const means = patchMeans(x, p);
      const out = x.zerosLike();
      const [xd, kd, o, md] = [x.data, keep.data, out.data, means.data];
      for (let nc = 0; nc < x.n * x.c; nc++) {
        for (let y = 0; y < x.h; y++) {
          const m = (nc * means.h + Math.floor(y / p)) * means.w;
          const r = (nc * x.h + y) * x.w;
          for (let u = 0; u < x.w; u++) o[r + u] = xd[r + u] - md[m + Math.floor(u / p)] + kd[r + u];
        }
      }
      return out;
    },
    projectInRange: (x) => {
      const out = x.clone();
      for (let nc = 0; nc < x.n * x.c; nc++) {
        for (let py = 0; py < target.h; py++) {
          for (let px = 0; px < target.w; px++) {
            let j = 0;
            for (let dy = 0; dy < p; dy++) for (let dx = 0; dx < p; dx++) idx[j++] = (nc * x.h + py * p + dy) * x.w + px * p + dx;
            projectBlockInRange(out.data, idx, ones, p * p * target.data[(nc * target.h + py) * target.w + px]);
          }
        }
      }
      return out;
    },
  };
}

function checkFactor(x: Tensor, p: number): void {
  if (!Number.isInteger(p) || p < 1 || x.h % p !== 0 || x.w % p !== 0) {
    throw new RangeError(`superres: factor ${p} does not divide image size ${x.w}x${x.h}`);
  }
}
