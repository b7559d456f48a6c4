import { describe, expect, test } from 'vitest';
import { Rng } from '../src/rng.js';

describe('Rng', () => {
  test('is deterministic per seed and differs between seeds', () => {
    const a = new Rng(7).normalTensor(1, 1, 8, 8).data;
    const b = new Rng(7).normalTensor(1, 1, 8, 8).data;
    const c = new Rng(8).normalTensor(1, 1, 8, 8).data;
    expect([...a]).toEqual([...b]);
    expect([...a]).not.toEqual([...c]);
  });

  test('normal values have mean 0 and variance 1', () => {
    const rng = new Rng(123);
    const n = 200_000;
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const v = rng.normal();
      s += v;
      s2 += v * v;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.01);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.015);
  });

  test('uniform values stay in (0, 1) and fill it', () => {
    const rng = new Rng(0);
    const buckets = new Array(10).fill(0);
    for (let i = 0; i < 100_000; i++) {
      const u = rng.uniform();
      expect(u > 0 && u < 1).toBe(true);
      buckets[Math.floor(u * 10)]++;
    }
    for (const b of buckets) expect(Math.abs(b - 10_000)).toBeLessThan(500);
  });

  test('streams of one seed: stream 0 is the seed itself, the others differ and are uncorrelated', () => {
    const n = 20_000;
    const base = new Rng(7).normalTensor(1, 1, 1, n).data;
    expect([...new Rng(7, 0).normalTensor(1, 1, 1, n).data]).toEqual([...base]);
    const streams = [1, 2, 3].map((k) => new Rng(7, k).normalTensor(1, 1, 1, n).data);
    const other = new Rng(8).normalTensor(1, 1, 1, n).data;
    for (const a of [base, ...streams]) {
      for (const b of [...streams, other]) {
        if (a === b) continue;
        let dot = 0;
        for (let i = 0; i < n; i++) dot += a[i] * b[i];
        expect(Math.abs(dot / n)).toBeLessThan(0.04); // |correlation| ~ 1/sqrt(n) = 0.007 for independent streams
      }
    }
    expect(() => new Rng(7, -1)).toThrow(/stream/);
  });

  test.each([-1, 1.5, 2 ** 32])('rejects seed %d', (s) => {
    expect(() => new Rng(s)).toThrow(/seed/);
  });
});
