// Benchmark inputs made on the fly from the held-out photos: fixed crops, masks, stroke paintings. Nothing here is
// written into the repository; the quality script writes inputs to a temporary folder only.
import { readdirSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, relative } from 'node:path';
import { ROOT } from './common.mjs';
import { blank, crop, gaussianBlur, load, rng } from './images.mjs';

export const EVAL_DIR = process.env.CM_EVAL_DIR ?? '/work/shared/data/eval';

/** The training photos (for choices and calibration; never the evaluation ones). */
export const TRAIN_DIR = process.env.CM_TRAIN_DIR ?? join(ROOT, '..', 'shared', 'data', 'train');

/** Every photo under a folder tree (the training photos by default), in a fixed order. */
export function trainingPhotoPaths(root = TRAIN_DIR) {
  const out = [];
  const walk = (d) => {
    for (const f of readdirSync(d).sort()) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(jpe?g|png|webp)$/i.test(f)) out.push(p);
    }
  };
  walk(root);
  return out;
}

/**
 * The validation photos under TRAIN_DIR, exactly cmtrain.data.is_validation: the first 4 bytes of the sha1 of the
 * relative path, mod 10000, under `share` (hundredths of a percent: 200 = 2%). Never trained on; plans are chosen
 * on them.
 */
export function validationPhotoPaths(share = 200, root = TRAIN_DIR) {
  const rel = trainingPhotoPaths(root).map((p) => relative(root, p));
  // Python sorts str by code point, as JS does for these ASCII paths.
  rel.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return rel.filter((r) => createHash('sha1').update(r, 'utf8').digest().readUInt32BE(0) % 10000 < share).map((r) => join(root, r));
}

/**
 * One size x size crop (seeded by the photo's index) of each of up to n training photos, spread evenly over them;
 * photos that do not load or are smaller are skipped. Yields { i, gt }.
 */
export async function* trainingCrops(n, size) {
  const all = trainingPhotoPaths();
  const stride = Math.max(1, Math.floor(all.length / n));
  let given = 0;
  for (let i = 0; i < all.length && given < n; i += stride) {
    let img;
    try {
      img = await load(all[i]);
    } catch {
      continue;
    }
    if (img.w < size || img.h < size) continue;
    given++;
    yield { i, gt: cropsOf(img, 1, size, 100 + i)[0].img };
  }
}

/** The training photos at full scale: all but COCO's small ones. */
export function fullPhotoPaths() {
  return trainingPhotoPaths().filter((p) => !relative(TRAIN_DIR, p).startsWith('coco'));
}

/**
 * One size x size crop of each of n full-scale training photos (not COCO's small ones), every k-th of the list for
 * variety, starting `shift` photos in; the crop of the i-th try is seeded by seed + i. Photos smaller than the crop
 * are skipped. For the superres benchmarks (superres-stages, deblock).
 */
export async function fullPhotoCrops(n, size, seed, shift = 0) {
  const paths = fullPhotoPaths();
  const crops = [];
  const stride = Math.max(1, Math.floor(paths.length / n));
  for (let i = 0; crops.length < n && i < paths.length * 2; i++) {
    const photo = await load(paths[(i * stride + Math.floor(i / paths.length) + shift) % paths.length]);
    if (photo.w < size || photo.h < size) continue;
    crops.push(cropsOf(photo, 1, size, seed + i)[0].img);
  }
  return crops;
}

export function photoPaths(set) {
  const dir = join(EVAL_DIR, set);
  return readdirSync(dir)
    .filter((f) => /\.png$/i.test(f))
    .sort()
    .map((f) => join(dir, f));
}

/** `per` fixed size x size crops of a photo, at positions drawn from a seeded generator (the same every run). */
export function cropsOf(img, per, size, seed) {
  const g = rng(seed);
  const out = [];
  for (let i = 0; i < per; i++) {
    const x = g.int(img.w - size + 1);
    const y = g.int(img.h - size + 1);
    out.push({ x, y, img: crop(img, x, y, size, size) });
  }
  return out;
}

/** The photo cropped (from the top left) to a multiple of m in both dimensions. */
export function cropToMultiple(img, m) {
  return crop(img, 0, 0, img.w - (img.w % m), img.h - (img.h % m));
}

export async function loadPhoto(path) {
  return load(path);
}

// ---- masks: Uint8Array per pixel, 1 = hole (fill), 0 = keep --------------------------------------------------------

export const MASK_FAMILIES = ['box', 'strokes', 'halfplane'];

export function makeMask(family, w, h, seed) {
  const m = new Uint8Array(w * h);
  const g = rng(seed);
  if (family === 'box') {
    // The centred box: half the width and half the height (a quarter of the area).
    const x0 = Math.round(w / 4);
    const y0 = Math.round(h / 4);
    for (let y = y0; y < y0 + Math.round(h / 2); y++) for (let x = x0; x < x0 + Math.round(w / 2); x++) m[y * w + x] = 1;
  } else if (family === 'strokes') {
    // Five random polylines of 4 segments, brush diameter 10% of the shorter side.
    const s = Math.min(w, h);
    const r = Math.max(1.5, 0.05 * s);
    for (let k = 0; k < 5; k++) {
      let px = g.uniform() * w;
      let py = g.uniform() * h;
      let angle = g.uniform() * 2 * Math.PI;
      for (let seg = 0; seg < 4; seg++) {
        angle += (g.uniform() - 0.5) * 2;
        const len = (0.15 + 0.2 * g.uniform()) * s;
        const qx = px + Math.cos(angle) * len;
        const qy = py + Math.sin(angle) * len;
        const steps = Math.ceil(len);
        for (let t = 0; t <= steps; t++) disc(m, w, h, px + ((qx - px) * t) / steps, py + ((qy - py) * t) / steps, r);
        px = qx;
        py = qy;
      }
    }
  } else if (family === 'halfplane') {
    // Everything on one side of a random line through a point near the centre (about half the image).
    const angle = g.uniform() * 2 * Math.PI;
    const cx = w / 2 + (g.uniform() - 0.5) * 0.3 * w;
    const cy = h / 2 + (g.uniform() - 0.5) * 0.3 * h;
    const nx = Math.cos(angle);
    const ny = Math.sin(angle);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) m[y * w + x] = (x + 0.5 - cx) * nx + (y + 0.5 - cy) * ny > 0 ? 1 : 0;
  } else {
    throw new Error(`unknown mask family ${family}`);
  }
  return m;
}

