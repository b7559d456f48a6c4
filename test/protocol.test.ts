// The denoising protocol of bench/published.mjs (the published Kodak24 tables'): checked by hand on known images.
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a benchmark module in plain JavaScript, without types
import { noisyPlanes, noiseSource, psnr8, toImage8 } from '../bench/lib/protocol.mjs';

const image = (w: number, h: number, v: (p: number, c: number) => number) => ({
  w,
  h,
  data: Float32Array.from({ length: w * h * 3 }, (_, i) => v(Math.floor(i / 3), i % 3)),
});

describe('the published denoising protocol', () => {
  it('adds the noise in floating point: no rounding, no clipping, planar [-1, 1] units', () => {
    const gt = image(2, 1, (p, c) => (p === 0 ? 250 : 3) + c);
    const draws = [20, -10.25, 0.5, 7, -9, 1e-3];
    let k = 0;
    const planes = noisyPlanes(gt, 2, () => draws[k++]);
    // pixel 0 channel 0: 250 + 2 * 20 = 290 (above 255, kept); pixel 1 channel 1: 4 + 2 * -9 = -14 (below 0, kept)
    const plane = 2;
    const expect8 = (p: number, c: number) => gt.data[p * 3 + c] + 2 * draws[p * 3 + c];
    for (let p = 0; p < 2; p++) for (let c = 0; c < 3; c++) expect(planes[c * plane + p]).toBeCloseTo(expect8(p, c) / 127.5 - 1, 6);
    expect(planes[0]).toBeGreaterThan(1);
    expect(planes[1 * plane + 1]).toBeLessThan(-1);
    // 3 + 1 + 2 * 1e-3 is not rounded away
    expect((planes[2 * plane + 1] + 1) * 127.5).toBeCloseTo(5.002, 4);
  });

  it('clips and rounds the output to 8 bits, and gives the PSNR computed by hand', () => {
    const gt = image(4, 4, () => 100);
    // An output 5 grey levels off everywhere: MSE 25, PSNR = 10 log10(255^2 / 25) = 34.1514 dB.
    const off = new Float32Array(3 * 16).fill(105 / 127.5 - 1);
    expect(psnr8(toImage8(off, 4, 4), gt)).toBeCloseTo(10 * Math.log10((255 * 255) / 25), 6);
    // 100.4 rounds to 100 (exact: 99 dB by convention), 300 is clipped to 255.
    const near = new Float32Array(3 * 16).fill(100.4 / 127.5 - 1);
    expect(psnr8(toImage8(near, 4, 4), gt)).toBe(99);
    const over = toImage8(new Float32Array(3 * 16).fill(300 / 127.5 - 1), 4, 4);
    expect(over.data.every((v: number) => v === 255)).toBe(true);
    // one value of 48 wrong by 48: MSE 48, PSNR 10 log10(255^2 / 48)
    const one = new Float32Array(3 * 16).fill(100 / 127.5 - 1);
    one[5] = 148 / 127.5 - 1;
    expect(psnr8(toImage8(one, 4, 4), gt)).toBeCloseTo(10 * Math.log10((255 * 255) / 48), 6);
  });

  it('draws the same noise every run, different per photo and sigma, of unit variance', () => {
    const a = noiseSource(3, 25);
    const b = noiseSource(3, 25);
    const c = noiseSource(4, 25);
    const xs = Array.from({ length: 20000 }, () => a());
    expect(Array.from({ length: 5 }, () => b())).toEqual(xs.slice(0, 5));
    expect(c()).not.toBe(xs[0]);
    const m = xs.reduce((s, v) => s + v, 0) / xs.length;
    const v = xs.reduce((s, x) => s + (x - m) ** 2, 0) / xs.length;
    expect(Math.abs(m)).toBeLessThan(0.03);
    expect(Math.abs(v - 1)).toBeLessThan(0.03);
  });
});
