#!/usr/bin/env node
// The fp16 variant of a model (training/cmtrain/fp16.py) against the model itself: difference of the outputs and speed.
// Not part of CI.
//
//   node bench/fp16.mjs [--model models/default.onnx] [--fp16 PATH] [--provider cpu|cuda|webgpu] [--threads 1]
//                       [--repeats 9] [--keep-fp32-ops LIST] [--python /usr/bin/python3] [--out DIR]
//
// Without --fp16 the variant is made with `python3 -m cmtrain.fp16` (from training/) in a temporary folder; so is,
// always, its float32 emulation (`--emulate`: float16 weights and float16 rounding of every tensor the variant stores
// in float16, float32 arithmetic inside each op), skipped with a note when Python or its onnx package is missing.
// --keep-fp32-ops is passed to the converter (bisecting which ops to keep in float32).
//
// Accuracy: 64x64 inputs with a fixed seed, sigma 0.01, 0.1, 0.5, 2, 10, 80, two images: uniform random pixels in
// [-1, 1] and a smooth synthetic image (gradients and low-frequency waves), each plus sigma * N(0, 1) noise. Against
// the float32 model on the CPU: max and mean |difference| (in [-1, 1] units and in grey levels, x 127.5), PSNR
// (peak-to-peak 2, i.e. 255 grey levels), and the share of 8-bit values that change. For the variant run on
// --provider, for the emulation (CPU), and on a GPU also for the float32 model on that GPU (its own difference to
// the CPU, the floor any fp16 difference should be read against).
// Speed: ms per call at batch 1 and 4 for the float32 model and the variant on --provider, the CLI's session options
// (graphOptimizationLevel all, --threads intra-op threads, 1 inter-op), median of --repeats calls after 3 warm-up
// calls, the two models' calls alternating. On the CPU this says nothing about a GPU: onnxruntime's CPU provider has
// float16 kernels for few ops and runs the others in float32 between casts it inserts.
// Writes fp16.json and fp16.md into --out (default bench/results); with a --provider other than cpu,
// fp16-<provider>.json and fp16-<provider>.md, so that a GPU run does not replace the CPU's figures.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { codeVersion, machine, parseFlags, RESULTS, ROOT, round, sessionOptions } from './lib/common.mjs';
import { rng } from './lib/images.mjs';
import { median, psnrOfMse } from './lib/metrics.mjs';

process.env.ORT_DISABLE_TELEMETRY = '1';
const ort = (await import('onnxruntime-node')).default;
const ortVersion = createRequire(import.meta.url)('onnxruntime-node/package.json').version;

const flags = parseFlags(process.argv.slice(2));
const modelPath = resolve(typeof flags.model === 'string' ? flags.model : join(ROOT, 'models', 'default.onnx'));
const provider = typeof flags.provider === 'string' ? flags.provider : 'cpu';
if (!['cpu', 'cuda', 'webgpu'].includes(provider)) throw new Error(`--provider: expected cpu, cuda or webgpu, not ${provider}`);
const threads = Number(flags.threads ?? 1);
const repeats = Math.max(7, Number(flags.repeats ?? 9));
const python = typeof flags.python === 'string' ? flags.python : existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const keepOps = typeof flags['keep-fp32-ops'] === 'string' ? flags['keep-fp32-ops'] : flags['keep-fp32-ops'] === true ? '' : undefined;
const outDir = typeof flags.out === 'string' ? flags.out : RESULTS;
const stem = provider === 'cpu' ? 'fp16' : `fp16-${provider}`;
const keepFlag = keepOps === undefined ? [] : ['--keep-fp32-ops', keepOps];
const SIGMAS = [0.01, 0.1, 0.5, 2, 10, 80];
const RES = 64;
const BATCHES = [1, 4];
const WARMUP = 3;
const started = performance.now();
const startedAt = new Date().toISOString();
const loadBefore = machine().loadavg;
const log = (msg) => process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
const work = mkdtempSync(join(tmpdir(), 'cm-bench-fp16-'));

// ---- the variant and its emulation ----------------------------------------------------------------------------------

