/**
 * Per-task defaults stored with the model (cm.task_plans) and the sampler's flags (--start, --eta, --samples),
 * end to end through the built CLI on the tiny test model with metadata added here.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, test } from 'vitest';
import { chooseSampling } from '../src/commands/common.js';
import { ModelError } from '../src/errors.js';
import { parseModelCard } from '../src/runtime/card.js';
import { readModelFile } from '../src/runtime/model.js';
import { gridIndexOf, karrasSigma } from '../src/sampler/schedule.js';
import { withMetadata } from './helpers/onnx.js';
import { CM_BIN, ROOT, TINY_MODEL } from './helpers/paths.js';

let dir: string;
const at = (name: string): string => join(dir, name);

function cm(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CM_BIN, ...args], { cwd: dir });
  return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

const PLANS = {
  inpaint: { '3': { ts: [20, 26, 30, 39], start: 'estimate', eta: 0 }, '1': { ts: [30, 39], start: 'estimate', eta: 0 } },
  'superres-x4': { '2': { ts: [24, 30, 39], start: 'estimate', eta: 0.5, samples: 2 } },
  denoise: { '1': { eta: 0 } },
};

// A stored "fast" naming an entry, a "best" of its own with views.
const PRESET_PLANS = {
  inpaint: { ...PLANS.inpaint, default: 3, fast: 1, best: { k: 2, ts: [30, 35, 39], start: 'estimate', eta: 0, samples: 3, views: true } },
  'superres-x4': PLANS['superres-x4'],
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-task-plans-'));
  const tiny = readFileSync(TINY_MODEL);
  writeFileSync(at('planned.onnx'), withMetadata(tiny, { 'cm.task_plans': JSON.stringify(PLANS) }));
  writeFileSync(at('bad-json.onnx'), withMetadata(tiny, { 'cm.task_plans': '{"inpaint": ' }));
  writeFileSync(at('bad-task.onnx'), withMetadata(tiny, { 'cm.task_plans': '{"paint":{"1":{"ts":[0,39]}}}' }));
  writeFileSync(at('bad-index.onnx'), withMetadata(tiny, { 'cm.task_plans': '{"inpaint":{"1":{"ts":[30,45]}}}' }));
  writeFileSync(at('defaulted.onnx'), withMetadata(tiny, { 'cm.task_plans': JSON.stringify({ inpaint: { ...PLANS.inpaint, default: 1 } }) }));
  writeFileSync(at('presets.onnx'), withMetadata(tiny, { 'cm.task_plans': JSON.stringify(PRESET_PLANS) }));
  writeFileSync(at('coloured.onnx'), withMetadata(tiny, { 'cm.task_plans': JSON.stringify({ colorize: { '1': { ts: [24, 39], start: 'estimate', eta: 0 } } }) }));
  const px = Buffer.alloc(64 * 64 * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 7 + (i >> 6)) % 256;
  await sharp(px, { raw: { width: 64, height: 64, channels: 3 } }).png().toFile(at('img.png'));
  const m = Buffer.alloc(64 * 64);
  for (let y = 20; y < 44; y++) for (let x = 16; x < 40; x++) m[y * 64 + x] = 255;
  await sharp(m, { raw: { width: 64, height: 64, channels: 1 } }).png().toFile(at('mask.png'));
});

const run = (...args: string[]) => cm([...args, '--device', 'cpu', '-q', '--seed', '3']);
const record = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop() as string);

describe('cm.task_plans', () => {
  test('--steps defaults to the task plan with the most evaluations, with its start and eta', async () => {
    const r = run('inpaint', 'img.png', '--mask', 'mask.png', '--model', 'planned.onnx', '-o', 'a.png', '--json');
    expect(r.status).toBe(0);
    expect(record(r.stdout)).toMatchObject({ evaluations: 3, ts: [20, 26, 30, 39], start: 'estimate', eta: 0, samples: 1 });
    // Every unmasked pixel is the input's.
    const [a, img] = await Promise.all(['a.png', 'img.png'].map((f) => sharp(at(f)).raw().toBuffer()));
    for (let p = 0; p < 64 * 64; p++) {
      const x = p % 64;
      const y = (p - x) / 64;
      if (x >= 16 && x < 40 && y >= 20 && y < 44) continue;
      for (let c = 0; c < 3; c++) expect(a[p * 3 + c]).toBe(img[p * 3 + c]);
    }
  });

  test('a task\'s "default" is what --steps defaults to', () => {
    const r = run('inpaint', 'img.png', '--mask', 'mask.png', '--model', 'defaulted.onnx', '-o', 'dflt.png', '--json');
    expect(r.status).toBe(0);
    expect(record(r.stdout)).toMatchObject({ evaluations: 1, ts: [30, 39], start: 'estimate', eta: 0 });
    expect(cm(['models', 'info', 'defaulted.onnx']).stdout).toMatch(/inpaint {6}1 \(default\): ts 30,39/);
  });

  test('--steps K picks the stored plan for K; flags override its knobs; a task without plans keeps the paper', () => {
    const one = run('inpaint', 'img.png', '--mask', 'mask.png', '--model', 'planned.onnx', '-o', 'b.png', '--json', '--steps', '1', '--eta', '0.3');
    expect(record(one.stdout)).toMatchObject({ evaluations: 1, ts: [30, 39], start: 'estimate', eta: 0.3 });
    const sr = run('superres', 'img.png', '-x', '4', '--model', 'planned.onnx', '-o', 'c.png', '--json');
    expect(record(sr.stdout)).toMatchObject({ evaluations: 2, ts: [24, 30, 39], start: 'estimate', eta: 0.5, samples: 2 });
    const col = run('colorize', 'img.png', '--model', 'planned.onnx', '-o', 'd.png', '--json');
    expect(record(col.stdout)).toMatchObject({ evaluations: 2, ts: [0, 22, 39], start: 'known', eta: 1, samples: 1 });
    const dn = run('denoise', 'img.png', '--noise', '20', '--model', 'planned.onnx', '-o', 'e.png', '--json');
    expect(record(dn.stdout)).toMatchObject({ evaluations: 1, eta: 0 });
  });

  test('colorize combines 8 samples of its stored plan (its chroma agreement needs several); --samples and --ts say otherwise', () => {
    const stored = run('colorize', 'img.png', '--model', 'coloured.onnx', '-o', 'h.png', '--json');
    expect(record(stored.stdout)).toMatchObject({ evaluations: 1, ts: [24, 39], start: 'estimate', eta: 0, samples: 8 });
    const one = run('colorize', 'img.png', '--model', 'coloured.onnx', '-o', 'i.png', '--json', '--samples', '1');
    expect(record(one.stdout)).toMatchObject({ ts: [24, 39], samples: 1 });
    const ts = run('colorize', 'img.png', '--model', 'coloured.onnx', '-o', 'j.png', '--json', '--ts', '24,39');
    expect(record(ts.stdout)).toMatchObject({ ts: [24, 39], eta: 1, samples: 1 });
    // cm models info counts those samples as the run does (1 step x 8 samples), --quality fast included.
    const fast = run('colorize', 'img.png', '--model', 'coloured.onnx', '-o', 'k.png', '--json', '--quality', 'fast');
    expect(record(fast.stdout)).toMatchObject({ evaluations: 1, samples: 8 });
    expect(cm(['models', 'info', 'coloured.onnx']).stdout).toMatch(/ {2}colorize {5}fast: 8 evaluations \(derived\); default: 8 evaluations;/);
  });

  test('--ts starting part-way starts from the estimate, from the start of the grid from the known data', () => {
    const late = run('inpaint', 'img.png', '--mask', 'mask.png', '--model', 'planned.onnx', '-o', 'f.png', '--json', '--ts', '26,39');
    expect(record(late.stdout)).toMatchObject({ ts: [26, 39], start: 'estimate', eta: 1 });
    const early = run('inpaint', 'img.png', '--mask', 'mask.png', '--model', 'planned.onnx', '-o', 'g.png', '--json', '--ts', '0,39');
    expect(record(early.stdout)).toMatchObject({ ts: [0, 39], start: 'known', eta: 1 });
  });

  test('--samples: the same seed gives the same bytes; another sample count another image', () => {
    const a = run('superres', 'img.png', '-x', '4', '--model', TINY_MODEL, '-o', 's1.png', '--samples', '3', '--ts', '20,30,39');
    const b = run('superres', 'img.png', '-x', '4', '--model', TINY_MODEL, '-o', 's2.png', '--samples', '3', '--ts', '20,30,39');
    const c = run('superres', 'img.png', '-x', '4', '--model', TINY_MODEL, '-o', 's3.png', '--samples', '1', '--ts', '20,30,39');
    expect([a.status, b.status, c.status]).toEqual([0, 0, 0]);
    expect(readFileSync(at('s1.png')).equals(readFileSync(at('s2.png')))).toBe(true);
    expect(readFileSync(at('s1.png')).equals(readFileSync(at('s3.png')))).toBe(false);
  });

  test.each([
    ['bad-json.onnx', /^cm: bad-json\.onnx: cm\.task_plans: not JSON/],
    ['bad-task.onnx', /^cm: bad-task\.onnx: cm\.task_plans: unknown task "paint" \(known: inpaint, /],
    ['bad-index.onnx', /^cm: bad-index\.onnx: cm\.task_plans: inpaint 1: ts \[30,45\] is not a plan of 1 evaluations on a grid of 40/],
  ])('a bad cm.task_plans in %s is a model error (exit 4, one line)', (model, message) => {
    const r = run('inpaint', 'img.png', '--mask', 'mask.png', '--model', model, '-o', 'never.png');
    expect(r.status).toBe(4);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  test.each([
    [['--eta', '1.5'], /^cm: Expected a number between 0 and 1 for --eta but received 1\.5\n$/],
    [['--samples', '0'], /^cm: Expected an integer between 1 and 64 for --samples but received 0\n$/],
    [['--start', 'middle'], /start/],
  ])('%j is a usage error', (flags, message) => {
    const r = run('colorize', 'img.png', '--model', TINY_MODEL, '-o', 'never.png', ...flags);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  test('coarse to fine refines at sigma 0.4 and 0.1, never noisier than the task\'s own plan starts', async () => {
    const file = await readModelFile(join(ROOT, 'models', 'default.onnx'));
    const { grid } = file.card;
    const refineOf = (task: 'inpaint' | 'colorize', ts: string) => chooseSampling({ ts } as never, file, task, 1).refine.sigmas;
    expect(refineOf('colorize', '19,39')).toEqual([0.4, 0.1, grid.sigmaMin].map((s) => karrasSigma(grid, Math.round(gridIndexOf(grid, s)))));
    expect(refineOf('inpaint', '38,39')).toEqual([karrasSigma(grid, 38), karrasSigma(grid, 39)]);
  });

  test('a stored refinement is used, never noisier than the plan starts; --refine-ts is exact', async () => {
    const file = await readModelFile(join(ROOT, 'models', 'default.onnx'));
    const { grid } = file.card;
    const card = { ...file.card, taskRefine: { inpaint: [35, 37, 39] } };
    const refineOf = (o: Record<string, unknown>) => chooseSampling(o as never, { card }, 'inpaint', 1).refine.sigmas;
    const at = (...ts: number[]) => ts.map((t) => karrasSigma(grid, t));
    expect(refineOf({ ts: '30,39' })).toEqual(at(35, 37, 39));
    expect(refineOf({ ts: '36,39' })).toEqual(at(36, 37, 39));
    expect(refineOf({ ts: '38,39' })).toEqual(at(38, 39));
    expect(refineOf({ ts: '38,39', refineTs: '20,30,39' })).toEqual(at(20, 30, 39));
    // colorize stores none: the rule
    expect(chooseSampling({ ts: '19,39' } as never, { card }, 'colorize', 1).refine.sigmas).toEqual(
      [0.4, 0.1, grid.sigmaMin].map((s) => karrasSigma(grid, Math.round(gridIndexOf(grid, s)))),
    );
    expect(() => refineOf({ refineTs: '39' })).toThrow(/--refine-ts/);
    expect(() => refineOf({ refineTs: '30,x' })).toThrow(/Expected comma-separated integers for --refine-ts/);
  });

  test('--refine-ts reaches the finer levels of a big hole; a bad one is a one-line usage error', async () => {
    const px = Buffer.alloc(192 * 160 * 3);
    for (let i = 0; i < px.length; i++) px[i] = (i * 13 + ((i / 576) | 0) * 5) % 256;
    await sharp(px, { raw: { width: 192, height: 160, channels: 3 } }).png().toFile(at('big.png'));
    const m = Buffer.alloc(192 * 160);
    for (let y = 30; y < 130; y++) for (let x = 40; x < 150; x++) m[y * 192 + x] = 255;
    await sharp(m, { raw: { width: 192, height: 160, channels: 1 } }).png().toFile(at('bigmask.png'));
    const out = (refine: string) => {
      const r = run('inpaint', 'big.png', '--mask', 'bigmask.png', '--model', TINY_MODEL, '--ts', '30,39', '--refine-ts', refine, '-o', `big-${refine}.png`, '--json');
      expect(r.status, r.stderr).toBe(0);
      expect(record(r.stdout).refine).toEqual(refine.split(',').map(Number));
      return sharp(at(`big-${refine}.png`)).raw().toBuffer();
    };
    const [a, b] = [await out('30,39'), await out('37,39')];
    expect(a.equals(b)).toBe(false);
    for (let p = 0; p < 192 * 160; p++) {
      if (m[p]) continue;
      for (let c = 0; c < 3; c++) expect(a[p * 3 + c]).toBe(b[p * 3 + c]);
    }
    // the record says which refinement ran: the rule when the model stores none (sigma 0.4 and 0.1, grid levels 27 and
    // 31, not noisier than the plan's 30); other tasks have none
    const plain = run('inpaint', 'big.png', '--mask', 'bigmask.png', '--model', TINY_MODEL, '--ts', '30,39', '-o', 'big-plain.png', '--json');
    expect(record(plain.stdout).refine).toEqual([30, 31, 39]);
    const colour = run('colorize', 'img.png', '--model', TINY_MODEL, '--steps', '1', '--samples', '1', '-o', 'refine-colour.png', '--json');
    expect(colour.status, colour.stderr).toBe(0);
    expect(record(colour.stdout)).not.toHaveProperty('refine');
    const bad = run('inpaint', 'big.png', '--mask', 'bigmask.png', '--model', TINY_MODEL, '--refine-ts', '37', '-o', 'never.png');
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toEqual([expect.stringMatching(/--refine-ts/)]);
  });

  test('cm models info shows the task plans', () => {
    const r = cm(['models', 'info', 'planned.onnx']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/task plans: {2}\(the defaults of --steps K per task\)\n {2}inpaint {6}1: ts 30,39 start estimate, eta 0; 3: ts 20,26,30,39 start estimate, eta 0\n/);
    expect(r.stdout).toMatch(/superres-x4 {2}2: ts 24,30,39 start estimate, eta 0\.5, 2 samples/);
    const plain = cm(['models', 'info', TINY_MODEL]);
    expect(plain.stdout).toMatch(/task plans: {2}none/);
    writeFileSync(at('refined.onnx'), withMetadata(readFileSync(TINY_MODEL), { 'cm.task_plans': JSON.stringify({ inpaint: { ...PLANS.inpaint, refine: [36, 39] } }) }));
    const refined = cm(['models', 'info', 'refined.onnx']);
    expect(refined.stdout).toMatch(/ {2}inpaint {6}1: ts 30,39 start estimate, eta 0; 3: ts 20,26,30,39 start estimate, eta 0; finer levels: ts 36,39\n/);
    expect(JSON.parse(cm(['models', 'info', 'refined.onnx', '--json']).stdout).task_refine).toEqual({ inpaint: [36, 39] });
  });
});

describe('--quality fast|default|best and --views', () => {
  const inpaint = (...extra: string[]) => run('inpaint', 'img.png', '--mask', 'mask.png', '--model', 'presets.onnx', '-o', 'q.png', '--force', '--json', ...extra);

  test('the stored presets: fast names an entry, best is its own plan with views; default is the task default', () => {
    expect(record(inpaint('--quality', 'fast').stdout)).toMatchObject({ quality: 'fast', evaluations: 1, ts: [30, 39], samples: 1, views: false });
    expect(record(inpaint('--quality', 'best').stdout)).toMatchObject({ quality: 'best', evaluations: 2, ts: [30, 35, 39], samples: 3, views: true });
    expect(record(inpaint('--quality', 'default').stdout)).toMatchObject({ quality: 'default', evaluations: 3, ts: [20, 26, 30, 39], views: false });
    expect(record(inpaint().stdout)).toMatchObject({ quality: 'default', evaluations: 3 });
    // --steps or --ts chose the plan: no preset
    expect(record(inpaint('--steps', '1').stdout)).toMatchObject({ quality: null, evaluations: 1 });
  });

  test('without stored presets: fast is the fewest evaluations with one sample, best the default with views', () => {
    const sr = (...extra: string[]) => run('superres', 'img.png', '-x', '4', '--model', 'presets.onnx', '-o', 's.png', '--force', '--json', ...extra);
    expect(record(sr('--quality', 'fast').stdout)).toMatchObject({ quality: 'fast', evaluations: 2, samples: 1, views: false });
    expect(record(sr('--quality', 'best').stdout)).toMatchObject({ quality: 'best', evaluations: 2, ts: [24, 30, 39], samples: 2, eta: 0.5, views: true });
  });

  test('--views and --samples override a preset; views change the result, and known pixels stay exact', async () => {
    const a = record(inpaint('--quality', 'best', '--no-views', '--samples', '1').stdout);
    expect(a).toMatchObject({ quality: 'best', views: false, samples: 1 });
    const plain = readFileSync(at('q.png'));
    expect(record(inpaint('--quality', 'best', '--samples', '1').stdout)).toMatchObject({ views: true });
    const viewed = readFileSync(at('q.png'));
    expect(viewed.equals(plain)).toBe(false);
    const [q, img] = await Promise.all([sharp(at('q.png')).raw().toBuffer(), sharp(at('img.png')).raw().toBuffer()]);
    for (let p = 0; p < 64 * 64; p++) {
      const x = p % 64;
      const y = (p - x) / 64;
      if (x >= 16 && x < 40 && y >= 20 && y < 44) continue;
      for (let c = 0; c < 3; c++) expect(q[p * 3 + c]).toBe(img[p * 3 + c]);
    }
  });

  test('--quality with --steps or --ts is a usage error; cm models info lists what each quality runs', () => {
    const r = inpaint('--quality', 'best', '--steps', '2');
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe("cm: --quality picks one of the model's stored plans: give it, or --steps, not both");
    const info = cm(['models', 'info', 'presets.onnx']);
    expect(info.stdout).toMatch(/ {2}inpaint {6}fast: 1 evaluation; default: 3 evaluations; best: 6 evaluations with views\n/);
    expect(info.stdout).toMatch(/ {2}superres-x4 {2}fast: 2 evaluations \(derived\); default: 4 evaluations; best: 4 evaluations with views \(derived\)\n/);
  });
});

describe('parseModelCard: cm.task_plans', () => {
  const base = { 'cm.format': '1', 'cm.resolution': '64', 'cm.channels': '3', 'cm.sigma_min': '0.002', 'cm.sigma_max': '80', 'cm.sigma_data': '0.5', 'cm.rho': '7', 'cm.grid': '40' };
  test.each([
    ['[1,2]', /expected an object/],
    ['{"inpaint":{"x":{"ts":[0,39]}}}', /"x" is not a number of evaluations/],
    ['{"inpaint":{"1":{"ts":[0,39],"start":"middle"}}}', /start "middle" is not one of known, estimate/],
    ['{"inpaint":{"1":{"ts":[0,39],"eta":-0.1}}}', /eta -0.1 is not a number between 0 and 1/],
    ['{"inpaint":{"1":{"ts":[0,39],"samples":100}}}', /samples 100 is not an integer between 1 and 64/],
    ['{"inpaint":{"2":{"ts":[0,39]}}}', /not a plan of 2 evaluations/],
    ['{"denoise":{"1":{"ts":[0,39]}}}', /denoise starts at the image's noise level and takes no ts/],
    ['{"inpaint":{"1":{"ts":[0,39]},"default":2}}', /inpaint: default 2 is not one of its numbers of evaluations \(1\)/],
    ['{"inpaint":{"1":{"ts":[0,39]},"fast":2}}', /inpaint fast: 2 is not one of its numbers of evaluations \(1\)/],
    ['{"inpaint":{"1":{"ts":[0,39],"views":"yes"}}}', /views "yes" is not true or false/],
    ['{"inpaint":{"best":{"k":3,"ts":[0,20,39]}}}', /inpaint best: ts \[0,20,39\] is not a plan of 3 evaluations/],
    ['{"denoise":{"best":{"samples":4}}}', /denoise best: k undefined is not a number of evaluations/],
    ['{"inpaint":{"1":{"ts":[0,39]},"refine":[37]}}', /inpaint: refine \[37\] is not a plan on a grid of 40/],
    ['{"inpaint":{"1":{"ts":[0,39]},"refine":[38,37,39]}}', /inpaint: refine \[38,37,39\] is not a plan/],
    ['{"inpaint":{"1":{"ts":[0,39]},"refine":[37,38]}}', /inpaint: refine \[37,38\] is not a plan/],
    ['{"inpaint":{"1":{"ts":[0,39]},"refine":"37,39"}}', /inpaint: refine "37,39" is not a plan/],
  ])('refuses %s', (raw, message) => {
    expect(() => parseModelCard({ ...base, 'cm.task_plans': raw }, 'm.onnx')).toThrow(ModelError);
    expect(() => parseModelCard({ ...base, 'cm.task_plans': raw }, 'm.onnx')).toThrow(message);
  });

  test('"refine": the plan of coarse to fine\'s finer levels, per task', () => {
    const card = parseModelCard({ ...base, 'cm.task_plans': '{"inpaint":{"1":{"ts":[30,39]},"refine":[35,37,39]},"colorize":{"1":{"ts":[20,39]}}}' }, 'm.onnx');
    expect(card.taskRefine).toEqual({ inpaint: [35, 37, 39] });
    expect(Object.keys(card.taskPlans.inpaint ?? {})).toEqual(['1']);
  });

  test('fills in the defaults: start known, eta 1, one sample', () => {
    const card = parseModelCard({ ...base, 'cm.task_plans': '{"stroke":{"2":{"ts":[16,20,39]}}}' }, 'm.onnx');
    expect(card.taskPlans.stroke).toEqual({ '2': { ts: [16, 20, 39], start: 'known', eta: 1, samples: 1 } });
  });
});
