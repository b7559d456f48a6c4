/**
 * The harmonic (Laplace) fill of a hole: the classical estimate that inpainting's warm start begins from
 * (ALGORITHMS.md 4b). Inside the hole the 4-neighbour discrete Laplacian is zero; the known pixels are the boundary
 * values (Dirichlet); at the image border only the neighbours inside the image count (a mirror, Neumann).
 *
 * Solved by conjugate gradients preconditioned with one multigrid V-cycle (red-black Gauss-Seidel smoothing, a coarse
 * cell is unknown where all four of its children are, piecewise-constant prolongation and its transpose as
 * restriction, so the preconditioner is symmetric), started from the coarser level's solution: a 768x512 image with a
 * quarter of it missing takes a few iterations per level, not the thousands of a plain iteration. Only the bounding
 * box of the hole is touched. Pure.
 */
import { Tensor } from '../tensor.js';
import { maskBounds } from './regions.js';

/** Stop when every equation's residual is below this (values live in [-1, 1]). */
const TOLERANCE = 1e-6;
/** At most this many unknowns are solved directly (by symmetric Gauss-Seidel sweeps) at the coarsest level. */
const COARSEST = 64;

/**
 * @param y the image [N,C,H,W]; its values inside the hole are ignored
 * @param fill [N or 1,1,H,W]: the hole is where fill > 0
 * @returns y with every hole pixel replaced by the harmonic fill; the other pixels exactly y's
 */
export function harmonicFill(y: Tensor, fill: Tensor): Tensor {
  if (fill.c !== 1 || fill.h !== y.h || fill.w !== y.w || (fill.n !== 1 && fill.n !== y.n)) {
    throw new RangeError(`harmonicFill: mask [${fill.shape}] does not fit image [${y.shape}]`);
  }
  const out = y.clone();
  const plane = y.h * y.w;
  for (let n = 0; n < y.n; n++) {
    const m = fill.data.subarray((fill.n === 1 ? 0 : n) * plane, (fill.n === 1 ? 1 : n + 1) * plane);
    // The hole's bounding box, one pixel wider (its known neighbours) where the image allows.
    const hole = maskBounds(m, y.w, y.h);
    if (!hole) continue;
    const x0 = Math.max(0, hole.x0 - 1);
    const y0 = Math.max(0, hole.y0 - 1);
    const x1 = Math.min(y.w - 1, hole.x1 + 1);
    const y1 = Math.min(y.h - 1, hole.y1 + 1);
    const bw = x1 - x0 + 1;
    const bh = y1 - y0 + 1;
    // Pixels outside the box are known; those just outside it matter only through the box's border pixels,
    // which are themselves known or at the image border (the box is one pixel wider than the hole).
    const unknown = new Uint8Array(bw * bh);
    for (let yy = 0; yy < bh; yy++) for (let xx = 0; xx < bw; xx++) unknown[yy * bw + xx] = m[(y0 + yy) * y.w + x0 + xx] > 0 ? 1 : 0;
    const level = new Level(bw, bh, unknown);
    for (let c = 0; c < y.c; c++) {
      const offset = (n * y.c + c) * plane;
      const values = new Float64Array(bw * bh);
      for (let yy = 0; yy < bh; yy++) for (let xx = 0; xx < bw; xx++) values[yy * bw + xx] = y.data[offset + (y0 + yy) * y.w + x0 + xx];
      solveLaplace(values, level);
      for (let yy = 0; yy < bh; yy++) {
        for (let xx = 0; xx < bw; xx++) if (unknown[yy * bw + xx]) out.data[offset + (y0 + yy) * y.w + x0 + xx] = values[yy * bw + xx];
      }
    }
  }
  return out;
}

/** One grid of the multigrid hierarchy: which cells are unknown, how many neighbours each has, the next coarser. */
class Level {
  readonly deg: Uint8Array;
  readonly count: number;
  readonly coarse: Level | null;
  /** Scratch planes of the V-cycle at this level (its residual; the coarser level's right-hand side and answer). */
  private readonly res: Float64Array;
  private readonly rc: Float64Array;
  private readonly ec: Float64Array;

