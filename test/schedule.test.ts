import { describe, expect, test } from 'vitest';
import { UsageError } from '../src/errors.js';
import {
  evenPlan,
  gridIndexOf,
  karrasGrid,
  karrasSigma,
  parseTs,
  planForSteps,
  planFromLevel,
  strengthToIndex,
  type NoiseGrid,
} from '../src/sampler/schedule.js';

const CD: NoiseGrid = { sigmaMin: 0.002, sigmaMax: 80, rho: 7, size: 40 };

describe('Karras grid', () => {
  test('matches the check values of ALGORITHMS.md for N = 40', () => {
    const s = karrasGrid(CD);
    expect(s).toHaveLength(40);
    expect(s[0]).toBeCloseTo(80, 10);
    expect(s[16]).toBeCloseTo(5.38, 2);
    expect(s[17]).toBeCloseTo(4.3656, 4);
    expect(s[18]).toBeCloseTo(3.5197, 4);
    expect(s[20]).toBeCloseTo(2.2404, 4);
    expect(s[22]).toBeCloseTo(1.3824, 4);
    expect(s[39]).toBeCloseTo(0.002, 12);
  });

  test('is strictly decreasing and gridIndexOf inverts it', () => {
    const s = karrasGrid({ ...CD, size: 201 });
    for (let i = 1; i < s.length; i++) expect(s[i]).toBeLessThan(s[i - 1]);
    for (const i of [0, 3, 106, 200]) expect(gridIndexOf({ ...CD, size: 201 }, s[i])).toBeCloseTo(i, 8);
    expect(karrasSigma(CD, 19.5)).toBeLessThan(karrasSigma(CD, 19));
  });
});

describe('--ts', () => {
  test('parses the published plans into sigmas', () => {
    const plan = parseTs(CD, '0,22,39');
    expect(plan.ts).toEqual([0, 22, 39]);
    expect(plan.sigmas[0]).toBeCloseTo(80, 10);
    expect(plan.sigmas[1]).toBeCloseTo(1.3824, 4);
    expect(plan.sigmas[2]).toBeCloseTo(0.002, 12);
    expect(parseTs(CD, ' 16, 20 ,39').ts).toEqual([16, 20, 39]);
  });

  test.each([
    ['0,22,22,39', /strictly increasing/],
    ['22,0,39', /strictly increasing/],
    ['0,40', /between 0 and 39/],
    ['0,22', /end at 39/],
    ['39', /at least two/],
    ['0,a,39', /comma-separated integers/],
    ['0,1.5,39', /comma-separated integers/],
    ['', /comma-separated integers/],
    ['-1,39', /comma-separated integers/],
  ])('rejects %j', (text, message) => {
    expect(() => parseTs(CD, text)).toThrow(UsageError);
    expect(() => parseTs(CD, text)).toThrow(message);
  });
});

describe('--steps', () => {
  test("uses the model card's plan when it has one", () => {
    expect(planForSteps(CD, 2, { '2': [0, 17, 39] }).ts).toEqual([0, 17, 39]);
  });

  test('otherwise spaces k evaluations evenly, ending at N-1', () => {
    expect(planForSteps(CD, 1).ts).toEqual([0, 39]);
    expect(planForSteps(CD, 3).ts).toEqual([0, 13, 26, 39]);
    expect(evenPlan(CD, 2, 16).ts).toEqual([16, 28, 39]);
  });

  test.each([0, -1, 1.5, 40])('rejects %d evaluations', (k) => {
    expect(() => planForSteps(CD, k)).toThrow(/for --steps/);
  });
});

describe('plans that start part-way', () => {
  test('strength 1 starts from pure noise; the default 0.6 starts at sigma 5.38', () => {
    expect(strengthToIndex(CD, 1)).toBe(0);
    expect(strengthToIndex(CD, 0.6)).toBe(16);
    expect(strengthToIndex(CD, 0.01)).toBe(38);
    expect(() => strengthToIndex(CD, 0)).toThrow(/--strength/);
    expect(() => strengthToIndex(CD, 1.5)).toThrow(/--strength/);
  });

  test('denoising evaluates first at the noise level itself', () => {
    const one = planFromLevel(CD, 25 / 127.5, 1);
    expect(one.sigmas).toEqual([25 / 127.5, 0.002]);
    const three = planFromLevel(CD, 0.5, 3);
    expect(three.sigmas).toHaveLength(4);
    for (let i = 1; i < 4; i++) expect(three.sigmas[i]).toBeLessThan(three.sigmas[i - 1]);
    expect(() => planFromLevel(CD, 100, 1)).toThrow(/noise level/);
  });
});
