/**
 * Super-resolution by p: per channel and p x p patch, A = an orthogonal p^2 x p^2 matrix whose first row is 1/p
 * everywhere, so the first coordinate is p times the patch mean; it is known, the rest are generated.
 *
 * The orthogonal projection x - patchmean(x) + patchmean(y) corrects each patch by a constant, so its result shows the
 * patch grid wherever the model does not smooth it away (ALGORITHMS.md section 4). Any map onto the same set keeps the
 * known data; the default one corrects smoothly: P(x) = x + U z, where U is the upsampling by p with the cubic
 * B-spline (positive, C2: no ringing) and z the low-res image with patchmean(U z) = patchmean(y) - patchmean(x). It is
 * the limit of back-projection (x <- x + U(patchmean(y) - patchmean(x)), repeated), solved in one go: patchmean o U is
 * separable, a banded matrix along the rows times one along the columns (5 taps, diagonally dominant), so z takes one
 * banded solve per low-res row and column. P is a projection (onto the patch means, along the range of U): idempotent,
 * the means exact, and a smooth x stays smooth. Its classical estimate is the Lanczos-3 upsampling of the low-res
 * image; the sampler starts from its projection. The in-range projection (the sampler's last step) first alternates
 * clamping and P (a few rounds, only while a value is out of range), then moves each patch still out of range to the
 * nearest point in range with its mean (projectBlockInRange: by a constant, clipped), so what is left for the constant
 * moves is small.
 *
 * Where the blockiness comes from (bench/superres-stages.mjs, 48 crops of training photos, the default model's stored
 * plans, x2/x4/x8, blockiness relative to the photo's): Lanczos-3 1.50/1.49/1.66; the start, Lanczos-3 made
 * consistent with the means, 1.69/1.56/1.75 (any image with the means exact and no detail inside the patches is
 * blockier than Lanczos, which is not consistent: it leaves out contrast that sits at the patch borders); each model
 * evaluation then moves towards the start again; the last in-range step added 0.08 at x8 when it moved whole patches.
 * With the Lanczos-3 correction and that in-range step (the default before) the output had 1.77/1.68/1.94, PSNR
 * 35.21/30.19/26.41 dB; with these 1.74/1.63/1.85, 35.21/30.20/26.43 dB. So the sampler's answer is finished by
 * deblocking (`finish`): each step across a patch border is reduced as a video codec's deblocking filter reduces it
 * (deblockPatchBorders), then P restores the means smoothly and the in-range step follows. Pure.
 */
import { Tensor } from '../tensor.js';
import { projectBlockInRange } from './box.js';
import { once, type Operator } from './operator.js';
import { resample, taps, type Kernel, type Taps } from './resample.js';

/**
 * How the projection corrects the patch means: smoothly with cubic B-splines (the default), smoothly with Lanczos-3
 * (the default before), or by a constant per patch (orthogonal).
 */
export type Correction = 'smooth' | 'lanczos' | 'orthogonal';

/** The upsampling kernel of each smooth correction. */
const KERNEL: Record<Exclude<Correction, 'orthogonal'>, Kernel> = { smooth: 'bspline3', lanczos: 'lanczos3' };

/**
 * Rounds of x <- P(clamp(x)) before the exact in-range step of a smooth correction (alternating projections onto the
 * range and onto the means; they stop once in range). Measured on training crops at x8 with the default
 * model: the final step's blockiness rise 0.13 with none, 0.08 with 4, 0.04 with 16 (24 crops); 0.02 with 8 (48 crops).
 * Cost: each round is one projection where values were out of range (2048x2048 random low-res images made
 * consistent, 9-13% of the values out of range, all 8 rounds run: 6-9 s against 1.3-1.8 s moving patches alone);
 * on photos, where about 0.1% of the output's values are out of range, a round is computed only near them
 * (clampAndCorrect): the in-range step of a 1024x768 Kodak photo's x4 took 0.55x the time of full projections, the
 * same values to 2.4e-7 (bench/results/inrange.md).
 */
const IN_RANGE_ROUNDS = 8;

/**
 * The strength of `finish`'s deblocking (deblockPatchBorders), per factor. Chosen on 96 crops of training photos with
 * cm-patch64-small-8's stored plans (bench/deblock.mjs, bench/results/deblock.md): the smallest strength in steps of
 * 0.05 whose outputs are no blockier than Lanczos-3 (which is not consistent with the means), on average; there it
 * costs 0.021 / 0.006 / -0.002 dB at x2 / x4 / x8. On 6 whole training photos 0.05 / 0.2 / 0.4 would do (0.1 / 0.25
 * cost 0.056 / 0.014 dB there).
 */
