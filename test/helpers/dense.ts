/**
 * The test oracle for the fast operators: the definition P(x) = A^T[(A y)(1 - Omega) + (A x) Omega] with A built as an
 * explicit block-diagonal orthogonal matrix (each block completed to an orthonormal basis from random vectors, so a
 * closed form that relied on one particular completion would fail).
 */
import { Rng } from '../../src/rng.js';
import { Tensor } from '../../src/tensor.js';

/** A k x k orthogonal matrix (rows orthonormal) whose first row is `first` normalised; row-major. */
export function orthogonalWithFirstRow(first: number[], rng: Rng): number[][] {
  const k = first.length;
  const rows: number[][] = [];
  const push = (v: number[]): boolean => {
    const u = v.slice();
    for (const r of rows) {
      const d = dot(u, r);
      for (let i = 0; i < k; i++) u[i] -= d * r[i];
    }
    const n = Math.sqrt(dot(u, u));
    if (n < 1e-6) return false;
    rows.push(u.map((x) => x / n));
    return true;
  };
  push(first);
  while (rows.length < k) push(Array.from({ length: k }, () => rng.normal()));
  return rows;
}

export function dot(a: number[], b: number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** One block of A: which values of the image (flat indices) it acts on, its matrix, and Omega (1 = generated). */
export interface Block {
  indices: number[];
  matrix: number[][];
  omega: number[];
}

/** P(x) by the definition, block by block. */
export function denseProject(blocks: Block[], y: Tensor, x: Tensor): Tensor {
  const out = x.clone();
  for (const { indices, matrix, omega } of blocks) {
    const yv = indices.map((i) => y.data[i]);
    const xv = indices.map((i) => x.data[i]);
    const mixed = matrix.map((row, r) => (1 - omega[r]) * dot(row, yv) + omega[r] * dot(row, xv));
    indices.forEach((idx, c) => {
      let s = 0;
      for (let r = 0; r < matrix.length; r++) s += matrix[r][c] * mixed[r];
      out.data[idx] = s;
    });
  }
  return out;
}

/** Colorize: per pixel, the 3 channel values; first row w/|w| (known), the rest generated. */
export function colorizeBlocks(n: number, h: number, w: number, rng: Rng, luma: readonly number[]): Block[] {
  const blocks: Block[] = [];
  const plane = h * w;
  for (let b = 0; b < n; b++) {
    for (let p = 0; p < plane; p++) {
      blocks.push({
        indices: [0, 1, 2].map((c) => (b * 3 + c) * plane + p),
        matrix: orthogonalWithFirstRow([...luma], rng),
        omega: [0, 1, 1],
      });
    }
  }
  return blocks;
}

/** Superres by p: per channel and p x p patch; first row 1/p everywhere (p x the mean, known), the rest generated. */
export function superresBlocks(n: number, c: number, h: number, w: number, p: number, rng: Rng): Block[] {
  const blocks: Block[] = [];
  for (let nc = 0; nc < n * c; nc++) {
    for (let py = 0; py < h / p; py++) {
      for (let px = 0; px < w / p; px++) {
        const indices: number[] = [];
        for (let dy = 0; dy < p; dy++) for (let dx = 0; dx < p; dx++) indices.push((nc * h + py * p + dy) * w + px * p + dx);
        blocks.push({
          indices,
          matrix: orthogonalWithFirstRow(new Array(p * p).fill(1 / p), rng),
          omega: [0, ...new Array(p * p - 1).fill(1)],
        });
      }
    }
  }
  return blocks;
}

/** Inpaint: A = identity, one block per value; Omega = the mask (broadcast over channels). */
export function inpaintBlocks(y: Tensor, fill: Tensor): Block[] {
  const plane = y.h * y.w;
  return Array.from({ length: y.data.length }, (_, i) => {
    const b = Math.floor(i / y.imageSize);
    return { indices: [i], matrix: [[1]], omega: [fill.data[(fill.n === 1 ? 0 : b) * plane + (i % plane)]] };
  });
}