function convert(out, extra) {
  const args = ['-m', 'cmtrain.fp16', modelPath, out, ...extra, ...keepFlag];
  const r = spawnSync(python, args, { cwd: join(ROOT, 'training'), encoding: 'utf8', env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
  if (r.status !== 0) return { ok: false, why: (r.error?.message ?? r.stderr.trim().split('\n').pop()) || `exit ${r.status}` };
  log(r.stdout.trim());
  return { ok: true, line: r.stdout.trim() };
}

let fp16Path;
let conversion = null;
if (typeof flags.fp16 === 'string') {
  fp16Path = resolve(flags.fp16);
} else {
  fp16Path = join(work, 'fp16.onnx');
  const r = convert(fp16Path, []);
  if (!r.ok) throw new Error(`cannot make the fp16 variant with ${python} -m cmtrain.fp16 (${r.why}); make it elsewhere and pass --fp16 PATH`);
  conversion = r.line;
}
const emuPath = join(work, 'fp16-emulated.onnx');
const emu = convert(emuPath, ['--emulate']);
if (!emu.ok) log(`no emulation: ${emu.why}`);

// ---- sessions ---------------------------------------------------------------------------------------------------------

async function open(path, ep) {
  try {
    return await ort.InferenceSession.create(path, sessionOptions({ threads, provider: ep }));
  } catch (e) {
    const hint = ep === 'cuda' ? ' (the CUDA provider comes with `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node`)' : '';
    process.stderr.write(`cannot start ${path} on ${ep}: ${String(e?.message ?? e).split('\n')[0]}${hint}\n`);
    rmSync(work, { recursive: true, force: true });
    process.exit(1);
  }
}
const run = async (session, x, sigma, n) => {
  const out = await session.run({
    x: new ort.Tensor('float32', x, [n, 3, RES, RES]),
    sigma: new ort.Tensor('float32', sigma, [n]),
  });
  return out.denoised.data;
};

// ---- inputs -------------------------------------------------------------------------------------------------------------


const PIX = 3 * RES * RES;
/** One image in [-1, 1], 3 x 64 x 64 (planar). */
function image(kind, r) {
  const img = new Float32Array(PIX);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < RES; y++) {
      for (let x = 0; x < RES; x++) {
        const u = x / (RES - 1);
        const v = y / (RES - 1);
        const smooth =
          0.55 * Math.sin(2 * Math.PI * (0.7 * u + 0.3 * v + c / 3)) * Math.cos(Math.PI * (1.3 * v - 0.4 * u)) + 0.35 * (u - v) * (c - 1);
        img[c * RES * RES + y * RES + x] = kind === 'random' ? 2 * r.uniform() - 1 : Math.max(-1, Math.min(1, smooth));
      }
    }
  }
  return img;
}

/** A batch of the image at every sigma, each plus its own sigma * N(0, 1). */
function batchOf(kind, seed) {
  const r = rng(seed);
  const clean = image(kind, r);
  const x = new Float32Array(SIGMAS.length * PIX);
  SIGMAS.forEach((s, i) => {
    for (let j = 0; j < PIX; j++) x[i * PIX + j] = clean[j] + s * r.normal();
  });
  return { x, sigma: Float32Array.from(SIGMAS) };
}
const INPUTS = { random: batchOf('random', 1234), smooth: batchOf('smooth', 5678) };

// ---- accuracy ---------------------------------------------------------------------------------------------------------

const to8 = (v) => Math.round((Math.max(-1, Math.min(1, v)) + 1) * 127.5);
function compare(ref, got, from, to) {
  let max = 0;
  let sum = 0;
  let sq = 0;
  let changed8 = 0;
  let nonFinite = 0;
  for (let i = from; i < to; i++) {
    if (!Number.isFinite(got[i])) {
      nonFinite++;
      continue;
    }
    const d = Math.abs(got[i] - ref[i]);
    if (d > max) max = d;
    sum += d;
    sq += d * d;
    if (to8(got[i]) !== to8(ref[i])) changed8++;
  }
  const n = to - from;
  const mse = sq / n;
  return {
    max_abs: max,
    mean_abs: sum / n,
    max_grey: max * 127.5,
    mean_grey: (sum / n) * 127.5,
    psnr_db: nonFinite ? 0 : psnrOfMse(mse * 127.5 ** 2),
    changed_8bit: changed8 / n,
    non_finite: nonFinite,
    mse,
  };
}
const summarise = (rows) => {
  const s = rows.map((r) => r.stats);
  const mse = s.reduce((a, r) => a + r.mse, 0) / s.length;
  return {
    max_grey: Math.max(...s.map((r) => r.max_grey)),
    mean_grey: s.reduce((a, r) => a + r.mean_grey, 0) / s.length,
    psnr_db: s.some((r) => r.non_finite) ? 0 : psnrOfMse(mse * 127.5 ** 2),
    changed_8bit: s.reduce((a, r) => a + r.changed_8bit, 0) / s.length,
    non_finite: s.reduce((a, r) => a + r.non_finite, 0),
  };
};

