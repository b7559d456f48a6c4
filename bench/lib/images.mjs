// Image helpers for the benchmarks: an image is { w, h, data } with data a Float32Array of interleaved RGB values in
// 0..255 (HWC). sharp decodes and encodes; everything else is plain JS so that the math is visible.
import sharp from 'sharp';

sharp.cache(false);

export function blank(w, h, fill = 0) {
  return { w, h, data: new Float32Array(w * h * 3).fill(fill) };
}

/** Decode a file (or a buffer) to RGB. */
export async function load(src) {
  const { data, info } = await sharp(src).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return fromBytes(data, info.width, info.height, info.channels);
}

export function fromBytes(bytes, w, h, channels = 3) {
  const img = blank(w, h);
  for (let p = 0; p < w * h; p++) {
    for (let c = 0; c < 3; c++) img.data[p * 3 + c] = bytes[p * channels + (channels === 1 ? 0 : c)];
  }
  return img;
}

/** Rounded, clamped 8-bit bytes (what a PNG holds). */
export function toBytes(img) {
  const out = Buffer.alloc(img.w * img.h * 3);
  for (let i = 0; i < out.length; i++) out[i] = clamp8(img.data[i]);
  return out;
}

export function clamp8(v) {
  const r = Math.round(v);
  return r < 0 ? 0 : r > 255 ? 255 : r;
}

/** The image as PNGs store it: rounded to 8 bits. */
export function quantize(img) {
  return { w: img.w, h: img.h, data: Float32Array.from(img.data, clamp8) };
}

export async function savePng(img, path) {
  await sharp(toBytes(img), { raw: { width: img.w, height: img.h, channels: 3 } }).png({ compressionLevel: 9 }).toFile(path);
}

export async function saveGrayPng(plane, w, h, path) {
  const bytes = Buffer.from(Uint8Array.from(plane, clamp8));
  await sharp(bytes, { raw: { width: w, height: h, channels: 1 } }).png().toFile(path);
}

export function crop(img, x0, y0, cw, ch) {
  const out = blank(cw, ch);
  for (let y = 0; y < ch; y++) {
    const src = ((y0 + y) * img.w + x0) * 3;
    out.data.set(img.data.subarray(src, src + cw * 3), y * cw * 3);
  }
  return out;
}

/** Mean over p x p patches (the super-resolution operator's forward model), rounded to 8 bits. */
export function boxDown(img, p) {
  const w = Math.floor(img.w / p);
  const h = Math.floor(img.h / p);
  const out = blank(w, h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let dy = 0; dy < p; dy++) for (let dx = 0; dx < p; dx++) s += img.data[((y * p + dy) * img.w + x * p + dx) * 3 + c];
        out.data[(y * w + x) * 3 + c] = clamp8(s / (p * p));
      }
    }
  }
  return out;
}

