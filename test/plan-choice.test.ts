import { describe, expect, test } from 'vitest';
import { cheapestWithin, PLAN_MARGIN_DB, type MeasuredPlan } from '../src/sampler/plan-choice.js';

const plan = (k: number, objective: number, samples = 1): MeasuredPlan => ({ k, cost: k * samples, objective });

describe('cheapestWithin (the default plan of a task)', () => {
  test('the cheapest plan within 0.05 dB of the best wins', () => {
    // superres-x2 of the shipped model's search: 4 evaluations buy 0.12 dB over 2: the 4-evaluation plan stays.
    expect(cheapestWithin([plan(1, 32.9309), plan(2, 32.9499), plan(4, 33.0676)]).k).toBe(4);
    // inpaint: 1 evaluation is within 0.012 dB of 4: 1 is the default.
    expect(cheapestWithin([plan(1, 24.8888), plan(2, 24.8926), plan(4, 24.9006)]).k).toBe(1);
    // denoise: 2 is within the margin of the best (4), and 1 is not.
    expect(cheapestWithin([plan(1, 34.3566), plan(2, 34.6229), plan(4, 34.6713)]).k).toBe(2);
  });

  test('the margin is inclusive, and 0 picks the best (the cheaper on a tie)', () => {
    expect(PLAN_MARGIN_DB).toBe(0.05);
    expect(cheapestWithin([plan(1, 30.0), plan(4, 30.05)]).k).toBe(1);
    expect(cheapestWithin([plan(1, 30.0), plan(4, 30.0501)]).k).toBe(4);
    expect(cheapestWithin([plan(1, 30.0), plan(4, 30.04)], 0).k).toBe(4);
    expect(cheapestWithin([plan(2, 30.0), plan(4, 30.0)], 0).k).toBe(2);
  });

  test('cost counts samples: 1 evaluation x 4 samples is no cheaper than 4 evaluations', () => {
    const r = cheapestWithin([{ k: 1, cost: 4, objective: 30.0 }, { k: 4, cost: 4, objective: 30.02 }, { k: 2, cost: 2, objective: 29.9 }]);
    expect(r.k).toBe(4);
  });

  test('the result is always within the margin of the best and no eligible plan is cheaper', () => {
    let s = 7;
    const rnd = (): number => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let trial = 0; trial < 200; trial++) {
      const plans = Array.from({ length: 1 + Math.floor(rnd() * 6) }, (_, i) => ({ k: i + 1, cost: 1 + Math.floor(rnd() * 8), objective: 28 + rnd() * 0.3 }));
      const best = Math.max(...plans.map((p) => p.objective));
      const r = cheapestWithin(plans);
      expect(r.objective).toBeGreaterThanOrEqual(best - PLAN_MARGIN_DB - 1e-9);
      for (const p of plans) if (p.objective >= best - PLAN_MARGIN_DB) expect(p.cost).toBeGreaterThanOrEqual(r.cost);
    }
  });

  test('an empty table or a broken entry is refused', () => {
    expect(() => cheapestWithin([])).toThrow(RangeError);
    expect(() => cheapestWithin([plan(1, Number.NaN)])).toThrow(RangeError);
    expect(() => cheapestWithin([plan(1, 30)], -1)).toThrow(RangeError);
  });
});
