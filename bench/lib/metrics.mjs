// Quality metrics and classical baselines. Images are { w, h, data: Float32Array HWC RGB, 0..255 } (lib/images.mjs).
// SSIM: our separable implementation of Wang et al. 2004, checked against the ssim.js package (ssimCrossCheck); the
// rest is written out here.
import ssimPkg from 'ssim.js';
import { blank, clamp8, gaussianBlur } from './images.mjs';

const { ssim } = ssimPkg;
const SSIM_OPTIONS = { ssim: 'original', downsample: false, rgb2grayVersion: 'integer' };
export { channel };
const HALF = 5; // ssim.js returns the 'valid' map: entry (i, j) is the window centred on pixel (i + 5, j + 5).

/** Luma Y of YCbCr (ITU-R BT.601, 16..235), the usual super-resolution "PSNR-Y". */
export function lumaY(img) {
  const out = new Float32Array(img.w * img.h);
  for (let p = 0; p < out.length; p++) {
    out[p] = 16 + (65.481 * img.data[p * 3] + 128.553 * img.data[p * 3 + 1] + 24.966 * img.data[p * 3 + 2]) / 255;
  }
  return out;
}

function channel(img, c) {
  const out = new Float32Array(img.w * img.h);
  for (let p = 0; p < out.length; p++) out[p] = img.data[p * 3 + c];
  return out;
}

/** PSNR in dB of a mean squared error in 0-255 units (99 for none). */
export function psnrOfMse(mse) {
  return mse <= 0 ? 99 : 10 * Math.log10((255 * 255) / mse);
}

/** PSNR over RGB (both images rounded to 8 bits first); `mask` (1 = counted, per pixel) restricts it to a region. */
export function psnr(a, b, mask) {
  let s = 0;
  let n = 0;
  for (let p = 0; p < a.w * a.h; p++) {
    if (mask && !mask[p]) continue;
    for (let c = 0; c < 3; c++) {
      const d = clamp8(a.data[p * 3 + c]) - clamp8(b.data[p * 3 + c]);
      s += d * d;
    }
    n += 3;
  }
  return psnrOfMse(s / n);
}

export function psnrY(a, b, mask) {
  const ya = lumaY(a);
  const yb = lumaY(b);
  let s = 0;
  let n = 0;
  for (let p = 0; p < ya.length; p++) {
    if (mask && !mask[p]) continue;
    const d = ya[p] - yb[p];
    s += d * d;
    n++;
  }
  return psnrOfMse(s / n);
}

const WIN = 11;
const GAUSS = (() => {
  const g = Array.from({ length: WIN }, (_, i) => Math.exp(-((i - HALF) ** 2) / (2 * 1.5 * 1.5)));
  const s = g.reduce((a, b) => a + b, 0);
  return Float64Array.from(g, (v) => v / s);
})();

/** Separable 11-tap Gaussian filter (symmetric taps unrolled), 'valid' region: [h][w] -> [h - 10][w - 10]. */
function filterValid(src, w, h) {
  const [g0, g1, g2, g3, g4, g5] = GAUSS;
  const ow = w - WIN + 1;
  const oh = h - WIN + 1;
  const tmp = new Float64Array(h * ow);
  for (let y = 0; y < h; y++) {
    const r = y * w;
    const o = y * ow;
    for (let x = 0; x < ow; x++) {
      const q = r + x;
      tmp[o + x] =
        g0 * (src[q] + src[q + 10]) + g1 * (src[q + 1] + src[q + 9]) + g2 * (src[q + 2] + src[q + 8]) +
        g3 * (src[q + 3] + src[q + 7]) + g4 * (src[q + 4] + src[q + 6]) + g5 * src[q + 5];
    }
  }
  const out = new Float64Array(oh * ow);
  const s1 = ow;
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const q = y * ow + x;
      out[q] =
        g0 * (tmp[q] + tmp[q + 10 * s1]) + g1 * (tmp[q + s1] + tmp[q + 9 * s1]) + g2 * (tmp[q + 2 * s1] + tmp[q + 8 * s1]) +
        g3 * (tmp[q + 3 * s1] + tmp[q + 7 * s1]) + g4 * (tmp[q + 4 * s1] + tmp[q + 6 * s1]) + g5 * tmp[q + 5 * s1];
    }
  }
  return out;
}

