/**
 * Execution providers end to end, on the built binary: CUDA's failure handling (its binaries cannot be installed
 * here), what auto picks, --gpu-id, and WebGPU really run on a software Vulkan driver (lavapipe) against the CPU.
 *
 * The WebGPU tests need a Vulkan driver that Dawn accepts: Mesa 25 (Debian bookworm-backports' mesa-vulkan-drivers,
 * which .ci/run installs). Where none is usable they are skipped with the reason printed; CM_REQUIRE_WEBGPU=1 (set by
 * .ci/run once it has installed the driver) turns that skip into a failure.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cudaProviderInstalled } from '../src/runtime/session.js';
import { CM_BIN, ROOT, TINY_MODEL } from './helpers/paths.js';

const MISMATCH_MODEL = join(ROOT, 'fixtures', 'gpu-mismatch.onnx');
let dir: string;
const at = (name: string): string => join(dir, name);

function cm(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CM_BIN, ...args], { cwd: dir, env: { ...process.env, ...env }, timeout: 300_000 });
  return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-gpu-'));
  const d = Buffer.alloc(64 * 64 * 3);
  for (let y = 0; y < 64; y++) {
    for (let x = 0; x < 64; x++) {
      const i = (y * 64 + x) * 3;
      [d[i], d[i + 1], d[i + 2]] = [Math.round(127.5 + 127.5 * Math.sin(x / 6)), y * 4, (x * 13 + y * 7) % 256];
    }
  }
  await sharp(d, { raw: { width: 64, height: 64, channels: 3 } }).png().toFile(at('img.png'));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.runIf(!cudaProviderInstalled())('CUDA, where its provider is not installed (as here: it cannot be downloaded)', () => {
  test('--device cuda: one line naming the model and the fix, exit 4, no output', () => {
    const r = cm(['colorize', 'img.png', '-o', 'cuda.png', '--model', TINY_MODEL, '--device', 'cuda', '--gpu-id', '1']);
    expect(r.status).toBe(4);
    expect(r.stderr).toBe(
      `cm: ${TINY_MODEL}: cannot start the model on cuda: onnxruntime's CUDA provider is not installed ` +
        '(with CUDA 12 and cuDNN 9 present: ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node)\n',
    );
    expect(existsSync(at('cuda.png'))).toBe(false);
  });

  test('--device auto falls back to the CPU silently (CUDA was never set up); --debug says why in one line', () => {
    const r = cm(['colorize', 'img.png', '-o', 'auto.png', '--model', TINY_MODEL, '--json']);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ device: 'cpu', status: 'ok' });
    const d = cm(['colorize', 'img.png', '-o', 'auto2.png', '--model', TINY_MODEL, '--debug']);
    expect(d.stderr).toContain("cm: device cpu (cuda: onnxruntime's CUDA provider is not installed (with CUDA 12 and cuDNN 9 present: ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node))\n");
    // --progress json still has the device event, with the reason
    const j = cm(['colorize', 'img.png', '-o', 'auto3.png', '--model', TINY_MODEL, '--progress', 'json']);
    const events = j.stderr.trim().split('\n').map((l) => JSON.parse(l));
    expect(events.find((e) => e.event === 'device')).toMatchObject({ device: 'cpu', skipped: [expect.stringContaining('CUDA provider is not installed')] });
  });
});

test.each([
  [['--device', 'cpu', '--gpu-id', '1'], /^cm: --gpu-id chooses a CUDA device: it needs --device cuda or auto, not cpu\n$/],
  [['--device', 'webgpu', '--gpu-id', '0'], /WebGPU provider picks its adapter itself/],
  [['--gpu-id', '-2'], /^cm: Expected an integer between 0 and 1023 for --gpu-id but received -2\n$/],
])('--gpu-id %j is a usage error', (flags, message) => {
  const r = cm(['colorize', 'img.png', '-o', 'gid.png', '--model', TINY_MODEL, ...flags]);
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(message);
});

test('--device webgpu without a Vulkan driver: one line with the reason, exit 4, none of Dawn\'s warnings', () => {
  const r = cm(['colorize', 'img.png', '-o', 'nodriver.png', '--model', TINY_MODEL, '--device', 'webgpu'], { VK_ICD_FILENAMES: '/nonexistent/icd.json' });
  expect(r.status).toBe(4);
  expect(r.stderr).toMatch(new RegExp(`^cm: ${TINY_MODEL.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: cannot start the model on webgpu: no usable WebGPU adapter: [^\\n]+\\n$`));
  expect(existsSync(at('nodriver.png'))).toBe(false);
});

/** Why WebGPU cannot run here (undefined when it can), from a one-evaluation run of the tiny model. */
let webgpuRun: { status: number | null; stdout: string; stderr: string } | undefined;
function webgpuProblem(): string | undefined {
  webgpuRun ??= cm(['colorize', 'img.png', '-o', 'webgpu.png', '--steps', '1', '--seed', '3', '--model', TINY_MODEL, '--device', 'webgpu']);
  const m = /no usable WebGPU adapter: (.*)/.exec(webgpuRun.stderr);
  if (webgpuRun.status === 4 && m) return m[1];
  return undefined;
}