/** sharp's resize of an 8-bit image ('cubic' is Catmull-Rom, i.e. Keys a = -0.5, MATLAB's bicubic; 'lanczos3'; 'nearest'). */
export async function resize(img, w, h, kernel) {
  const { data, info } = await sharp(toBytes(img), { raw: { width: img.w, height: img.h, channels: 3 } })
    .resize(w, h, { kernel, fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return fromBytes(data, info.width, info.height, info.channels);
}

/** Nearest-neighbour upsampling by an integer factor (for display). */
export function upNearest(img, p) {
  const out = blank(img.w * p, img.h * p);
  for (let y = 0; y < out.h; y++) {
    for (let x = 0; x < out.w; x++) {
      const s = (Math.floor(y / p) * img.w + Math.floor(x / p)) * 3;
      out.data.set(img.data.subarray(s, s + 3), (y * out.w + x) * 3);
    }
  }
  return out;
}

/** The luminance the CLI keeps when colorizing (0.2989 R + 0.587 G + 0.114 B), replicated over RGB. */
export function grayOf(img) {
  const out = blank(img.w, img.h);
  for (let p = 0; p < img.w * img.h; p++) {
    const v = 0.2989 * img.data[p * 3] + 0.587 * img.data[p * 3 + 1] + 0.114 * img.data[p * 3 + 2];
    out.data[p * 3] = out.data[p * 3 + 1] = out.data[p * 3 + 2] = v;
  }
  return out;
}

/** Separable Gaussian blur (radius ceil(3 sigma), edges mirrored). */
export function gaussianBlur(img, sigma) {
  const r = Math.max(1, Math.ceil(3 * sigma));
  const k = new Float32Array(2 * r + 1);
  let s = 0;
  for (let i = -r; i <= r; i++) s += k[i + r] = Math.exp((-i * i) / (2 * sigma * sigma));
  for (let i = 0; i < k.length; i++) k[i] /= s;
  const { w, h } = img;
  const mirror = (i, n) => {
    while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1;
    return i;
  };
  const taps = 2 * r + 1;
  const ix = new Int32Array(w * taps);
  for (let x = 0; x < w; x++) for (let i = -r; i <= r; i++) ix[x * taps + i + r] = mirror(x + i, w) * 3;
  const iy = new Int32Array(h * taps);
  for (let y = 0; y < h; y++) for (let i = -r; i <= r; i++) iy[y * taps + i + r] = mirror(y + i, h) * w * 3;
  const src = img.data;
  const tmp = new Float32Array(src.length);
  for (let y = 0; y < h; y++) {
    const row = y * w * 3;
    for (let x = 0; x < w; x++) {
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      for (let i = 0; i < taps; i++) {
        const q = row + ix[x * taps + i];
        const kv = k[i];
        a0 += kv * src[q];
        a1 += kv * src[q + 1];
        a2 += kv * src[q + 2];
      }
      const o = row + x * 3;
      tmp[o] = a0;
      tmp[o + 1] = a1;
      tmp[o + 2] = a2;
    }
  }
  const out = blank(w, h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      for (let i = 0; i < taps; i++) {
        const q = iy[y * taps + i] + x * 3;
        const kv = k[i];
        a0 += kv * tmp[q];
        a1 += kv * tmp[q + 1];
        a2 += kv * tmp[q + 2];
      }
      const o = (y * w + x) * 3;
      out.data[o] = a0;
      out.data[o + 1] = a1;
      out.data[o + 2] = a2;
    }
  }
  return out;
}

/** A small deterministic PRNG (mulberry32) and a Gaussian from it (Box-Muller). */
export function rng(seed) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => {
    const u = 1 - uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
  };
  return { uniform, normal, int: (n) => Math.floor(uniform() * n) };
}

/** Add Gaussian noise of standard deviation sigma (0-255 units); the result is rounded and clipped to 8 bits. */
export function addNoise(img, sigma, seed) {
  const g = rng(seed);
  return { w: img.w, h: img.h, data: Float32Array.from(img.data, (v) => clamp8(v + sigma * g.normal())) };
}

/**
 * A contact sheet: rows of equally sized cells (images of any size are resized to the cell, nearest), with a 2-pixel
 * gap, written as a PNG.
 */
export async function contactSheet(rows, cell, path) {
  const gap = 2;
  const cols = Math.max(...rows.map((r) => r.length));
  const W = cols * cell + (cols + 1) * gap;
  const H = rows.length * cell + (rows.length + 1) * gap;
  const sheet = blank(W, H, 255);
  for (let r = 0; r < rows.length; r++) {
    for (let c = 0; c < rows[r].length; c++) {
      const img = rows[r][c];
      if (!img) continue;
      const x0 = gap + c * (cell + gap);
      const y0 = gap + r * (cell + gap);
      for (let y = 0; y < cell; y++) {
        for (let x = 0; x < cell; x++) {
          const sx = Math.min(img.w - 1, Math.floor((x * img.w) / cell));
          const sy = Math.min(img.h - 1, Math.floor((y * img.h) / cell));
          const s = (sy * img.w + sx) * 3;
          sheet.data.set(img.data.subarray(s, s + 3), ((y0 + y) * W + x0 + x) * 3);
        }
      }
    }
  }
  await savePng(sheet, path);
}