export const DEBLOCK: Readonly<Record<number, number>> = { 2: 0.1, 4: 0.25, 8: 0.4 };

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

/**
 * The patch borders deblocked: across every border between patches, with p1 p0 | q0 q1 the pixels on either side,
 * p0 += d and q0 -= d where d = strength (4 (q0 - p0) - (q1 - p1)) / 8, the normal-strength deblocking step of video
 * codecs (H.264's, without its thresholds and clipping), the steps across vertical and horizontal borders both taken
 * from x. strength 1 leaves about a quarter of a lone step, 0 changes nothing; a constant image is kept. The patch
 * means change a little (the sampler's finish restores them). p 1 has no patches: nothing changes.
 */
export function deblockPatchBorders(x: Tensor, p: number, strength: number): Tensor {
  checkFactor(x, p);
  const out = x.clone();
  if (strength === 0 || p < 2) return out;
  const { w, h } = x;
  const a = x.data;
  const o = out.data;
  const step = (i1: number, i0: number, j0: number, j1: number): void => {
    const d = (strength * (4 * (a[j0] - a[i0]) - (a[j1] - a[i1]))) / 8;
    o[i0] += d;
    o[j0] -= d;
  };
  for (let nc = 0; nc < x.n * x.c; nc++) {
    const base = nc * w * h;
    for (let k = p; k + 1 < w; k += p) {
      for (let i = 0; i < h; i++) {
        const r = base + i * w + k;
        step(r - 2, r - 1, r, r + 1);
      }
    }
    for (let k = p; k + 1 < h; k += p) {
      const r = base + k * w;
      for (let u = 0; u < w; u++) step(r + u - 2 * w, r + u - w, r + u, r + u + w);
    }
  }
  return out;
}

/**
 * @param y the reference at the output size: any image whose p x p patch means are the low-res pixels
 * @param correction how P corrects the patch means (default smooth)
 * @param deblock the strength of the finish's deblocking (default DEBLOCK[p], 0 for none)
 */
export function superresOperator(y: Tensor, p: number, correction: Correction = 'smooth', deblock = DEBLOCK[p] ?? 0): Operator {
  const target = patchMeans(y, p);
  const keep = upsampleNearest(target, p);
  const ones = new Float64Array(p * p).fill(1);
  const idx = new Int32Array(p * p);
  const checkShape = (x: Tensor): void => {
    if (!x.sameShape(y)) throw new RangeError(`superres: an image of shape [${x.shape}] for an operator of [${y.shape}]`);
  };
  const project = (x: Tensor): Tensor => {
    checkShape(x);
    const out = x.zerosLike();
    for (let nc = 0; nc < x.n * x.c; nc++) correct(x.data, out.data, nc, target.data);
    return out;
  };
  const smooth = correction === 'orthogonal' ? undefined : smoothCorrection(y.w, y.h, p, KERNEL[correction]);
  const correct = smooth?.correct ?? orthogonalCorrection(y.w, y.h, p);
  const projectInRange = (x: Tensor): Tensor => {
    checkShape(x);
    const out = x.clone();
    if (smooth) {
      for (let nc = 0; nc < x.n * x.c; nc++) {
        for (let k = 0; k < IN_RANGE_ROUNDS && smooth.clampAndCorrect(out.data, nc, target.data); k++);
      }
    }
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
  };
  return {
    start: keep,
    estimate: once(() => resample(target, y.w, y.h, 'lanczos3')),
    project,
    projectInRange,
    ...(deblock > 0 && { finish: (x: Tensor) => projectInRange(project(deblockPatchBorders(x, p, deblock))) }),
  };
}

/** Writes plane nc of the projection of x into out, given the low-res targets (planes of (w/p) x (h/p)). */
type Correct = (x: Float32Array, out: Float32Array, nc: number, target: Float32Array) => void;

/** The sum of every p x p patch of plane nc of x, in float64 (added in the order patchMeans adds them): [h/p][w/p]. */
function patchSums(x: Float32Array, nc: number, w: number, h: number, p: number): Float64Array {
  const lw = w / p;
  const d = new Float64Array(lw * (h / p));
  for (let i = 0; i < h; i++) {
    const r = (nc * h + i) * w;
    const m = Math.floor(i / p) * lw;
    for (let u = 0; u < w; u++) d[m + Math.floor(u / p)] += x[r + u];
  }
  return d;
}