  constructor(
    readonly w: number,
    readonly h: number,
    readonly unknown: Uint8Array,
  ) {
    this.deg = new Uint8Array(w * h);
    let count = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        this.deg[y * w + x] = (x > 0 ? 1 : 0) + (x < w - 1 ? 1 : 0) + (y > 0 ? 1 : 0) + (y < h - 1 ? 1 : 0);
        count += unknown[y * w + x];
      }
    }
    this.count = count;
    this.res = new Float64Array(w * h);
    if (count <= COARSEST || w < 4 || h < 4) {
      this.coarse = null;
      this.rc = this.ec = new Float64Array(0);
      return;
    }
    const cw = Math.ceil(w / 2);
    const ch = Math.ceil(h / 2);
    // A coarse cell is unknown where all its children are: the known ring around a hole survives coarsening
    // (were a cell unknown where any child is, the ring would vanish and the coarse problem lose its boundary).
    const cu = new Uint8Array(cw * ch).fill(1);
    for (let y = 0; y < 2 * ch; y++) {
      for (let x = 0; x < 2 * cw; x++) if (x >= w || y >= h || !unknown[y * w + x]) cu[(y >> 1) * cw + (x >> 1)] = 0;
    }
    this.coarse = new Level(cw, ch, cu);
    this.rc = new Float64Array(cw * ch);
    this.ec = new Float64Array(cw * ch);
  }

  /** out = A e on the unknowns (A = degree - adjacency among unknowns); 0 elsewhere. */
  apply(e: Float64Array, out: Float64Array): void {
    const { w, h, unknown, deg } = this;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const p = y * w + x;
        if (!unknown[p]) {
          out[p] = 0;
          continue;
        }
        let s = deg[p] * e[p];
        if (x > 0) s -= e[p - 1];
        if (x < w - 1) s -= e[p + 1];
        if (y > 0) s -= e[p - w];
        if (y < h - 1) s -= e[p + w];
        out[p] = s;
      }
    }
  }

  /** One Gauss-Seidel pass over the unknown cells of one colour ((x + y) % 2 === colour) for A e = r. */
  smooth(e: Float64Array, r: Float64Array, colour: number): void {
    const { w, h, unknown, deg } = this;
    for (let y = 0; y < h; y++) {
      for (let x = (y + colour) & 1; x < w; x += 2) {
        const p = y * w + x;
        if (!unknown[p]) continue;
        let s = r[p];
        if (x > 0) s += e[p - 1];
        if (x < w - 1) s += e[p + 1];
        if (y > 0) s += e[p - w];
        if (y < h - 1) s += e[p + w];
        e[p] = s / deg[p];
      }
    }
  }

  /** e ~ A^-1 r by one V-cycle from e = 0: a symmetric linear map of r (so it can precondition CG). */
  vcycle(r: Float64Array, e: Float64Array): void {
    e.fill(0);
    if (!this.coarse) {
      for (let k = 0; k < 20; k++) {
        this.smooth(e, r, 0);
        this.smooth(e, r, 1);
        this.smooth(e, r, 1);
        this.smooth(e, r, 0);
      }
      return;
    }
    this.smooth(e, r, 0);
    this.smooth(e, r, 1);
    const { res, rc, ec } = this;
    this.apply(e, res);
    const c = this.coarse;
    rc.fill(0);
    for (let y = 0; y < this.h; y++) {
      for (let x = 0; x < this.w; x++) {
        const p = y * this.w + x;
        const q = (y >> 1) * c.w + (x >> 1);
        if (c.unknown[q]) rc[q] += r[p] - res[p];
      }
    }
    c.vcycle(rc, ec);
    for (let y = 0; y < this.h; y++) {
      for (let x = 0; x < this.w; x++) {
        e[y * this.w + x] += ec[(y >> 1) * c.w + (x >> 1)]; // 0 where the coarse cell is known
      }
    }
    this.smooth(e, r, 1);
    this.smooth(e, r, 0);
  }
}

