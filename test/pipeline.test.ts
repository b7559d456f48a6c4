/**
 * The pipeline as a library (src/pipeline): an edit from in-memory images, without the CLI, files or a worker: a
 * denoiser written here, the tiny model's card; progress per step, abort, and errors that name their parameter.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { patchMeans } from '../src/editing/superres.js';
import { OptionError } from '../src/errors.js';
import type { Picture } from '../src/io/image.js';
import { edit, type CardedDenoiser } from '../src/pipeline/edit.js';
import { IMAGE_TASKS, PLAN_TASKS, TASK_NAMES } from '../src/pipeline/registry.js';
import { IMAGE_TASK_SPECS } from '../src/pipeline/tasks.js';
import { PLAN_TASKS as CARD_PLAN_TASKS, type ModelCard } from '../src/runtime/card.js';
import { readModelFile } from '../src/runtime/model.js';
import { Tensor } from '../src/tensor.js';
import { randomTensor } from './helpers/arbitrary.js';
import { TINY_MODEL } from './helpers/paths.js';

let card: ModelCard;
beforeAll(async () => {
  card = (await readModelFile(TINY_MODEL)).card;
});

/** A denoiser that shrinks x toward 0 by its noise level, counting its calls. */
function shrinker(calls: { n: number } = { n: 0 }): CardedDenoiser {
  return {
    card,
    views: true,
    async denoise(x, sigma) {
      calls.n++;
      return x.map((v) => Math.tanh(v / (1 + sigma[0])));
    },
  };
}

function picture(w: number, h: number, seed = 1): Picture {
  return { label: 'memory', rgb: randomTensor(seed, 1, 3, h, w), depth: 8, width: w, height: h };
}

/** A 1-channel 0/1 mask with a filled rectangle. */
function rectMask(w: number, h: number, x0: number, y0: number, x1: number, y1: number): Tensor {
  const m = new Tensor(1, 1, h, w);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) m.data[y * w + x] = 1;
  return m;
}

describe('registry', () => {
  test('the card reads the registry\'s plan keys, and every image task has a builder', () => {
    expect(CARD_PLAN_TASKS).toBe(PLAN_TASKS);
    for (const t of IMAGE_TASKS) {
      expect(TASK_NAMES).toContain(t);
      expect(IMAGE_TASK_SPECS[t].name).toBe(t);
    }
  });
});

