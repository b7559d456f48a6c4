/**
 * Noise levels and sampling plans (ALGORITHMS.md sections 1 and 3). Pure.
 *
 * A plan in the reference code's format is a list `ts` of indices into a Karras grid of N levels (index 0 = sigma_max),
 * strictly increasing and ending at N-1 (sigma_min): the model is evaluated at every level but the last, so `0,22,39`
 * is two evaluations. The sampler itself only sees the resulting list of sigmas.
 */
import { OptionError, UsageError } from '../errors.js';

export interface NoiseGrid {
  sigmaMin: number;
  sigmaMax: number;
  rho: number;
  /** Number of levels N in the grid that `ts` indexes. */
  size: number;
}

/** The noise levels of one run: the model is evaluated at each but the last; the last is where sampling ends. */
export interface Plan {
  sigmas: number[];
  /** The grid indices, when the plan lies on the grid (reported to users and in --json). */
  ts?: number[];
}

export function evaluations(plan: Plan): number {
  return plan.sigmas.length - 1;
}

/** sigma at a (possibly fractional) grid index i: (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho. */
export function karrasSigma(grid: NoiseGrid, i: number): number {
  const { sigmaMin, sigmaMax, rho, size } = grid;
  const a = sigmaMax ** (1 / rho);
  const b = sigmaMin ** (1 / rho);
  return (a + (i / (size - 1)) * (b - a)) ** rho;
}

/** All N levels of the grid, noisiest first. */
export function karrasGrid(grid: NoiseGrid): number[] {
  return Array.from({ length: grid.size }, (_, i) => karrasSigma(grid, i));
}

/** The fractional grid index of a noise level: the inverse of karrasSigma. */
export function gridIndexOf(grid: NoiseGrid, sigma: number): number {
  const { sigmaMin, sigmaMax, rho, size } = grid;
  const a = sigmaMax ** (1 / rho);
  const b = sigmaMin ** (1 / rho);
  return ((sigma ** (1 / rho) - a) / (b - a)) * (size - 1);
}

/** A plan from grid indices, checked: at least two, strictly increasing, inside the grid, ending at N-1. */
/**
 * `what` is the parameter the indices came from (ts, steps: errors name it, the CLI as its flag) or a description of
 * a stored plan ("the model's plan for 2 evaluations").
 */
export function planFromTs(grid: NoiseGrid, ts: readonly number[], what: { option: string } | string = { option: 'ts' }): Plan {
  const last = grid.size - 1;
  const shown = ts.join(',');
  const bad = (say: (name: string) => string): Error => (typeof what === 'string' ? new UsageError(say(what)) : new OptionError(what.option, say));
  if (ts.length < 2) {
    throw bad((flag) => `Expected at least two indices for ${flag} (one evaluation is 0,${last}) but received "${shown}"`);
  }
  for (let k = 0; k < ts.length; k++) {
    const t = ts[k];
    if (!Number.isInteger(t) || t < 0 || t > last) {
      throw bad((flag) => `Expected integers between 0 and ${last} for ${flag} but received "${shown}"`);
    }
    if (k > 0 && t <= ts[k - 1]) {
      throw bad((flag) => `Expected strictly increasing indices for ${flag} but received "${shown}"`);
    }
  }
  if (ts[ts.length - 1] !== last) {
    throw bad((flag) => `Expected ${flag} to end at ${last} (sigma_min, the grid's last index) but received "${shown}"`);
  }
  return { ts: [...ts], sigmas: ts.map((t) => karrasSigma(grid, t)) };
}

/** Parse `--ts 0,22,39` (or another option's grid indices: `--refine-ts`). */
export function parseTs(grid: NoiseGrid, text: string, option = 'ts'): Plan {
  const parts = text.split(',').map((s) => s.trim());
  if (parts.some((p) => !/^\d+$/.test(p))) {
    throw new OptionError(option, (flag) => `Expected comma-separated integers for ${flag} but received "${text}"`);
  }
  return planFromTs(grid, parts.map(Number), { option });
}

/**
 * k evaluations from grid index `start` (integer) to the end: indices start + round(j (N-1-start) / k), then N-1.
 */
export function evenPlan(grid: NoiseGrid, k: number, start = 0): Plan {
  const last = grid.size - 1;
  checkSteps(k, last - start);
  const ts = Array.from({ length: k }, (_, j) => start + Math.round((j * (last - start)) / k));
  ts.push(last);
  return planFromTs(grid, ts, { option: 'steps' });
}

/**
 * The plan for `--steps k` from the start of the grid: the model card's plan for k evaluations when it has one,
 * otherwise evenly spaced indices.
 */
export function planForSteps(grid: NoiseGrid, k: number, cardPlans: Readonly<Record<string, readonly number[]>> = {}): Plan {
  const fromCard = cardPlans[String(k)];
  if (fromCard) return planFromTs(grid, fromCard, `the model's plan for ${k} evaluations`);
  return evenPlan(grid, k);
}

/**
 * k evaluations starting at an arbitrary noise level (denoising an image whose noise is sigmaStart): the first at
 * sigmaStart itself, the next ones at grid levels spaced evenly between it and sigma_min.
 */
export function planFromLevel(grid: NoiseGrid, sigmaStart: number, k: number): Plan {
  if (!(sigmaStart > grid.sigmaMin && sigmaStart <= grid.sigmaMax)) {
    throw new UsageError(
      `Expected a noise level between ${grid.sigmaMin} and ${grid.sigmaMax} but received ${sigmaStart}`,
    );
  }
  const last = grid.size - 1;
  const u = gridIndexOf(grid, sigmaStart);
  const later: number[] = [];
  for (let j = 1; j < k; j++) later.push(Math.ceil(u + (j * (last - u)) / k));
  checkSteps(k, last - Math.ceil(u) + 1);
  return { sigmas: [sigmaStart, ...later.map((t) => karrasSigma(grid, t)), grid.sigmaMin] };
}

/** The start index for SDEdit-style guidance: strength 1 starts from pure noise (index 0), small strengths near the end. */
export function strengthToIndex(grid: NoiseGrid, strength: number): number {
  if (!(strength > 0 && strength <= 1)) {
    throw new OptionError('strength', (flag) => `Expected a number greater than 0 and at most 1 for ${flag} but received ${strength}`);
  }
  return Math.min(grid.size - 2, Math.round((1 - strength) * (grid.size - 1)));
}

function checkSteps(k: number, room: number): void {
  if (!Number.isInteger(k) || k < 1 || k > room) {
    throw new OptionError('steps', (flag) => `Expected an integer between 1 and ${room} for ${flag} but received ${k}`);
  }
}
