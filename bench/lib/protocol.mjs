// The protocol of the published colour-denoising tables (DnCNN, FFDNet, DRUNet on Kodak24), as bench/published.mjs
// follows it: the 8-bit photo x (0-255), noise added in floating point, y = x + sigma n with n ~ N(0, 1) per value,
// never rounded or clipped before the network; the network's output clipped to [0, 255] and rounded to 8 bits; PSNR
// against the 8-bit photo with peak 255 over all three channels, no border shaved, averaged over the photos (the
// mean of per-photo PSNRs). Pure functions, so that a test can check them by hand.
import { psnrOfMse } from './metrics.mjs';
import { rng } from './images.mjs';

/**
 * The noisy photo as the network sees it, in [-1, 1] units (v / 127.5 - 1), float32 planes [3, h, w]: the photo's
 * 8-bit values plus sigma (0-255 units) times the given standard normal source, unclipped.
 */
export function noisyPlanes(img, sigma, normal) {
  const plane = img.w * img.h;
  const out = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) out[c * plane + p] = (img.data[p * 3 + c] + sigma * normal()) / 127.5 - 1;
  }
  return out;
}

/** The seeded standard normal source of photo `index` at noise level sigma (the same every run). */
export function noiseSource(index, sigma) {
  return rng(1_000_003 * Math.round(sigma) + 7919 * index + 12345).normal;
}

/** Network output planes [3, h, w] in [-1, 1] units -> an 8-bit image (interleaved RGB), clipped and rounded. */
export function toImage8(planes, w, h) {
  const plane = w * h;
  const data = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) data[p * 3 + c] = Math.min(255, Math.max(0, Math.round((planes[c * plane + p] + 1) * 127.5)));
  }
  return { w, h, data };
}

/** PSNR (dB, peak 255) of an 8-bit image against the 8-bit photo, all channels, no border shaved. */
export function psnr8(out, gt) {
  let s = 0;
  for (let i = 0; i < gt.data.length; i++) {
    const d = out.data[i] - gt.data[i];
    s += d * d;
  }
  return psnrOfMse(s / gt.data.length);
}

/** Published Kodak24 colour-denoising PSNR (dB) at sigma 15 / 25 / 50, with where each figure is printed. */
export const PUBLISHED_KODAK24 = [
  { method: 'CBM3D', 15: 34.28, 25: 31.68, 50: 28.46, source: 'Dabov et al. 2007; figures as tabulated by Zhang et al., FFDNet (IEEE TIP 2018) and DRUNet (IEEE TPAMI 2021, arXiv:2008.13751)' },
  { method: 'CDnCNN', 15: 34.48, 25: 32.03, 50: 28.85, source: 'Zhang et al., DnCNN (IEEE TIP 2017); as tabulated by FFDNet and DRUNet' },
  { method: 'FFDNet', 15: 34.63, 25: 32.13, 50: 28.98, source: 'Zhang, Zuo, Zhang, FFDNet (IEEE TIP 2018)' },
  { method: 'DRUNet', 15: 35.31, 25: 32.89, 50: 29.86, source: 'Zhang et al., Plug-and-Play Image Restoration with Deep Denoiser Prior (IEEE TPAMI 2021, arXiv:2008.13751), Table 3' },
];