/**
 * The SSIM map of two 8-bit planes (Wang et al. 2004: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, L 255,
 * 'valid' region), with separable filtering; it equals ssim.js's 'original' and 'fast' results (checked by
 * `ssimCrossCheck`, which the smoke run calls) but runs about 20x faster on whole photos.
 */
export function ssimMap(pa, pb, w, h) {
  const n = w * h;
  const a = new Float64Array(n);
  const b = new Float64Array(n);
  for (let p = 0; p < n; p++) {
    a[p] = clamp8(pa[p]);
    b[p] = clamp8(pb[p]);
  }
  const aa = new Float64Array(n);
  const bb = new Float64Array(n);
  const ab = new Float64Array(n);
  for (let p = 0; p < n; p++) {
    aa[p] = a[p] * a[p];
    bb[p] = b[p] * b[p];
    ab[p] = a[p] * b[p];
  }
  const [ma, mb, saa, sbb, sab] = [a, b, aa, bb, ab].map((x) => filterValid(x, w, h));
  const c1 = (0.01 * 255) ** 2;
  const c2 = (0.03 * 255) ** 2;
  const map = new Float64Array(ma.length);
  for (let i = 0; i < map.length; i++) {
    const va = saa[i] - ma[i] * ma[i];
    const vb = sbb[i] - mb[i] * mb[i];
    const cov = sab[i] - ma[i] * mb[i];
    map[i] = ((2 * ma[i] * mb[i] + c1) * (2 * cov + c2)) / ((ma[i] * ma[i] + mb[i] * mb[i] + c1) * (va + vb + c2));
  }
  return { data: map, width: w - WIN + 1, height: h - WIN + 1 };
}

function planeSsim(pa, pb, w, h, mask) {
  const map = ssimMap(pa, pb, w, h);
  let s = 0;
  let n = 0;
  for (let i = 0; i < map.height; i++) {
    for (let j = 0; j < map.width; j++) {
      if (mask && !mask[(i + HALF) * w + j + HALF]) continue;
      s += map.data[i * map.width + j];
      n++;
    }
  }
  return n ? s / n : NaN;
}

/** ssim.js (the reference implementation) on the same two planes: its mean SSIM and ours. */
export function ssimCrossCheck(pa, pb, w, h) {
  const rgba = (plane) => {
    const d = new Uint8ClampedArray(w * h * 4);
    for (let p = 0; p < w * h; p++) {
      const v = clamp8(plane[p]);
      d[p * 4] = d[p * 4 + 1] = d[p * 4 + 2] = v;
      d[p * 4 + 3] = 255;
    }
    return { data: d, width: w, height: h };
  };
  const ref = ssim(rgba(pa), rgba(pb), SSIM_OPTIONS).mssim;
  return { ssimjs: ref, ours: planeSsim(pa, pb, w, h) };
}

/** SSIM on RGB: the mean of the three channels' SSIM. With a mask: the mean of the SSIM map over windows centred in it. */
export function ssimRgb(a, b, mask) {
  let s = 0;
  for (let c = 0; c < 3; c++) s += planeSsim(channel(a, c), channel(b, c), a.w, a.h, mask);
  return s / 3;
}

export function ssimY(a, b, mask) {
  return planeSsim(lumaY(a), lumaY(b), a.w, a.h, mask);
}

/** Colourfulness of Hasler and Suesstrunk (2003): sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2). */
export function colourfulness(img) {
  const n = img.w * img.h;
  let mrg = 0;
  let myb = 0;
  let srg = 0;
  let syb = 0;
  for (let p = 0; p < n; p++) {
    const [r, g, b] = [clamp8(img.data[p * 3]), clamp8(img.data[p * 3 + 1]), clamp8(img.data[p * 3 + 2])];
    const rg = r - g;
    const yb = 0.5 * (r + g) - b;
    mrg += rg;
    myb += yb;
    srg += rg * rg;
    syb += yb * yb;
  }
  mrg /= n;
  myb /= n;
  const vrg = Math.max(0, srg / n - mrg * mrg);
  const vyb = Math.max(0, syb / n - myb * myb);
  return Math.sqrt(vrg + vyb) + 0.3 * Math.sqrt(mrg * mrg + myb * myb);
}

/** High-frequency energy: mean squared difference between the image and its Gaussian blur (sigma 1), over RGB. */
export function hfEnergy(img) {
  return hfEnergyIn(img, null);
}

