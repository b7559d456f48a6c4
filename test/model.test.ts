/**
 * The model contract: metadata reading, card checks, and the tiny test model run by onnxruntime-node against the
 * PyTorch reference outputs that its export script wrote.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { ModelError } from '../src/errors.js';
import { parseModelCard } from '../src/runtime/card.js';
import { loadModel, readModelFile } from '../src/runtime/model.js';
import { OnnxParseError, readOnnxMetadata } from '../src/runtime/onnx-metadata.js';
import { Tensor } from '../src/tensor.js';
import { TINY_MODEL, TINY_REF } from './helpers/paths.js';

const GOOD: Record<string, string> = {
  'cm.format': '1',
  'cm.resolution': '64',
  'cm.channels': '3',
  'cm.sigma_min': '0.002',
  'cm.sigma_max': '80',
  'cm.sigma_data': '0.5',
  'cm.rho': '7',
  'cm.grid': '40',
  'cm.plans': '{"1":[0,39],"2":[0,22,39]}',
  'cm.num_classes': '0',
  'cm.name': 'test',
};

const x0 = (): Tensor => new Tensor(16, 3, 64, 64).map((_, i) => Math.cos(i * 0.01));
const s0 = (): Float32Array => new Float32Array(16).fill(0.5);

function f32(b64: string): Float32Array {
  const b = Buffer.from(b64, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

describe('ONNX metadata', () => {
  test('reads every contract key of the tiny model', () => {
    const props = readOnnxMetadata(readFileSync(TINY_MODEL));
    for (const key of Object.keys(GOOD)) expect(props).toHaveProperty([key]);
    expect(props['cm.format']).toBe('1');
    expect(JSON.parse(props['cm.plans'])['2']).toEqual([0, 22, 39]);
  });

  test('reads only the top-level field headers, never the weights', () => {
    const bytes = readFileSync(TINY_MODEL);
    let read = 0;
    const props = readOnnxMetadata({
      size: bytes.length,
      read: (pos, len) => {
        read += len;
        return bytes.subarray(pos, pos + len);
      },
    });
    expect(props).toEqual(readOnnxMetadata(bytes));
    expect(read).toBeLessThan(bytes.length / 50);
  });

  test('refuses bytes that are not an ONNX model', () => {
    expect(() => readOnnxMetadata(new TextEncoder().encode('hello, this is not a model'))).toThrow(OnnxParseError);
    expect(() => readOnnxMetadata(new Uint8Array([0x08, 0x07]))).toThrow(/no graph/);
    const truncated = readFileSync(TINY_MODEL).subarray(0, 5000);
    expect(() => readOnnxMetadata(truncated)).toThrow(OnnxParseError);
  });
});

describe('model card', () => {
  test('parses a good card', () => {
    const card = parseModelCard(GOOD, 'm.onnx');
    expect(card.resolution).toBe(64);
    expect(card.grid).toEqual({ sigmaMin: 0.002, sigmaMax: 80, rho: 7, size: 40 });
    expect(card.plans['2']).toEqual([0, 22, 39]);
  });

  test.each([
    [{ 'cm.format': undefined }, /not a cm model/],
    [{ 'cm.format': '2' }, /unsupported cm.format/],
    [{ 'cm.resolution': 'abc' }, /expected an integer from 1 to 4096 for cm.resolution but found "abc"/],
    [{ 'cm.resolution': '100000' }, /expected an integer from 1 to 4096 for cm.resolution but found "100000"/],
    [{ 'cm.resolution': '0' }, /expected an integer from 1 to 4096 for cm.resolution/],
    [{ 'cm.grid': '1000000000' }, /expected an integer from 2 to 10000 for cm.grid/],
    [{ 'cm.num_classes': '1e12' }, /expected an integer from 0 to 1000000 for cm.num_classes/],
    [{ 'cm.resolution': undefined }, /missing cm.resolution/],
    [{ 'cm.channels': '1' }, /cm.channels/],
    [{ 'cm.sigma_max': '0.001' }, /not above cm.sigma_min/],
    [{ 'cm.plans': '{"2":[0,39]}' }, /not a plan of 2 evaluations/],
    [{ 'cm.plans': '{"1":[0,38]}' }, /not a plan/],
    [{ 'cm.plans': 'nope' }, /not JSON/],
  ])('refuses %j', (patch, message) => {
    const props = { ...GOOD, ...patch } as Record<string, string>;
    for (const [k, v] of Object.entries(patch)) if (v === undefined) delete props[k];
    expect(() => parseModelCard(props, 'm.onnx')).toThrow(ModelError);
    expect(() => parseModelCard(props, 'm.onnx')).toThrow(message);
  });
});

describe('tiny test model on onnxruntime-node (cpu)', () => {
  test('matches the PyTorch reference within 1e-4 and keeps f(x, sigma_min) = x', async () => {
    const model = await loadModel(await readModelFile(TINY_MODEL), { device: 'cpu', threads: 1 });
    try {
      const ref = JSON.parse(readFileSync(TINY_REF, 'utf8')) as { shape: number[]; sigma: number[]; x: string; denoised: string };
      const [n, c, h, w] = ref.shape;
      const x = new Tensor(n, c, h, w, f32(ref.x));
      const out = await model.denoise(x, Float32Array.from(ref.sigma));
      const want = f32(ref.denoised);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(out.data[i] - want[i]));
      expect(worst).toBeLessThan(1e-4);
      // the network really does something at sigma 0.5 (a random-weight model that returned x would pass nothing)
      let moved = 0;
      for (let i = x.imageSize; i < 2 * x.imageSize; i++) moved = Math.max(moved, Math.abs(out.data[i] - x.data[i]));
      expect(moved).toBeGreaterThan(1e-2);
      // the boundary condition, in the exported graph
      const small = x.map((v) => v / 1000);
      const atMin = await model.denoise(small, new Float32Array(n).fill(0.002));
      let diff = 0;
      for (let i = 0; i < small.data.length; i++) diff = Math.max(diff, Math.abs(atMin.data[i] - small.data[i]));
      expect(diff).toBeLessThan(1e-6);
    } finally {
      await model.dispose();
    }
  });

  test('the worker process and the in-process session give the same bits; abort rejects a running call at once', async () => {
    const file = await readModelFile(TINY_MODEL);
    const [worker, inline] = await Promise.all([
      loadModel(file, { device: 'cpu', threads: 1 }),
      loadModel(file, { device: 'cpu', threads: 1, inline: true }),
    ]);
    try {
      const x = new Tensor(2, 3, 64, 64).map((_, i) => Math.sin(i * 0.01));
      const sigma = Float32Array.from([0.5, 20]);
      const [a, b] = [await worker.denoise(x, sigma), await inline.denoise(x, sigma)];
      expect(Buffer.from(a.data.buffer).equals(Buffer.from(b.data.buffer))).toBe(true);
      expect([worker.device, worker.check, worker.skipped]).toEqual(['cpu', null, []]);
      // A call of 256 images takes seconds; abort ends it with the reason given, long before that.
      const big = new Tensor(256, 3, 64, 64);
      const call = worker.denoise(big, new Float32Array(256).fill(1));
      const stop = new Error('stopped by the test');
      const t0 = Date.now();
      setTimeout(() => worker.abort(stop), 200);
      await expect(call).rejects.toBe(stop);
      expect(Date.now() - t0).toBeLessThan(2000);
      await expect(worker.denoise(x, sigma)).rejects.toBe(stop);
    } finally {
      await worker.dispose();
      await inline.dispose();
    }
  });

  test('two inference processes: the second starts when a call could use it, takes half the work, gives the same bits, and abort and dispose stop both', async () => {
    const file = await readModelFile(TINY_MODEL);
    const workers = (): number[] =>
      spawnSync('ps', ['--ppid', String(process.pid), '-o', 'pid=,args='], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter((l) => l.includes('runtime/worker.js'))
        .map((l) => Number(l.trim().split(/\s+/)[0]));
    // CPU seconds a process has used (utime + stime).
    const cpu = (pid: number): number => {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(f[11]) + Number(f[12])) / 100;
    };
    const before = workers();
    const mine = (): number[] => workers().filter((p) => !before.includes(p));
    const gone = async (): Promise<void> => {
      for (let i = 0; i < 100 && mine().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(mine()).toEqual([]);
    };
    const [pool, inline] = await Promise.all([
      loadModel(file, { device: 'cpu', threads: 2 }),
      loadModel(file, { device: 'cpu', threads: 1, inline: true }),
    ]);
    try {
      expect([pool.parallel, pool.threads]).toEqual([2, { first: 2, others: 1 }]);
      const x = new Tensor(32, 3, 64, 64).map((_, i) => Math.sin(i * 0.013));
      const sigma = Float32Array.from({ length: 32 }, (_, i) => 0.01 * 1.3 ** i);
      const want = await inline.denoise(x, sigma);
      const same = (o: Tensor): boolean => Buffer.from(o.data.buffer).equals(Buffer.from(want.data.buffer));
      // Calls of one image, one at a time, never start another process.
      const one = new Tensor(1, 3, 64, 64, x.data.slice(0, x.imageSize));
      for (let i = 0; i < 20; i++) await pool.denoise(one, sigma.slice(0, 1));
      expect(mine().length).toBe(1);
      // A call of several images starts the second; until it is open the first does everything.
      expect(same(await pool.denoise(x, sigma))).toBe(true);
      expect(mine().length).toBe(2);
      await new Promise((r) => setTimeout(r, 1500)); // its session is open by now
      const [a, b] = mine();
      const [a0, b0] = [cpu(a), cpu(b)];
      // Split single calls and overlapping calls: both processes work, and every image comes out as from one session.
      for (let round = 0; round < 6; round++) expect(same(await pool.denoise(x, sigma))).toBe(true);
      for (let round = 0; round < 6; round++) {
        for (const o of await Promise.all([pool.denoise(x, sigma), pool.denoise(x, sigma)])) expect(same(o)).toBe(true);
      }
      const [da, db] = [cpu(a) - a0, cpu(b) - b0];
      expect(Math.min(da, db)).toBeGreaterThan(0.25 * (da + db));
      const stop = new Error('stopped by the test');
      const calls = [0, 1, 2, 3].map(() => pool.denoise(new Tensor(64, 3, 64, 64), new Float32Array(64).fill(1)));
      setTimeout(() => pool.abort(stop), 100);
      for (const c of calls) await expect(c).rejects.toBe(stop);
      await expect(pool.denoise(x, sigma)).rejects.toBe(stop);
      await gone();
    } finally {
      await pool.dispose();
      await inline.dispose();
    }
    // dispose as soon as the second process is forked (it is still starting) ends both.
    const quick = await loadModel(file, { device: 'cpu', threads: 2 });
    await quick.denoise(x0(), s0());
    expect(mine().length).toBe(2);
    await quick.dispose();
    await gone();
  }, 60_000);

  test('a file that is not a cm model is a ModelError naming it', async () => {
    await expect(readModelFile('/nonexistent/m.onnx')).rejects.toThrow('/nonexistent/m.onnx: no such file');
    await expect(readModelFile(TINY_REF)).rejects.toThrow(ModelError);
  });
});