function disc(m, w, h, cx, cy, r) {
  for (let y = Math.max(0, Math.floor(cy - r)); y <= Math.min(h - 1, Math.ceil(cy + r)); y++) {
    for (let x = Math.max(0, Math.floor(cx - r)); x <= Math.min(w - 1, Math.ceil(cx + r)); x++) {
      if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= r * r) m[y * w + x] = 1;
    }
  }
}

export function maskPlane(mask) {
  return Float32Array.from(mask, (v) => (v ? 255 : 0));
}

/** The input shown in contact sheets: the image with its hole painted mid-gray. */
export function withHole(img, mask) {
  const out = { w: img.w, h: img.h, data: Float32Array.from(img.data) };
  for (let p = 0; p < mask.length; p++) if (mask[p]) out.data.set([128, 128, 128], p * 3);
  return out;
}

// ---- stroke paintings -----------------------------------------------------------------------------------------------

/**
 * A stroke painting of a photo, like SDEdit's stroke inputs: the photo blurred (sigma 2), its colours clustered into
 * k = 5 flat colours (k-means, deterministic start), the labels smoothed by a 5x5 majority filter. Returns the painting
 * and its label map (the regions).
 */
export function strokePainting(img, k = 5) {
  const { w, h } = img;
  const n = w * h;
  const b = gaussianBlur(img, 2);
  // Farthest-point start from the first pixel.
  const centres = [[b.data[0], b.data[1], b.data[2]]];
  const dist = (p, c) => (b.data[p * 3] - c[0]) ** 2 + (b.data[p * 3 + 1] - c[1]) ** 2 + (b.data[p * 3 + 2] - c[2]) ** 2;
  while (centres.length < k) {
    let best = 0;
    let bestD = -1;
    for (let p = 0; p < n; p++) {
      const d = Math.min(...centres.map((c) => dist(p, c)));
      if (d > bestD) {
        bestD = d;
        best = p;
      }
    }
    centres.push([b.data[best * 3], b.data[best * 3 + 1], b.data[best * 3 + 2]]);
  }
  let labels = new Uint8Array(n);
  for (let it = 0; it < 12; it++) {
    for (let p = 0; p < n; p++) {
      let bl = 0;
      let bd = Infinity;
      for (let j = 0; j < k; j++) {
        const d = dist(p, centres[j]);
        if (d < bd) {
          bd = d;
          bl = j;
        }
      }
      labels[p] = bl;
    }
    const sums = centres.map(() => [0, 0, 0, 0]);
    for (let p = 0; p < n; p++) {
      const s = sums[labels[p]];
      for (let c = 0; c < 3; c++) s[c] += b.data[p * 3 + c];
      s[3]++;
    }
    for (let j = 0; j < k; j++) if (sums[j][3]) centres[j] = [0, 1, 2].map((c) => sums[j][c] / sums[j][3]);
  }
  const r = Math.max(1, Math.round(Math.min(w, h) / 32));
  const smooth = new Uint8Array(n);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const votes = new Array(k).fill(0);
      for (let dy = -r; dy <= r; dy++) {
        for (let dx = -r; dx <= r; dx++) {
          const yy = Math.min(h - 1, Math.max(0, y + dy));
          const xx = Math.min(w - 1, Math.max(0, x + dx));
          votes[labels[yy * w + xx]]++;
        }
      }
      smooth[y * w + x] = votes.indexOf(Math.max(...votes));
    }
  }
  labels = smooth;
  const out = blank(w, h);
  for (let p = 0; p < n; p++) out.data.set(centres[labels[p]].map(Math.round), p * 3);
  return { painting: out, labels, colours: centres.map((c) => c.map(Math.round)), k };
}

/**
 * Mean colour error to a stroke painting: for each region (label) covering at least 2% of the image, the Euclidean
 * RGB distance (0-255 units) between the image's mean colour over the region and the region's stroke colour;
 * averaged over those regions.
 */
export function regionColourError(img, { labels, colours, k }) {
  const n = img.w * img.h;
  const sums = Array.from({ length: k }, () => [0, 0, 0, 0]);
  for (let p = 0; p < n; p++) {
    const s = sums[labels[p]];
    for (let c = 0; c < 3; c++) s[c] += img.data[p * 3 + c];
    s[3]++;
  }
  const errs = [];
  for (let j = 0; j < k; j++) {
    if (sums[j][3] < 0.02 * n) continue;
    errs.push(Math.hypot(...[0, 1, 2].map((c) => sums[j][c] / sums[j][3] - colours[j][c])));
  }
  return errs.reduce((a, v) => a + v, 0) / errs.length;
}
