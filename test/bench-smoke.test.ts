/**
 * A smoke run of the benchmarks on the tiny model (the full runs are `npm run bench:quality` / `bench:speed` /
 * `bench:memory`, not CI). Quality and speed are skipped where the evaluation photos are absent.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ROOT, TINY_MODEL } from './helpers/paths.js';

const EVAL = process.env.CM_EVAL_DIR ?? join(ROOT, '..', 'shared', 'data', 'eval');
const TRAIN = process.env.CM_TRAIN_DIR ?? join(ROOT, '..', 'shared', 'data', 'train');
const dir = mkdtempSync(join(tmpdir(), 'cm-bench-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.runIf(existsSync(EVAL))('benchmarks, smoke run', () => {
  test('quality: every task measured with finite numbers next to its baselines, our SSIM agrees with ssim.js, one sheet per task', () => {
    const out = join(dir, 'q');
    const r = spawnSync(process.execPath, ['bench/quality.mjs', '--smoke', '--model', TINY_MODEL, '--out', out], { cwd: ROOT, timeout: 300_000 });
    expect(r.status, r.stderr.toString()).toBe(0);
    const q = JSON.parse(readFileSync(join(out, 'quality.json'), 'utf8'));
    const main = Object.values(q.main) as { methods: Record<string, Record<string, number>> }[];
    expect(main).toHaveLength(5);
    for (const entry of main) {
      for (const run of ['cm (defaults)', 'cm, paper sampler']) {
        expect(entry.methods).toHaveProperty([run]);
        for (const v of Object.values(entry.methods[run])) expect(Number.isFinite(v)).toBe(true);
      }
    }
    // Sharpness is reported next to every PSNR.
    for (const entry of main) for (const m of Object.values(entry.methods)) if ('psnr' in m) expect(Number.isFinite(m.sharp)).toBe(true);
    expect(readFileSync(join(out, 'quality.md'), 'utf8')).toMatch(/### Targets/);
    expect(Object.keys(q.fullRes)).toHaveLength(2);
    expect(q.meta.ssimCheck.absDiff).toBeLessThan(1e-6);
    expect(readdirSync(out).filter((f) => f.startsWith('sheet-') && !f.startsWith('sheet-full-') && f.endsWith('.png'))).toHaveLength(5);
    expect(readdirSync(out).filter((f) => f.startsWith('sheet-full-'))).toHaveLength(2); // a tiled edit at 100% zoom per full-resolution variant
  }, 300_000);

  test('quality --only and --compare: one family, another build\'s row (here the same build: the same numbers), blockiness for superres', () => {
    const out = join(dir, 'q-only');
    const args = ['bench/quality.mjs', '--smoke', '--no-full', '--only', 'superres', '--compare', join(ROOT, 'bin', 'cm.js'), '--compare-label', 'again', '--model', TINY_MODEL, '--out', out];
    const r = spawnSync(process.execPath, args, { cwd: ROOT, timeout: 300_000 });
    expect(r.status, r.stderr.toString()).toBe(0);
    const q = JSON.parse(readFileSync(join(out, 'quality.json'), 'utf8'));
    expect(Object.keys(q.main)).toEqual(['superres x4 / Kodak24 crops']);
    const m = q.main['superres x4 / Kodak24 crops'].methods;
    expect(m['cm (defaults), again']).toEqual(m['cm (defaults)']);
    for (const name of ['cm (defaults)', 'Lanczos (PIL)', "Lanczos + patch means (cm's start)", "Lanczos + patch means per patch (cm's old start)"]) {
      expect(Number.isFinite(m[name].blockiness), name).toBe(true);
    }
    // the per-patch correction shows the patch grid, the smooth one far less
    expect(m["Lanczos + patch means per patch (cm's old start)"].blockiness).toBeGreaterThan(m["Lanczos + patch means (cm's start)"].blockiness);
    const bad = spawnSync(process.execPath, ['bench/quality.mjs', '--smoke', '--only', 'painting', '--model', TINY_MODEL, '--out', out], { cwd: ROOT });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr.toString()).toMatch(/--only painting: no variant/);
  }, 300_000);

  test('projection: the smooth superres projection timed against the orthogonal one, both keeping the means', () => {
    const out = join(dir, 'p');
    const r = spawnSync(process.execPath, ['bench/projection.mjs', '--smoke', '--out', out], { cwd: ROOT, timeout: 300_000 });
    expect(r.status, r.stderr.toString()).toBe(0);
    const { rows } = JSON.parse(readFileSync(join(out, 'projection.json'), 'utf8'));
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      expect(row.ratio).toBeGreaterThan(0);
      expect(row.meanErrorSmooth).toBeLessThan(1e-6);
      expect(row.meanErrorOrthogonal).toBeLessThan(1e-6);
    }
  }, 300_000);

  test('speed: evaluation times, start-up, full-resolution cases and seconds per megapixel are measured', () => {
    const out = join(dir, 's');
    const r = spawnSync(process.execPath, ['bench/speed.mjs', '--smoke', '--no-torch', '--model', TINY_MODEL, '--out', out], { cwd: ROOT, timeout: 300_000 });
    expect(r.status, r.stderr.toString()).toBe(0);
    const s = JSON.parse(readFileSync(join(out, 'speed.json'), 'utf8'));
    expect(s.ortMs['1']['1']).toBeGreaterThan(0);
    expect(s.fullres.superres.output).toBe('512x512');
    expect(s.fullres.superres.ratio).toBeGreaterThan(0);
    expect(s.fullres['inpaint30-jpg'].wallSeconds).toBeGreaterThan(0);
    expect(Object.keys(s.perMP).length).toBeGreaterThan(0);
    expect(s.startup.versionSeconds).toBeGreaterThan(0);
    // the inference worker against the model in the CLI's process, both measured in the same run
    expect(s.worker.perCall['1'].workerMs).toBeGreaterThan(0);
    expect(s.worker.perCall['1'].inlineMs).toBeGreaterThan(0);
    expect(s.worker.cli.ratio).toBeGreaterThan(0);
  }, 300_000);
});

describe('the memory benchmark, smoke run', () => {
  test("every task's peak is measured at three sizes and is under cm's estimate (the script exits 1 otherwise)", () => {
    const out = join(dir, 'm');
    // inpaint's case fills a quarter of the image by patches (--fill auto): up to 7 minutes on a busy 2-core machine
    const r = spawnSync(process.execPath, ['bench/memory.mjs', '--smoke', '--model', TINY_MODEL, '--out', out], { cwd: ROOT, timeout: 600_000 });
    expect(r.status, r.stderr.toString()).toBe(0);
    const m = JSON.parse(readFileSync(join(out, 'memory.json'), 'utf8')) as { cases: { task: string; batch: number | null; memory: { cli: number; worker: number; total: number }; estimate: number }[] };
    for (const task of ['colorize', 'inpaint', 'superres', 'denoise', 'stroke']) {
      expect(m.cases.filter((c) => c.task === task && c.batch === null).length).toBeGreaterThanOrEqual(3);
    }
    for (const c of m.cases) {
      expect(c.memory.cli).toBeGreaterThan(0);
      expect(c.memory.worker).toBeGreaterThan(0);
      expect(c.estimate).toBeGreaterThanOrEqual(c.memory.total);
    }
  }, 600_000);
});

describe.runIf(existsSync(EVAL))('the inpainting benchmarks, smoke run', () => {
  test('inpaint: every method with a finite PSNR and texture in the hole, the harmonic fill a smudge, a contact sheet', () => {
    const out = join(dir, 'i');
    const r = spawnSync(process.execPath, ['bench/inpaint.mjs', '--smoke', '--model', TINY_MODEL, '--out', out], { cwd: ROOT, timeout: 300_000 });
    expect(r.status, r.stderr.toString()).toBe(0);
    const q = JSON.parse(readFileSync(join(out, 'inpaint.json'), 'utf8')) as { rows: { family: string; methods: Record<string, { psnr: number; textureMean: number; textureMedian: number }> }[] };
    expect(q.rows.map((row) => row.family)).toEqual(['object64', 'object64']);
    for (const row of q.rows) {
      for (const m of ['harmonic fill', 'cm --fill smooth', 'cm --fill patch', 'cm --fill auto']) {
        expect(Number.isFinite(row.methods[m].psnr), m).toBe(true);
        expect(Number.isFinite(row.methods[m].textureMedian), m).toBe(true);
      }
      expect(row.methods['harmonic fill'].textureMedian).toBeLessThan(0.1);
    }
    expect(readdirSync(out).filter((f) => /^inpaint-eval-\d+\.png$/.test(f)).length).toBeGreaterThan(0);
  }, 300_000);

  test('patchfill: run times for every hole size and the line through them', () => {
    const out = join(dir, 'pf');
    const r = spawnSync(process.execPath, ['bench/patchfill.mjs', '--smoke', '--out', join(out, 'patchfill.md')], { cwd: ROOT, timeout: 300_000 });
    expect(r.status, r.stderr.toString()).toBe(0);
    const p = JSON.parse(readFileSync(join(out, 'patchfill.json'), 'utf8')) as { growth: { ms: number }[]; fit: { b: number } };
    expect(p.growth).toHaveLength(3);
    for (const g of p.growth) expect(g.ms).toBeGreaterThan(0);
    expect(Number.isFinite(p.fit.b)).toBe(true);
  }, 300_000);
});

describe.runIf(existsSync(TRAIN))('the refinement search, smoke run', () => {
  type Row = { name: string; k: number | null; refine: number[] | null; psnr: number; kept: number; families: Record<string, { psnr: number; texture: number }> };
  const search = (margin: string) => {
    const out = join(dir, `rs-${margin}`);
    // the shipped model: the search varies the refinement under its stored inpaint plans
    const r = spawnSync(process.execPath, ['bench/refinesearch.mjs', '--smoke', '--margin', margin, '--out', out], { cwd: ROOT, timeout: 300_000 });
    expect(r.status, r.stderr.toString()).toBe(0);
    return JSON.parse(readFileSync(join(out, 'refinesearch.json'), 'utf8')) as { fillAlone: Row; rows: Row[]; chosen: { k: number; refine: number[] } | null };
  };

  test('the refinement that keeps the most of the fill\'s texture within the margin of the best PSNR', () => {
    const exact = search('0');
    expect(exact.fillAlone.kept).toBe(1);
    const [cli, ...refined] = exact.rows;
    expect(cli.refine).toBeNull();
    expect(refined.map((r) => r.refine)).toEqual([[36, 39], [38, 39]]);
    for (const r of exact.rows) {
      expect(Number.isFinite(r.psnr)).toBe(true);
      expect(r.kept).toBeCloseTo(r.families.object64.texture / exact.fillAlone.families.object64.texture, 2);
    }
    const sharpest = refined.reduce((a, b) => (b.psnr > a.psnr ? b : a));
    expect(exact.chosen).toEqual({ k: sharpest.k, refine: sharpest.refine });
    const most = refined.reduce((a, b) => (b.kept > a.kept ? b : a));
    expect(search('100').chosen).toEqual({ k: most.k, refine: most.refine });
  }, 300_000);
});