/**
 * Solve the Laplace equation for the unknown cells of one plane in place (known cells are the boundary values).
 * Returns the largest residual left.
 */
function solveLaplace(values: Float64Array, level: Level, tolerance = TOLERANCE): number {
  const { w, h, unknown } = level;
  const n = w * h;
  initialGuess(values, level);
  // r = b - A u where b carries the known neighbours: r_p = sum of all neighbours - deg_p u_p at unknown p.
  const residual = (r: Float64Array): number => {
    let worst = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const p = y * w + x;
        if (!unknown[p]) {
          r[p] = 0;
          continue;
        }
        let s = -level.deg[p] * values[p];
        if (x > 0) s += values[p - 1];
        if (x < w - 1) s += values[p + 1];
        if (y > 0) s += values[p - w];
        if (y < h - 1) s += values[p + w];
        r[p] = s;
        worst = Math.max(worst, Math.abs(s));
      }
    }
    return worst;
  };
  const r = new Float64Array(n);
  const z = new Float64Array(n);
  const d = new Float64Array(n);
  const ad = new Float64Array(n);
  let worst = residual(r);
  level.vcycle(r, z);
  d.set(z);
  let rz = dot(r, z);
  for (let it = 0; it < 500 && worst >= tolerance; it++) {
    level.apply(d, ad);
    const dad = dot(d, ad);
    if (!(dad > 0)) break; // a hole with no known neighbour anywhere: nothing left to solve
    const alpha = rz / dad;
    worst = 0;
    for (let p = 0; p < n; p++) {
      if (!unknown[p]) continue;
      values[p] += alpha * d[p];
      r[p] -= alpha * ad[p];
      worst = Math.max(worst, Math.abs(r[p]));
    }
    level.vcycle(r, z);
    const rzNext = dot(r, z);
    const beta = rzNext / rz;
    rz = rzNext;
    for (let p = 0; p < n; p++) d[p] = z[p] + beta * d[p];
  }
  // The recurrence drifts from the true residual in floating point: report the true one.
  return residual(r);
}

/**
 * Start the unknown cells from the solution of the coarser problem (its known cells: the mean of their four known
 * children), interpolated bilinearly between coarse cell centres: most of the smooth error is gone before CG starts.
 */
function initialGuess(values: Float64Array, level: Level): void {
  const { w, h, unknown, coarse: c } = level;
  if (!c) {
    for (let p = 0; p < w * h; p++) if (unknown[p]) values[p] = 0;
    return;
  }
  const cv = new Float64Array(c.w * c.h);
  const cn = new Uint8Array(c.w * c.h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      if (unknown[p]) continue;
      const q = (y >> 1) * c.w + (x >> 1);
      cv[q] += values[p];
      cn[q]++;
    }
  }
  for (let q = 0; q < cv.length; q++) if (!c.unknown[q] && cn[q]) cv[q] /= cn[q];
  solveLaplace(cv, c, 1e-4); // only a starting point
  for (let y = 0; y < h; y++) {
    // Fine cell centre (x + 0.5) sits at coarse coordinate (x + 0.5) / 2 - 0.5 between coarse centres.
    const fy = Math.min(c.h - 1, Math.max(0, (y + 0.5) / 2 - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(c.h - 1, y0 + 1);
    const ty = fy - y0;
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      if (!unknown[p]) continue;
      const fx = Math.min(c.w - 1, Math.max(0, (x + 0.5) / 2 - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(c.w - 1, x0 + 1);
      const tx = fx - x0;
      values[p] =
        (1 - ty) * ((1 - tx) * cv[y0 * c.w + x0] + tx * cv[y0 * c.w + x1]) + ty * ((1 - tx) * cv[y1 * c.w + x0] + tx * cv[y1 * c.w + x1]);
    }
  }
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