/**
 * Texture (sharpness): the image's high-frequency energy relative to the ground truth's, over the mask's pixels (or the
 * whole image without one); 1 as detailed as the photo, near 0 a smudge.
 */
export function textureRatio(img, gt, mask = null) {
  return hfEnergyIn(img, mask) / Math.max(1e-9, hfEnergyIn(gt, mask));
}

/** hfEnergy over the pixels where mask is 1 (the blur sees the whole image). */
export function hfEnergyIn(img, mask) {
  const q = { w: img.w, h: img.h, data: Float32Array.from(img.data, clamp8) };
  const b = gaussianBlur(q, 1);
  let s = 0;
  let n = 0;
  for (let p = 0; p < img.w * img.h; p++) {
    if (mask && !mask[p]) continue;
    for (let c = 0; c < 3; c++) s += (q.data[p * 3 + c] - b.data[p * 3 + c]) ** 2;
    n += 3;
  }
  return s / Math.max(1, n);
}

export function nearestFill(img, hole) {
  const { w, h } = img;
  const sx = new Int32Array(w * h).fill(-1);
  const sy = new Int32Array(w * h).fill(-1);
  const d2 = new Float64Array(w * h).fill(Infinity);
  for (let p = 0; p < w * h; p++) {
    if (!hole[p]) {
      sx[p] = p % w;
      sy[p] = Math.floor(p / w);
      d2[p] = 0;
    }
  }
  const relax = (x, y, dx, dy) => {
    const nx = x + dx;
    const ny = y + dy;
    if (nx < 0 || ny < 0 || nx >= w || ny >= h) return;
    const q = ny * w + nx;
    if (sx[q] < 0) return;
    const p = y * w + x;
    const dd = (x - sx[q]) ** 2 + (y - sy[q]) ** 2;
    if (dd < d2[p]) {
      d2[p] = dd;
      sx[p] = sx[q];
      sy[p] = sy[q];
    }
  };
  for (let round = 0; round < 2; round++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) for (const [dx, dy] of [[-1, 0], [-1, -1], [0, -1], [1, -1]]) relax(x, y, dx, dy);
      for (let x = w - 1; x >= 0; x--) relax(x, y, 1, 0);
    }
    for (let y = h - 1; y >= 0; y--) {
      for (let x = w - 1; x >= 0; x--) for (const [dx, dy] of [[1, 0], [1, 1], [0, 1], [-1, 1]]) relax(x, y, dx, dy);
      for (let x = 0; x < w; x++) relax(x, y, -1, 0);
    }
  }
  const out = blank(w, h);
  for (let p = 0; p < w * h; p++) {
    const s = (sy[p] * w + sx[p]) * 3;
    for (let c = 0; c < 3; c++) out.data[p * 3 + c] = img.data[s + c];
  }
  return out;
}

export function mean(xs) {
  const v = xs.filter((x) => Number.isFinite(x));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
}

export function median(xs) {
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/**
 * Blockiness at patch size p: the mean squared difference of neighbouring pixels across the p x p patch borders over
 * that of neighbours inside patches (rows and columns, RGB, 8-bit values). A patch grid raises it; compare it with the
 * ground truth's (blockinessRatio) since the photo's own ratio is not exactly 1.
 */
export function blockiness(img, p) {
  const { w, h } = img;
  const v = (x, y, c) => clamp8(img.data[(y * w + x) * 3 + c]);
  let across = 0;
  let nAcross = 0;
  let inside = 0;
  let nInside = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        if (x + 1 < w) {
          const d = (v(x + 1, y, c) - v(x, y, c)) ** 2;
          if ((x + 1) % p === 0) (across += d), nAcross++;
          else (inside += d), nInside++;
        }
        if (y + 1 < h) {
          const d = (v(x, y + 1, c) - v(x, y, c)) ** 2;
          if ((y + 1) % p === 0) (across += d), nAcross++;
          else (inside += d), nInside++;
        }
      }
    }
  }
  return across / Math.max(1, nAcross) / Math.max(1e-9, inside / Math.max(1, nInside));
}

/** blockiness(img) / blockiness(gt): 1 is as blocky as the photo itself, the patch grid shows above. */
export function blockinessRatio(img, gt, p) {
  return blockiness(img, p) / Math.max(1e-9, blockiness(gt, p));
}