describe('edit()', () => {
  test('inpaint from in-memory images keeps every unmasked pixel and reports every step', async () => {
    const pic = picture(80, 72);
    const mask = rectMask(80, 72, 20, 10, 50, 40);
    const steps: number[] = [];
    const r = await edit(shrinker(), { task: 'inpaint', inputs: { picture: pic, mask: { label: 'mask', mask } }, options: { steps: 2 }, seed: 5 }, {
      onStep: (e) => steps.push(e.step),
    });
    expect(r.image.w).toBe(80);
    let changed = 0;
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < 80 * 72; p++) {
        const i = c * 80 * 72 + p;
        if (mask.data[p] === 0) expect(r.image.data[i]).toBe(pic.rgb.data[i]);
        else if (r.image.data[i] !== pic.rgb.data[i]) changed++;
      }
    }
    expect(changed).toBeGreaterThan(0);
    expect(steps.length).toBeGreaterThanOrEqual(2);
    expect(steps.slice(0, 2)).toEqual([1, 2]);
    expect(r.sampling.quality).toBeNull();
  });

  test('the same seed gives the same result, another seed another', async () => {
    const pic = picture(40, 40, 2);
    const mask = rectMask(40, 40, 5, 5, 30, 30);
    const run = (seed: number) => edit(shrinker(), { task: 'inpaint', inputs: { picture: pic, mask: { label: 'm', mask } }, options: {}, seed });
    const [a, b, c] = await Promise.all([run(1), run(1), run(2)]);
    expect(Array.from(a.image.data)).toEqual(Array.from(b.image.data));
    expect(Array.from(a.image.data)).not.toEqual(Array.from(c.image.data));
  });

  test('superres keeps the input as the patch means of the output', async () => {
    const pic = picture(24, 16, 3);
    const r = await edit(shrinker(), { task: 'superres', inputs: { picture: pic }, options: { scale: 2 }, seed: 1 });
    expect([r.image.w, r.image.h]).toEqual([48, 32]);
    const means = patchMeans(r.image, 2);
    for (let i = 0; i < means.data.length; i++) expect(means.data[i]).toBeCloseTo(pic.rgb.data[i], 5);
  });

  test('an empty mask is a warning in the result, not on a console', async () => {
    const pic = picture(32, 32, 4);
    const r = await edit(shrinker(), { task: 'inpaint', inputs: { picture: pic, mask: { label: 'blank', mask: new Tensor(1, 1, 32, 32) } }, options: {}, seed: 1 });
    expect(r.warnings).toEqual(['blank: the mask is empty (no white pixels): nothing to fill']);
  });

  test('abort: the edit stops at the next model call and rejects with the signal\'s reason', async () => {
    const calls = { n: 0 };
    const controller = new AbortController();
    const reason = new Error('stop here');
    const pic = picture(300, 260, 5); // several tiles a step
    const run = edit(
      shrinker(calls),
      { task: 'inpaint', inputs: { picture: pic, mask: { label: 'm', mask: rectMask(300, 260, 0, 0, 300, 260) } }, options: { steps: 3, batch: 1 }, seed: 1 },
      { signal: controller.signal, onStep: () => controller.abort(reason) },
    );
    await expect(run).rejects.toBe(reason);
    const atAbort = calls.n;
    // Unaborted, the same edit makes three steps' calls: the aborted one stopped after the first step's.
    const full = { n: 0 };
    await edit(shrinker(full), { task: 'inpaint', inputs: { picture: pic, mask: { label: 'm', mask: rectMask(300, 260, 0, 0, 300, 260) } }, options: { steps: 3, batch: 1 }, seed: 1 });
    expect(atAbort).toBeLessThan(full.n);
    expect(atAbort).toBeGreaterThan(0);
  });

  test('an already aborted signal runs no model call', async () => {
    const calls = { n: 0 };
    const pic = picture(16, 16, 6);
    await expect(edit(shrinker(calls), { task: 'colorize', inputs: { picture: pic }, options: {}, seed: 1 }, { signal: AbortSignal.abort(new Error('no')) })).rejects.toThrow('no');
    expect(calls.n).toBe(0);
  });

  test.each([
    [{ tile: 7 }, 'tile', 'Expected a multiple of 8 between 8 and 4096 for --tile but received 7'],
    [{ scale: 3 }, 'scale', 'Expected one of 2, 4, 8 for --scale but received 3'],
    [{ quality: 'fast' as const, steps: 2 }, 'quality', "--quality picks one of the model's stored plans: give it, or --steps, not both"],
    [{ ts: '0,x' }, 'ts', 'Expected comma-separated integers for --ts but received "0,x"'],
  ])('bad options throw an OptionError naming the parameter: %j', async (options, option, message) => {
    const pic = picture(16, 16, 7);
    const err = await edit(shrinker(), { task: 'superres', inputs: { picture: pic }, options, seed: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OptionError);
    expect((err as OptionError).option).toBe(option);
    expect((err as OptionError).message).toBe(message);
    expect((err as OptionError).wording('scale of options')).toContain('scale of options');
  });

  test('inpaint without a mask, or with one of another size, says which', async () => {
    const pic = picture(16, 16, 8);
    await expect(edit(shrinker(), { task: 'inpaint', inputs: { picture: pic }, options: {}, seed: 1 })).rejects.toThrow('memory: inpaint needs a mask');
    const mask = { label: 'm.png', mask: rectMask(8, 8, 0, 0, 4, 4) };
    await expect(edit(shrinker(), { task: 'inpaint', inputs: { picture: pic, mask }, options: {}, seed: 1 })).rejects.toThrow(
      'm.png: 8x8 does not match image memory 16x16 (use --resize-mask)',
    );
  });
});
