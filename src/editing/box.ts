/**
 * Exact Euclidean projection onto {v in [-1, 1]^k : a.v = b} for positive weights a: v = clamp(x + lambda a) with the
 * lambda (found by bisection; a.v grows with lambda) that meets the constraint. Colorize and superres keep one such
 * linear constraint per block (a pixel's luminance, a patch's mean), so this gives their outputs in range with the
 * known data kept, where clamping after projecting would change the known data. Pure.
 */
export function projectBlockInRange(
  values: Float32Array,
  indices: ArrayLike<number>,
  weights: ArrayLike<number>,
  target: number,
): void {
  const k = indices.length;
  let lo = Infinity;
  let hi = -Infinity;
  let inRange = true;
  let sum = 0;
  for (let j = 0; j < k; j++) {
    const v = values[indices[j]];
    if (v < -1 || v > 1) inRange = false;
    sum += weights[j] * v;
    lo = Math.min(lo, (-1 - v) / weights[j]);
    hi = Math.max(hi, (1 - v) / weights[j]);
  }
  if (inRange && Math.abs(sum - target) < 1e-7) return;
  const at = (lambda: number): number => {
    let s = 0;
    for (let j = 0; j < k; j++) s += weights[j] * clamp1(values[indices[j]] + lambda * weights[j]);
    return s;
  };
  for (let it = 0; it < 60 && hi - lo > 1e-9; it++) {
    const mid = 0.5 * (lo + hi);
    if (at(mid) < target) lo = mid;
    else hi = mid;
  }
  const lambda = 0.5 * (lo + hi);
  for (let j = 0; j < k; j++) values[indices[j]] = clamp1(values[indices[j]] + lambda * weights[j]);
}

function clamp1(v: number): number {
  return v < -1 ? -1 : v > 1 ? 1 : v;
}
