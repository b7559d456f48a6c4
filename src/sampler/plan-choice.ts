/**
 * The default plan of a task from a table of measured plans (bench/plansearch.mjs): the cheapest within a margin of the
 * best, so that evaluations that buy less than the margin are not spent by default (`--quality best` keeps the slower
 * ones). Pure.
 */

/** The PSNR a default may give up for fewer evaluations: 0.05 dB. */
export const PLAN_MARGIN_DB = 0.05;

export interface MeasuredPlan {
  /** The plan's key in cm.task_plans (its number of evaluations per sample). */
  k: number;
  /** Network evaluations it costs per image (evaluations x samples). */
  cost: number;
  /** The task's objective, higher is better (PSNR in dB for the PSNR tasks). */
  objective: number;
}

/**
 * The cheapest plan whose objective is within `margin` of the best one's (on equal cost, the better objective; then
 * the fewer evaluations). Throws on an empty table or a non-finite entry.
 */
export function cheapestWithin(plans: readonly MeasuredPlan[], margin = PLAN_MARGIN_DB): MeasuredPlan {
  if (plans.length === 0) throw new RangeError('cheapestWithin: no plans');
  if (!(margin >= 0)) throw new RangeError(`cheapestWithin: margin ${margin} is not a non-negative number`);
  for (const p of plans) {
    if (!Number.isFinite(p.objective) || !Number.isFinite(p.cost)) throw new RangeError(`cheapestWithin: plan ${p.k} has objective ${p.objective}, cost ${p.cost}`);
  }
  const best = Math.max(...plans.map((p) => p.objective));
  // A hair of slack for the decimal rounding of stored tables (a plan exactly at the margin stays in).
  const eligible = plans.filter((p) => p.objective >= best - margin - 1e-9);
  return eligible.reduce((a, b) => (b.cost < a.cost || (b.cost === a.cost && (b.objective > a.objective || (b.objective === a.objective && b.k < a.k))) ? b : a));
}
