/**
 * int8 variants (runtime/precision.ts): the choice (CPU flags, tolerance, provenance), the fixtures of
 * fixtures/make-int8.py (one within the tolerance, one that misses it and is not used), the shipped default's
 * variant against its float model on fixed inputs, and the CLI end to end.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { UsageError } from '../src/errors.js';
import { cpuInt8Flags, findInt8Variant, loadModel, readModelFile } from '../src/runtime/model.js';
import { choosePrecision, INT8_TOLERANCE, int8CpuFlags, int8PathOf, variantProblem, type Int8Variant } from '../src/runtime/precision.js';
import { Tensor } from '../src/tensor.js';
import { withMetadata } from './helpers/onnx.js';
import { CM_BIN, fixture, ROOT, TINY_MODEL } from './helpers/paths.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** tiny-random.onnx as m.onnx with the given fixture beside it as m-int8.onnx. */
function pair(variant: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'cm-int8-'));
  dirs.push(dir);
  copyFileSync(TINY_MODEL, join(dir, 'm.onnx'));
  copyFileSync(fixture(`int8/${variant}`), join(dir, 'm-int8.onnx'));
  return join(dir, 'm.onnx');
}

/** A smooth image in [-1, 1] plus noise at each sigma (deterministic), one batch item per sigma. */
function noisyInputs(side: number, sigmas: number[]): { x: Tensor; sigma: Float32Array } {
  const n = sigmas.length;
  const x = new Tensor(n, 3, side, side);
  let s = 987654321;
  const gauss = (): number => {
    s = (s * 1103515245 + 12345) >>> 0;
    const u = (s + 1) / 2 ** 32;
    s = (s * 1103515245 + 12345) >>> 0;
    const v = (s + 1) / 2 ** 32;
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  const plane = side * side;
  for (let b = 0; b < n; b++) {
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < plane; i++) {
        const yy = Math.floor(i / side);
        const xx = i % side;
        const clean = 0.8 * Math.sin(xx / 5 + c) * Math.cos(yy / 7 - c) + (xx > side / 2 ? 0.2 : -0.2);
        x.data[(b * 3 + c) * plane + i] = clean + sigmas[b] * gauss();
      }
    }
  }
  return { x, sigma: Float32Array.from(sigmas) };
}

/** Largest and mean absolute difference in grey levels (0-255) of the clamped outputs. */
function greyDiff(a: Float32Array, b: Float32Array): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(Math.max(-1, Math.min(1, a[i])) - Math.max(-1, Math.min(1, b[i]))) * 127.5;
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

async function outputs(path: string, precision: 'int8' | 'float', x: Tensor, sigma: Float32Array): Promise<Float32Array> {
  const model = await loadModel(await readModelFile(path), { device: 'cpu', threads: 1, inline: true, precision });
  try {
    expect(model.precision.used).toBe(precision);
    return (await model.denoise(x, sigma)).data;
  } finally {
    await model.dispose();
  }
}

describe('CPU flags and the choice', () => {
  test('int8 flags are read from the first processor of /proc/cpuinfo', () => {
    const text = 'processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni amx_tile amx_int8\n\nprocessor\t: 1\nflags\t\t: fpu\n';
    expect(int8CpuFlags(text)).toEqual(['amx_int8', 'avx512_vnni']);
    expect(int8CpuFlags('flags : fpu sse avx2 avx512f avx512vnni_like\n')).toEqual([]);
    expect(int8CpuFlags('')).toEqual([]);
    expect(int8CpuFlags('flags\t: avx_vnni\n')).toEqual(['avx_vnni']);
  });

  const good: Int8Variant = { path: 'm-int8.onnx', precision: 'int8', matchesSource: true, check: { max: 20, mean: 0.7 } };
  test('auto: int8 only with a usable variant and an int8 CPU flag', () => {
    expect(choosePrecision('auto', good, ['avx512_vnni'])).toMatchObject({ precision: 'int8', path: 'm-int8.onnx' });
    expect(choosePrecision('auto', good, [])).toMatchObject({ precision: 'float', reason: expect.stringContaining('no VNNI or AMX') });
    expect(choosePrecision('auto', undefined, ['amx_int8'])).toMatchObject({ precision: 'float', reason: 'no int8 variant beside the model' });
    expect(choosePrecision('float', good, ['amx_int8']).precision).toBe('float');
  });

  test('a variant over the tolerance, made from another file, or unchecked is not used', () => {
    const over = { ...good, check: { max: INT8_TOLERANCE.max + 1, mean: 0.5 } };
    const overMean = { ...good, check: { max: 1, mean: INT8_TOLERANCE.mean + 0.01 } };
    const stale = { ...good, matchesSource: false };
    const unchecked = { ...good, check: undefined };
    const notInt8 = { ...good, precision: 'fp16' };
    for (const v of [over, overMean, stale, unchecked, notInt8]) {
      expect(variantProblem(v)).toBeDefined();
      expect(choosePrecision('auto', v, ['amx_int8']).precision).toBe('float');
      const asked = choosePrecision('int8', v, ['amx_int8']);
      expect(asked.precision).toBe('float');
      expect(asked.error).toBeDefined();
    }
    expect(variantProblem(good)).toBeUndefined();
    // Asked for explicitly, a usable variant runs even where the CPU has no int8 flag.
    expect(choosePrecision('int8', good, [])).toMatchObject({ precision: 'int8', path: 'm-int8.onnx' });
  });

  test('the variant file name', () => {
    expect(int8PathOf('/a/models/default.onnx')).toBe('/a/models/default-int8.onnx');
    expect(int8PathOf('x')).toBe('x-int8.onnx');
  });
});