// Lavapipe compiles every shader on the CPU: one evaluation takes 5-35 s on a loaded 2-core machine.
describe('WebGPU on a software Vulkan driver', { timeout: 300_000 }, () => {
  test('the tiny model through --device webgpu matches the CPU within 1 grey level; stderr is the device line only', async (ctx) => {
    const problem = webgpuProblem();
    if (problem !== undefined) {
      const why = `no usable Vulkan driver for WebGPU (${problem}); on Debian 12: apt-get install -t bookworm-backports mesa-vulkan-drivers`;
      if (process.env.CM_REQUIRE_WEBGPU === '1') throw new Error(why);
      console.warn(`skipping: ${why}`);
      ctx.skip(why);
    }
    const r = webgpuRun!;
    expect(r.status, r.stderr).toBe(0);
    // Dawn's own warnings and Mesa's complaints stay in the worker: only our line reaches the user.
    expect(r.stderr).toMatch(/^cm: device webgpu \(outputs match the CPU's within [0-9.e-]+\)\n$/);
    const cpu = cm(['colorize', 'img.png', '-o', 'cpu.png', '--steps', '1', '--seed', '3', '--model', TINY_MODEL, '--device', 'cpu', '-q']);
    expect(cpu.status).toBe(0);
    const [a, b] = await Promise.all([sharp(at('webgpu.png')).raw().toBuffer(), sharp(at('cpu.png')).raw().toBuffer()]);
    expect(a.length).toBe(b.length);
    let worst = 0;
    let differing = 0;
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i] - b[i]);
      worst = Math.max(worst, d);
      if (d > 0) differing++;
    }
    // The float outputs agree to ~1e-6 (the device line); rounding to 8 bits can still flip a value sitting at a
    // half-level by one, so 1 grey level is the tolerance, and such flips are rare.
    console.info(`webgpu vs cpu: max abs difference ${worst} grey levels, ${differing} of ${a.length} values differ; ${r.stderr.trim()}`);
    expect(worst).toBeLessThanOrEqual(1);
    expect(differing).toBeLessThan(a.length / 100);
  });

  test('a model whose WebGPU outputs differ from the CPU\'s is refused with the difference, exit 4', (ctx) => {
    const problem = webgpuProblem();
    if (problem !== undefined) ctx.skip(`no usable Vulkan driver for WebGPU (${problem})`);
    const r = cm(['generate', '-o', 'mismatch.png', '--model', MISMATCH_MODEL, '--device', 'webgpu']);
    expect(r.status).toBe(4);
    expect(r.stderr).toMatch(/^cm: \S+gpu-mismatch\.onnx: webgpu's outputs differ from the CPU's by 0\.43 \(max abs, tolerance 0\.02, on a \[1,3,16,16\] check input\): not used\n$/);
    expect(existsSync(at('mismatch.png'))).toBe(false);
    // The same model on the CPU runs (nothing to check it against).
    expect(cm(['generate', '-o', 'mismatch.png', '--model', MISMATCH_MODEL, '--device', 'cpu', '-q']).status).toBe(0);
  });
});