log(`model ${modelPath}; fp16 ${fp16Path}; provider ${provider}, ${threads} thread(s)`);
const refSession = await open(modelPath, 'cpu');
const candidates = [{ name: `fp16 on ${provider}`, key: 'fp16', path: fp16Path, ep: provider }];
if (emu.ok) candidates.push({ name: 'fp16 emulated (CPU)', key: 'emulated', path: emuPath, ep: 'cpu' });
if (provider !== 'cpu') candidates.push({ name: `fp32 on ${provider}`, key: 'fp32_provider', path: modelPath, ep: provider });
const accuracy = {};
for (const c of candidates) {
  const session = await open(c.path, c.ep);
  const rows = [];
  for (const [kind, { x, sigma }] of Object.entries(INPUTS)) {
    const ref = await run(refSession, x, sigma, SIGMAS.length);
    const got = await run(session, x, sigma, SIGMAS.length);
    SIGMAS.forEach((s, i) => rows.push({ image: kind, sigma: s, stats: compare(ref, got, i * PIX, (i + 1) * PIX) }));
  }
  await session.release();
  accuracy[c.key] = { name: c.name, rows, overall: summarise(rows) };
  log(`${c.name}: max ${accuracy[c.key].overall.max_grey.toFixed(3)} grey levels, PSNR ${accuracy[c.key].overall.psnr_db.toFixed(1)} dB`);
}

// ---- speed --------------------------------------------------------------------------------------------------------------

const speed = [];
{
  const s32 = await open(modelPath, provider);
  const s16 = await open(fp16Path, provider);
  for (const n of BATCHES) {
    const { x } = INPUTS.smooth;
    const xb = new Float32Array(n * PIX);
    for (let i = 0; i < n; i++) xb.set(x.subarray((i % SIGMAS.length) * PIX, (i % SIGMAS.length + 1) * PIX), i * PIX);
    const sb = Float32Array.from({ length: n }, (_, i) => SIGMAS[i % SIGMAS.length]);
    for (let i = 0; i < WARMUP; i++) {
      await run(s32, xb, sb, n);
      await run(s16, xb, sb, n);
    }
    const t32 = [];
    const t16 = [];
    for (let i = 0; i < repeats; i++) {
      // Alternating, so that a load that comes and goes hits both alike.
      for (const [s, t] of i % 2 ? [[s16, t16], [s32, t32]] : [[s32, t32], [s16, t16]]) {
        const t0 = performance.now();
        await run(s, xb, sb, n);
        t.push(performance.now() - t0);
      }
    }
    const row = { batch: n, fp32_ms: median(t32), fp16_ms: median(t16) };
    row.ratio = row.fp16_ms / row.fp32_ms;
    speed.push(row);
    log(`batch ${n}: fp32 ${row.fp32_ms.toFixed(2)} ms, fp16 ${row.fp16_ms.toFixed(2)} ms (x${row.ratio.toFixed(2)})`);
  }
  await s32.release();
  await s16.release();
}
await refSession.release();

// ---- report ---------------------------------------------------------------------------------------------------------

const sizes = { fp32_bytes: statSync(modelPath).size, fp16_bytes: statSync(fp16Path).size };
sizes.ratio = sizes.fp16_bytes / sizes.fp32_bytes;
const loadAfter = machine().loadavg;
const seconds = (performance.now() - started) / 1000;
const cpuNote =
  provider === 'cpu'
    ? "CPU speed of fp16 says nothing about a GPU: onnxruntime's CPU provider has float16 kernels for few ops, runs the " +
      'others (Conv, Einsum, Mul, Add, ...) in float32 between Cast nodes it inserts, and then removes the casts ' +
      'between consecutive such ops; so on the CPU the variant costs casts and saves nothing, and its outputs there ' +
      'carry float16 weights but fewer float16 roundings of activations than a GPU would make (the emulation rounds them all).'
    : `Measured on ${provider}: inputs and outputs are copied between host and device on every call, as the CLI does.`;