describe('fixtures (fixtures/make-int8.py)', () => {
  const SIGMAS = [0.01, 0.09, 0.47, 1.38, 3.5];

  test('a variant within the tolerance: found, runs with --precision int8, its outputs within tolerance of float', async () => {
    const path = pair('tiny-random-int8-ok.onnx');
    const v = await findInt8Variant(path);
    expect(v).toMatchObject({ precision: 'int8', matchesSource: true });
    expect(variantProblem(v!)).toBeUndefined();
    const { x, sigma } = noisyInputs(32, SIGMAS);
    const f = await outputs(path, 'float', x, sigma);
    const q = await outputs(path, 'int8', x, sigma);
    const d = greyDiff(q, f);
    expect(d.max).toBeGreaterThan(0); // it really ran the int8 file
    expect(d.max).toBeLessThanOrEqual(INT8_TOLERANCE.max);
    expect(d.mean).toBeLessThanOrEqual(INT8_TOLERANCE.mean);
    const auto = await loadModel(await readModelFile(path), { device: 'cpu', threads: 1, inline: true });
    expect(auto.precision.used).toBe(cpuInt8Flags().length > 0 ? 'int8' : 'float');
    await auto.dispose();
  });

  test('a variant that misses the tolerance is not used (auto: float; --precision int8: refused)', async () => {
    const path = pair('tiny-random-int8-off.onnx');
    const v = await findInt8Variant(path);
    expect(v?.check?.mean).toBeGreaterThan(INT8_TOLERANCE.mean);
    const model = await loadModel(await readModelFile(path), { device: 'cpu', threads: 1, inline: true });
    expect(model.precision).toMatchObject({ used: 'float', reason: expect.stringContaining('over the tolerance') });
    await model.dispose();
    await expect(loadModel(await readModelFile(path), { device: 'cpu', threads: 1, inline: true, precision: 'int8' })).rejects.toThrow(UsageError);
  });

  test('a variant given as the model itself runs as it is and says so', async () => {
    const model = await loadModel(await readModelFile(fixture('int8/tiny-random-int8-ok.onnx')), { device: 'cpu', threads: 1, inline: true });
    expect(model.precision).toMatchObject({ used: 'int8', reason: expect.stringContaining('itself is an int8 variant') });
    await model.dispose();
  });

  test('a variant made from another version of the model is not used', async () => {
    const path = pair('tiny-random-int8-ok.onnx');
    writeFileSync(path, withMetadata(readFileSync(path), { 'cm.note': 'retrained' }));
    const model = await loadModel(await readModelFile(path), { device: 'cpu', threads: 1, inline: true });
    expect(model.precision).toMatchObject({ used: 'float', reason: expect.stringContaining('another version') });
    await model.dispose();
  });
});

const DEFAULT = join(ROOT, 'models', 'default.onnx');
describe.runIf(existsSync(int8PathOf(DEFAULT)))('the shipped default model', () => {
  test('its int8 variant is made from it, records its check, and is within the tolerance on fixed inputs', async () => {
    const v = await findInt8Variant(DEFAULT);
    expect(v).toMatchObject({ precision: 'int8', matchesSource: true });
    expect(variantProblem(v!)).toBeUndefined();
    const sigmas = [0.01, 0.05, 0.2, 0.5, 1.4];
    const { x, sigma } = noisyInputs(64, sigmas);
    const f = await outputs(DEFAULT, 'float', x, sigma);
    const q = await outputs(DEFAULT, 'int8', x, sigma);
    const per = 3 * 64 * 64;
    for (let b = 0; b < sigmas.length; b++) {
      const d = greyDiff(q.subarray(b * per, (b + 1) * per), f.subarray(b * per, (b + 1) * per));
      expect(d.max, `sigma ${sigmas[b]}`).toBeLessThanOrEqual(INT8_TOLERANCE.max);
      expect(d.mean, `sigma ${sigmas[b]}`).toBeLessThanOrEqual(INT8_TOLERANCE.mean);
    }
  });

  test('cm superres end to end: --debug names the precision; int8 and float outputs close; --precision int8 without a variant refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-int8-cli-'));
    dirs.push(dir);
    const run = (precision: string, out: string) =>
      spawnSync(process.execPath, [CM_BIN, 'superres', '-x', '2', fixture('demo.png'), '-o', join(dir, out), '--precision', precision, '--debug', '--seed', '1'], { encoding: 'utf8' });
    const q = run('int8', 'q.png');
    expect(q.status, q.stderr).toBe(0);
    expect(q.stderr).toMatch(/precision int8 \(--precision int8\)/);
    const f = run('float', 'f.png');
    expect(f.status, f.stderr).toBe(0);
    expect(f.stderr).toMatch(/precision float/);
    const a = run('auto', 'a.png');
    expect(a.stderr).toMatch(cpuInt8Flags().length > 0 ? /precision int8 \(this CPU has / : /precision float \(this CPU has no VNNI or AMX/);
    expect(readFileSync(join(dir, 'q.png')).equals(readFileSync(join(dir, 'f.png')))).toBe(false);
    const bad = spawnSync(process.execPath, [CM_BIN, 'superres', '-x', '2', fixture('demo.png'), '-o', join(dir, 'bad.png'), '--precision', 'int8', '-m', TINY_MODEL], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toContain('tiny-random.onnx: --precision int8: no int8 variant beside the model');
    expect(existsSync(join(dir, 'bad.png'))).toBe(false);
  });
});