/** Each patch moved by a constant: out = x - patchmean(x) + target, the orthogonal projection. */
function orthogonalCorrection(w: number, h: number, p: number): Correct {
  const lw = w / p;
  const inv = 1 / (p * p);
  const means = new Float32Array(lw * (h / p)); // float32 means, as the sampler has always had them
  return (x, out, nc, target) => {
    const sums = patchSums(x, nc, w, h, p);
    for (let j = 0; j < means.length; j++) means[j] = sums[j] * inv;
    const t0 = nc * means.length;
    for (let i = 0; i < h; i++) {
      const m = Math.floor(i / p) * lw;
      const r = (nc * h + i) * w;
      for (let u = 0; u < w; u++) out[r + u] = x[r + u] - means[m + Math.floor(u / p)] + target[t0 + m + Math.floor(u / p)];
    }
  };
}

/**
 * out = x + U z with patchmean(U z) = target - patchmean(x): z by a banded solve along every low-res row and column
 * ((B U)^-1 = My^-1 kron Mx^-1), U z one output row at a time (vertical taps at low-res width, then horizontal): two
 * passes over the image. z is solved exactly, not iterated, so what is left of the means is float32 rounding of the
 * stored values, as for the orthogonal projection (measured on 384x512, x2/x4/x8: at most 3e-8, 1.5e-8, 7.5e-9
 * with the B-spline, 6e-8, 1.5e-8, 7.5e-9 with Lanczos-3, against 6e-8, 3e-8, 1.7e-8); a final orthogonal step for the last bits changed none of these numbers, so there is
 * none.
 */
function smoothCorrection(w: number, h: number, p: number, kernel: Kernel): { correct: Correct; clampAndCorrect: ClampAndCorrect } {
  const lw = w / p;
  const lh = h / p;
  const ux = taps(kernel, lw, w);
  const uy = taps(kernel, lh, h);
  const mx = bandedLu(meanOfUpsampling(ux, lw, p));
  const my = bandedLu(meanOfUpsampling(uy, lh, p));
  const v = new Float64Array(lw);
  const inv = 1 / (p * p);
  /** z = target - patchmean(x) for plane nc, solved in place: the low-res image whose upsampling U z corrects the means. */
  const solved = (x: Float32Array, nc: number, target: Float32Array): Float64Array => {
    const z = patchSums(x, nc, w, h, p);
    const t0 = nc * z.length;
    for (let j = 0; j < z.length; j++) z[j] = target[t0 + j] - z[j] * inv;
    for (let r = 0; r < lh; r++) mx.solve(z, r * lw, 1);
    for (let c = 0; c < lw; c++) my.solve(z, c, lw);
    return z;
  };
  /** Output row i of U z, at low-res width (its vertical taps), into v. */
  const rowOf = (z: Float64Array, i: number): void => {
    v.fill(0);
    const wy0 = i * uy.stride;
    for (let k = 0; k < uy.count[i]; k++) {
      const wk = uy.weights[wy0 + k];
      const zr = (uy.first[i] + k) * lw;
      for (let c = 0; c < lw; c++) v[c] += wk * z[zr + c];
    }
  };
  /** Output column u of the row in v (its horizontal taps). */
  const columnOf = (u: number): number => {
    let s = 0;
    const w0 = u * ux.stride;
    const f = ux.first[u];
    for (let k = 0; k < ux.count[u]; k++) s += ux.weights[w0 + k] * v[f + k];
    return s;
  };
  const correct: Correct = (x, out, nc, target) => {
    const z = solved(x, nc, target);
    for (let i = 0; i < h; i++) {
      rowOf(z, i);
      const r = (nc * h + i) * w;
      for (let u = 0; u < w; u++) out[r + u] = x[r + u] + columnOf(u);
    }
  };

  // The output columns (rows) whose taps reach each low-res column (row): [first, last].
  const reach = (t: Taps, n: number, size: number) => {
    const first = new Int32Array(n).fill(size);
    const last = new Int32Array(n).fill(-1);
    for (let i = 0; i < size; i++) {
      for (let k = 0; k < t.count[i]; k++) {
        const j = t.first[i] + k;
        first[j] = Math.min(first[j], i);
        last[j] = Math.max(last[j], i);
      }
    }
    return { first, last };
  };
  const cols = reach(ux, lw, w);
  const rows = reach(uy, lh, h);
  const active = new Uint8Array(h);
  const clampAndCorrect: ClampAndCorrect = (x, nc, target) => {
    // Clamp in place.
    let any = false;
    const plane = x.subarray(nc * h * w, (nc + 1) * h * w);
    for (let i = 0; i < plane.length; i++) {
      const value = plane[i];
      if (value > 1 || value < -1) {
        plane[i] = value > 1 ? 1 : -1;
        any = true;
      }
    }
    if (!any) return false;
    // z as in `correct`: about what the clamping took from the patches it changed, and float rounding elsewhere when
    // x had the means.
    const z = solved(x, nc, target);
    // U z where it is not negligible: z decays geometrically away from the changed patches (B U is diagonally
    // dominant: by about half per low-res pixel with the B-spline), so far from them it falls under TINY and is left
    // out; the rows and the runs of columns that it reaches are computed.
    active.fill(0);
    for (let r = 0; r < lh; r++) {
      for (let c = 0; c < lw; c++) {
        if (Math.abs(z[r * lw + c]) > TINY) {
          active.fill(1, rows.first[r], rows.last[r] + 1);
          break;
        }
      }
    }
    for (let i = 0; i < h; i++) {
      if (!active[i]) continue;
      rowOf(z, i);
      // Each run of low-res columns where v is not negligible, and the output columns its taps reach.
      const r = (nc * h + i) * w;
      let done = -1;
      for (let c = 0; c < lw; c++) {
        if (!(Math.abs(v[c]) > TINY)) continue;
        let end = c;
        while (end + 1 < lw && Math.abs(v[end + 1]) > TINY) end++;
        for (let u = Math.max(cols.first[c], done + 1); u <= cols.last[end]; u++) x[r + u] += columnOf(u);
        done = Math.max(done, cols.last[end]);
        c = end;
      }
    }
    return true;
  };
  return { correct, clampAndCorrect };
}