const keepText = keepOps === undefined ? '' : ` --keep-fp32-ops '${keepOps}'`;
const result = {
  measured: startedAt,
  seconds: round(seconds, 1),
  model: modelPath,
  fp16: typeof flags.fp16 === 'string' ? fp16Path : `made by python3 -m cmtrain.fp16${keepText}`,
  conversion,
  emulation: emu.ok ? `python3 -m cmtrain.fp16 --emulate${keepText}` : `none: ${emu.why}`,
  provider,
  threads,
  onnxruntime_node: ortVersion,
  machine: { ...machine(), loadavg_before: loadBefore, loadavg_after: loadAfter },
  code: codeVersion(),
  sizes,
  sigmas: SIGMAS,
  resolution: RES,
  accuracy: Object.fromEntries(
    Object.entries(accuracy).map(([k, a]) => [
      k,
      {
        name: a.name,
        overall: roundAll(a.overall),
        rows: a.rows.map((r) => {
          const { mse, ...stats } = r.stats;
          return { image: r.image, sigma: r.sigma, ...roundAll(stats) };
        }),
      },
    ]),
  ),
  speed: speed.map((r) => roundAll(r)),
  repeats,
  warmup: WARMUP,
  note: cpuNote,
};
function roundAll(o) {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === 'number' ? round(v, k.includes('8bit') ? 5 : k.endsWith('_abs') ? 6 : 3) : v]));
}

const md = [];
md.push(`## fp16 variant (${provider})`, '');
md.push(
  `Measured ${startedAt} in ${seconds.toFixed(1)} s with \`node bench/fp16.mjs${provider === 'cpu' ? '' : ` --provider ${provider}`}\`. ` +
    `Model \`${modelPath.replace(ROOT, '')}\` (${sizes.fp32_bytes} bytes); fp16 variant ${sizes.fp16_bytes} bytes ` +
    `(${(100 * sizes.ratio).toFixed(1)}%), ${result.fp16}. onnxruntime-node ${ortVersion}, ${threads} intra-op thread(s), ` +
    `machine ${result.machine.cores} x ${result.machine.cpu}, load average ${loadBefore.join(' / ')} at the start, ` +
    `${loadAfter.join(' / ')} at the end. Code: commit ${result.code.commit}.`,
  '',
);
md.push('### Outputs against the float32 model on the CPU (64x64, 12 inputs: 2 images x 6 sigmas)', '');
md.push('| what | max abs diff (grey levels) | mean abs diff (grey levels) | PSNR vs fp32 (dB) | 8-bit values changed |');
md.push('|---|---|---|---|---|');
for (const a of Object.values(accuracy)) {
  const o = a.overall;
  md.push(`| ${a.name} | ${o.max_grey.toFixed(3)} | ${o.mean_grey.toFixed(4)} | ${o.psnr_db.toFixed(1)} | ${(100 * o.changed_8bit).toFixed(2)}% |`);
}
md.push('', 'Per input (max / mean abs diff in grey levels = x 127.5 of the [-1, 1] units; PSNR in dB):', '');
md.push(`| image | sigma | ${Object.values(accuracy).map((a) => a.name).join(' | ')} |`);
md.push(`|---|---|${Object.values(accuracy).map(() => '---|').join('')}`);
accuracy.fp16.rows.forEach((r, i) => {
  const cells = Object.values(accuracy).map((a) => {
    const s = a.rows[i].stats;
    return `${s.max_grey.toFixed(3)} / ${s.mean_grey.toFixed(4)} / ${s.psnr_db.toFixed(1)}${s.non_finite ? ` (${s.non_finite} non-finite)` : ''}`;
  });
  md.push(`| ${r.image} | ${r.sigma} | ${cells.join(' | ')} |`);
});
md.push('', `### Speed on ${provider} (ms per call, median of ${repeats} calls after ${WARMUP} warm-up calls, the two models alternating)`, '');
md.push('| batch | fp32 ms | fp16 ms | fp16 / fp32 |', '|---|---|---|---|');
for (const r of speed) md.push(`| ${r.batch} | ${r.fp32_ms.toFixed(2)} | ${r.fp16_ms.toFixed(2)} | ${r.ratio.toFixed(2)} |`);
md.push('', cpuNote, '');
md.push(
  'A variant is shipped only if it pays on a GPU (faster at the same outputs, within a few grey levels); run there: ' +
    '`node bench/fp16.mjs --provider cuda` (or `--provider webgpu`).',
  '',
);

mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, `${stem}.json`), `${JSON.stringify(result, null, 2)}\n`);
writeFileSync(join(outDir, `${stem}.md`), md.join('\n'));
rmSync(work, { recursive: true, force: true });
log(`wrote ${join(outDir, `${stem}.json`)} and ${stem}.md`);