/**
 * One round of the in-range step on plane nc, in place: clamp into [-1, 1], then the smooth correction of the means
 * (`correct` after a clamp), computed only where it is not negligible: when x had the means, a few thousand
 * out-of-range values of a 1024x1024 output need it on a small part of the image. False, and nothing changed, when
 * the plane was in range.
 */
type ClampAndCorrect = (x: Float32Array, nc: number, target: Float32Array) => boolean;

/**
 * Corrections smaller than this are left out of the in-range rounds ([-1, 1] units: float32's step at 1 is 1.2e-7,
 * a grey level 7.8e-3); the exact per-patch step after the rounds makes the means exact whatever is left.
 */
const TINY = 1e-7;

/** A banded n x n matrix: entry (j, k) at a[j * width + k - j + bw], zero where |j - k| > bw. */
interface Band {
  n: number;
  bw: number;
  a: Float64Array;
}

/** B U along one dimension: U the upsampling taps to n p samples, B the mean of every p of them (5 taps, 7 for Lanczos-3). */
function meanOfUpsampling(t: Taps, n: number, p: number): Band {
  let bw = 0;
  for (let i = 0; i < n * p; i++) {
    const j = Math.floor(i / p);
    bw = Math.max(bw, j - t.first[i], t.first[i] + t.count[i] - 1 - j);
  }
  const width = 2 * bw + 1;
  const a = new Float64Array(n * width);
  for (let i = 0; i < n * p; i++) {
    const j = Math.floor(i / p);
    for (let k = 0; k < t.count[i]; k++) a[j * width + t.first[i] + k - j + bw] += t.weights[i * t.stride + k] / p;
  }
  return { n, bw, a };
}

/**
 * Its LU factorisation in place, without pivoting (B U is diagonally dominant: the cubic B-spline's 0.60 against 0.40
 * at the least, Lanczos-3's 0.87 against 0.22), and a solver.
 */
function bandedLu({ n, bw, a }: Band) {
  const width = 2 * bw + 1;
  for (let k = 0; k < n; k++) {
    const pivot = a[k * width + bw];
    for (let j = k + 1; j <= Math.min(n - 1, k + bw); j++) {
      const l = (a[j * width + k - j + bw] /= pivot);
      for (let c = k + 1; c <= Math.min(n - 1, k + bw); c++) a[j * width + c - j + bw] -= l * a[k * width + c - k + bw];
    }
  }
  return {
    /** Solves in place for the n values at b[offset + i stride]. */
    solve(b: Float64Array, offset: number, stride: number): void {
      for (let j = 1; j < n; j++) {
        let s = b[offset + j * stride];
        for (let k = Math.max(0, j - bw); k < j; k++) s -= a[j * width + k - j + bw] * b[offset + k * stride];
        b[offset + j * stride] = s;
      }
      for (let j = n - 1; j >= 0; j--) {
        let s = b[offset + j * stride];
        for (let k = j + 1; k <= Math.min(n - 1, j + bw); k++) s -= a[j * width + k - j + bw] * b[offset + k * stride];
        b[offset + j * stride] = s / a[j * width + bw];
      }
    },
  };
}

function checkFactor(x: Tensor, p: number): void {
  if (!Number.isInteger(p) || p < 1 || x.h % p !== 0 || x.w % p !== 0) {
    throw new RangeError(`superres: factor ${p} does not divide image size ${x.w}x${x.h}`);
  }
}
