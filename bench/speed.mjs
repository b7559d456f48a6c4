#!/usr/bin/env node
// Speed benchmark of the default model and the CLI. Not part of CI.
//
//   node bench/speed.mjs [--model PATH] [--out DIR] [--repeats N] [--python /usr/bin/python3] [--no-torch] [--smoke]
//
// 1. onnxruntime-node directly (the CLI's session options): median ms per call at batch 1, 4, 16 with 1 and 2 threads.
// 2. The same network in PyTorch eager (bench/speed_torch.py, same run): ms per call, ratio to onnxruntime; FLOPs per
//    evaluation and the CPU's float32 matmul peak, hence the efficiency.
// 3. The CLI end to end: images per second for 64x64 edits, start-up (cm --version, a one-step edit).
// 4. Full resolution: 4x super-resolution of a 512x512 photo (2048x2048 out) with its throughput against one 64x64
//    evaluation; colorize of a 4000x3000 photo (peak RSS) and a 30x30 hole in it; seconds per megapixel per task.
// 5. The inference worker's cost: ms per call and CLI wall time with the model in a worker process (the default) and in
//    the CLI's own process (CM_INFERENCE=inline), same run, alternating.
// 6. The peer (issue 19, bench/lib/peer.mjs): x4 of a 256x256 photo crop by cm (float and int8) and by UpscalerJS
//    (esrgan-slim, esrgan-medium on tfjs-wasm), alternating in one run; one model call float against int8; onnxruntime
//    session options; tile size and batch. `--only peer` (npm run bench:peer) runs this section alone.
// Writes speed.json, speed.md and RESULTS.md (and peer.json, peer.md) into --out (default bench/results; with --smoke a
// temporary folder).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { assembleResults, chooseModel, codeVersion, machine, modelCard, parseFlags, records, RESULTS, ROOT, round, runCli, sessionOptions } from './lib/common.mjs';
import { cropsOf, loadPhoto, makeMask, maskPlane, photoPaths } from './lib/data.mjs';
import { boxDown, saveGrayPng, savePng } from './lib/images.mjs';
import { median } from './lib/metrics.mjs';

const flags = parseFlags(process.argv.slice(2));
const smoke = flags.smoke === true;
const outDir = typeof flags.out === 'string' ? flags.out : smoke ? join(tmpdir(), 'cm-bench-smoke') : RESULTS;
const repeats = Number(flags.repeats ?? (smoke ? 3 : 15));
const cliRuns = smoke ? 1 : 5;
const batches = smoke ? [1, 4] : [1, 4, 16];
const threadCounts = smoke ? [1] : [1, 2];
const python = typeof flags.python === 'string' ? flags.python : '/usr/bin/python3';
const model = await chooseModel(flags.model);
const card = await modelCard(model);
const RES = card.resolution;
mkdirSync(outDir, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'cm-bench-speed-'));
const started = performance.now();
const startedAt = new Date().toISOString();
const loadStart = machine().loadavg;
const loadSamples = [];
const log = (msg) => {
  loadSamples.push(machine().loadavg[0]);
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0)}s] ${msg}\n`);
};
process.env.ORT_DISABLE_TELEMETRY = '1';
const { peerSection } = await import('./lib/peer.mjs');
if (flags.only === 'peer') {
  await peerSection({ work, smoke, log, model, outDir, peerRounds: flags['peer-rounds'] });
  rmSync(work, { recursive: true, force: true });
  process.exit(0);
}

// ---- 1. PyTorch eager, FLOPs, matmul throughput (first: it also writes the MatMul graph) -------------------------------------------------------------------------

let torch = null;
if (flags['no-torch'] !== true) {
  const args = [join(ROOT, 'bench', 'speed_torch.py'), '--batches', batches.join(','), '--threads', threadCounts.join(','), '--repeats', String(Math.min(repeats, 9))];
  if (smoke) args.push('--smoke');
  args.push('--matmul-onnx', join(work, 'matmul.onnx'));
  // Build the ONNX model's own architecture in PyTorch (its metadata names it).
  const { readOnnxMetadata } = await import(join(ROOT, 'dist', 'runtime', 'onnx-metadata.js'));
  const arch = readOnnxMetadata(readFileSync(model))['cm.architecture'];
  if (arch) args.push('--arch', arch);
  const r = await spawnText(python, args, { PYTHONDONTWRITEBYTECODE: '1' });
  if (r.code === 0) torch = JSON.parse(r.stdout.trim().split('\n').pop());
  else torch = { error: r.stderr.trim().split('\n').pop() };
  log(`pytorch: ${torch.error ?? JSON.stringify(torch.eager_ms)}`);
}

// ---- 2. onnxruntime-node ------------------------------------------------------------------------------------------

const ort = await import('onnxruntime-node');
ort.env.logLevel = 'fatal';
const modelBytes = readFileSync(model);
const ortMs = {};
/** Median ms per call of `b` model-sized images (3 warm-up calls excluded). */
async function evalMs(session, b, reps) {
  const x = new Float32Array(b * 3 * RES * RES);
  let s = 12345;
  for (let i = 0; i < x.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    x[i] = (s / 2 ** 32) * 2 - 1;
  }
  const feeds = { x: new ort.Tensor('float32', x, [b, 3, RES, RES]), sigma: new ort.Tensor('float32', new Float32Array(b).fill(1), [b]) };
  for (let i = 0; i < 3; i++) await session.run(feeds); // warm-up, excluded
  const times = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t0);
  }
  return round(median(times), 2);
}
for (const threads of threadCounts) {
  const session = await ort.InferenceSession.create(modelBytes, sessionOptions({ threads }));
  ortMs[threads] = {};
  for (const b of batches) ortMs[threads][b] = await evalMs(session, b, b >= 16 ? Math.max(3, Math.ceil(repeats / 2)) : repeats);
  await session.release();
  log(`onnxruntime ${threads} thread(s): ${JSON.stringify(ortMs[threads])} ms per call`);
}

// onnxruntime's own float32 matrix product (MLAS), from the MatMul graph speed_torch.py wrote: the peak we compare with.
const ortMatmulGflops = {};
const ortMatmulBySize = {};
if (torch?.matmul_onnx) {
  for (const threads of threadCounts) {
    const session = await ort.InferenceSession.create(torch.matmul_onnx, { executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1 });
    ortMatmulBySize[threads] = {};
    for (const n of smoke ? [256] : [512, 1024, 2048]) {
      const a = new ort.Tensor('float32', Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5), [n, n]);
      await session.run({ A: a, B: a });
      const times = [];
      for (let i = 0; i < (smoke ? 2 : 7); i++) {
        const t0 = performance.now();
        await session.run({ A: a, B: a });
        times.push(performance.now() - t0);
      }
      ortMatmulBySize[threads][n] = round((2 * n ** 3) / (median(times) / 1000) / 1e9, 2);
    }
    ortMatmulGflops[threads] = Math.max(...Object.values(ortMatmulBySize[threads]));
    await session.release();
  }
  log(`onnxruntime matmul: ${JSON.stringify(ortMatmulBySize)} GFLOP/s`);
}

// ---- 3. CLI end to end --------------------------------------------------------------------------------------------

const kodak = photoPaths('kodak24');
const photo = await loadPhoto(kodak[0]);
const n = smoke ? 4 : 16;
const inDir = join(work, 'in');
const maskDir = join(work, 'mask');
mkdirSync(inDir);
mkdirSync(maskDir);
for (const [k, c] of cropsOf(photo, n, RES, 31).entries()) {
  await savePng(c.img, join(inDir, `c${k}.png`));
  await saveGrayPng(maskPlane(makeMask('box', RES, RES, k)), RES, RES, join(maskDir, `c${k}.png`));
}
const common = ['--model', model, '--device', 'cpu', '--seed', '0', '-q', '--json', '--force'];
const e2e = {};
for (const batch of smoke ? [n] : [1, n]) {
  const walls = [];
  let evals = null;
  for (let r = 0; r < cliRuns; r++) {
    const run = await runCli(['inpaint', inDir, '--mask', maskDir, '--out-dir', join(work, 'out-e2e'), '--batch', String(batch), ...common]);
    evals = records(run, 'inpaint e2e')[0].evaluations;
    walls.push(run.seconds);
  }
  const wall = median(walls);
  e2e[batch] = { images: n, evaluations: evals, wallSeconds: round(wall, 3), imagesPerSecond: round(n / wall, 2) };
}
log(`end to end: ${JSON.stringify(e2e)}`);

const startup = { version: [], oneStep: [] };
const one = join(work, 'one');
mkdirSync(one);
await savePng(boxDown(cropsOf(photo, 1, RES, 5)[0].img, 4), join(one, 'low.png'));
for (let r = 0; r < (smoke ? 1 : 7); r++) {
  const v = await runCli(['--version']);
  if (v.code !== 0) throw new Error(`cm --version exited ${v.code}`);
  startup.version.push(v.seconds);
  const e = await runCli(['superres', join(one, 'low.png'), '-x', '4', '-o', join(work, 'one-out.png'), '--steps', '1', ...common]);
  records(e, 'one-step edit');
  startup.oneStep.push(e.seconds);
}
const startupMedian = { versionSeconds: round(median(startup.version), 3), oneStepEditSeconds: round(median(startup.oneStep), 3), runs: startup.version.length };
log(`start-up: ${JSON.stringify(startupMedian)}`);

// ---- 4. full resolution: time, throughput against one evaluation, peak memory -------------------------------------------

/** The CLI under /usr/bin/time (peak RSS in KB, when it is installed). */
async function runMeasured(args) {
  if (!existsSync('/usr/bin/time')) return { ...(await runCli(args)), maxRssMB: null };
  const run = await spawnText('/usr/bin/time', ['-f', 'cm-maxrss-kb %M', process.execPath, join(ROOT, 'bin', 'cm.js'), ...args], { ORT_DISABLE_TELEMETRY: '1' }, true);
  const m = /cm-maxrss-kb (\d+)/.exec(run.stderr);
  return { ...run, maxRssMB: m ? round(Number(m[1]) / 1024, 1) : null };
}

const sharpLib = (await import('sharp')).default;
const set5 = photoPaths('set5');
const srIn = smoke ? 128 : 512; // Set5 image 1 is 512x512: 4x gives 2048x2048
await sharpLib(set5[0]).resize(srIn, srIn).png().toFile(join(work, 'sr-in.png'));
const fullres = {};
{
  // The reference, model-sized evaluations with the CLI's threads (2), is measured just before and just after the run
  // and averaged, as this machine's speed drifts over minutes: per image at batch 4 (the network's best rate here,
  // the strict reference) and one image alone in a call (a single evaluation).
  const reference = async () => {
    const session = await ort.InferenceSession.create(modelBytes, sessionOptions({ threads: threadCounts.at(-1) }));
    const ms = { 1: await evalMs(session, 1, repeats), 4: await evalMs(session, 4, repeats) };
    await session.release();
    return ms;
  };
  const before = await reference();
  const run = await runMeasured(['superres', join(work, 'sr-in.png'), '-x', '4', '-o', join(work, 'sr-out.png'), '--threads', '2', ...common]);
  const rec = records(run, 'superres full')[0];
  const after = await reference();
  const outPixels = (4 * srIn) ** 2;
  const oneEvalMs = (before[4] + after[4]) / 2 / 4;
  const aloneMs = (before[1] + after[1]) / 2;
  const perEval = outPixels / (rec.seconds / rec.evaluations);
  const single = (RES * RES) / (oneEvalMs / 1000);
  const alone = (RES * RES) / (aloneMs / 1000);
  fullres.superres = { input: `${srIn}x${srIn}`, output: `${4 * srIn}x${4 * srIn}`, evaluations: rec.evaluations, ts: rec.ts, wallSeconds: round(run.seconds, 2), cliSeconds: rec.seconds, maxRssMB: run.maxRssMB,
    pixelsPerSecondPerEval: Math.round(perEval), singleEvalPixelsPerSecond: Math.round(single), ratio: round(perEval / single, 3), oneEvalMs: round(oneEvalMs, 2),
    aloneEvalPixelsPerSecond: Math.round(alone), ratioAlone: round(perEval / alone, 3), aloneEvalMs: round(aloneMs, 2), referenceMsPerCall: { before, after } };
}
log(`superres ${srIn} -> ${4 * srIn}: ${JSON.stringify(fullres.superres)}`);

// A 4000x3000 photo (Kodak image 1 enlarged; a JPEG, as a camera writes): colorize's peak memory, a 30x30 hole.
const [bw, bh] = smoke ? [400, 300] : [4000, 3000];
await sharpLib(kodak[0]).resize(bw, bh, { fit: 'fill' }).jpeg({ quality: 90 }).toFile(join(work, 'photo.jpg'));
await sharpLib(kodak[0]).resize(bw, bh, { fit: 'fill' }).greyscale().jpeg({ quality: 90 }).toFile(join(work, 'photo-gray.jpg'));
const hole = Buffer.alloc(bw * bh);
for (let y = Math.floor(bh / 3); y < Math.floor(bh / 3) + 30; y++) for (let x = Math.floor(bw / 2); x < Math.floor(bw / 2) + 30; x++) hole[y * bw + x] = 255;
await sharpLib(hole, { raw: { width: bw, height: bh, channels: 1 } }).png().toFile(join(work, 'hole.png'));
{
  const run = await runMeasured(['colorize', join(work, 'photo-gray.jpg'), '-o', join(work, 'colour.jpg'), ...common]);
  const rec = records(run, 'colorize full')[0];
  fullres.colorize = { size: `${bw}x${bh}`, evaluations: rec.evaluations, wallSeconds: round(run.seconds, 2), maxRssMB: run.maxRssMB };
  for (const ext of ['jpg', 'png']) {
    const r2 = await runMeasured(['inpaint', join(work, 'photo.jpg'), '--mask', join(work, 'hole.png'), '-o', join(work, `filled.${ext}`), ...common]);
    const rec2 = records(r2, 'inpaint hole')[0];
    fullres[`inpaint30-${ext}`] = { size: `${bw}x${bh}`, hole: '30x30', output: ext, evaluations: rec2.evaluations, wallSeconds: round(r2.seconds, 2), maxRssMB: r2.maxRssMB };
  }
}
log(`4000x3000: ${JSON.stringify({ colorize: fullres.colorize, inpaint: fullres['inpaint30-jpg'] })}`);

// Seconds per megapixel of output for every task on a Kodak photo (768x512), default plans, one process each.
const perMP = {};
{
  const kw = photo.w;
  const kh = photo.h;
  await savePng(photo, join(work, 'kodak.png'));
  await sharpLib(join(work, 'kodak.png')).greyscale().png().toFile(join(work, 'kodak-gray.png'));
  await saveGrayPng(maskPlane(makeMask('box', kw, kh, 1)), kw, kh, join(work, 'kodak-mask.png'));
  await sharpLib(join(work, 'kodak.png')).resize(kw / 4, kh / 4).png().toFile(join(work, 'kodak-low.png'));
  const tasks = [
    ['superres x4', ['superres', join(work, 'kodak-low.png'), '-x', '4'], kw * kh],
    ['inpaint (box, a quarter)', ['inpaint', join(work, 'kodak.png'), '--mask', join(work, 'kodak-mask.png')], kw * kh],
    ['colorize', ['colorize', join(work, 'kodak-gray.png')], kw * kh],
    ['denoise 25', ['denoise', join(work, 'kodak.png'), '--noise', '25'], kw * kh],
    ['stroke', ['stroke', join(work, 'kodak.png')], kw * kh],
  ];
  for (const [name, args, pixels] of smoke ? tasks.slice(0, 2) : tasks) {
    const run = await runMeasured([...args, '-o', join(work, 'permp.png'), ...common]);
    const rec = records(run, name)[0];
    perMP[name] = { size: `${kw}x${kh}`, evaluations: rec.evaluations, wallSeconds: round(run.seconds, 2), secondsPerMegapixel: round(run.seconds / (pixels / 1e6), 2), maxRssMB: run.maxRssMB };
  }
}
log(`per megapixel: ${JSON.stringify(perMP)}`);

// ---- 5. The inference worker's cost: the model in a worker process (the default) or in the CLI's own process ------

// Per call through the runtime API (what the sampler calls), alternating the two in one run, then the CLI end to end
// with CM_INFERENCE=inline against the default, alternating too.
const { loadModel, readModelFile } = await import(join(ROOT, 'dist', 'runtime', 'model.js'));
const { Tensor } = await import(join(ROOT, 'dist', 'tensor.js'));
const modelFile = await readModelFile(model);
// One thread: two live sessions with thread pools would spin against each other between their alternating calls.
const workerThreads = 1;
const worker = { threads: workerThreads, perCall: {}, cli: {} };
for (const b of batches) {
  const x = new Tensor(b, 3, RES, RES, Float32Array.from({ length: b * 3 * RES * RES }, (_, i) => Math.sin(i * 0.37)));
  const sigma = new Float32Array(b).fill(1);
  const loaded = {
    worker: await loadModel(modelFile, { device: 'cpu', threads: workerThreads }),
    inline: await loadModel(modelFile, { device: 'cpu', threads: workerThreads, inline: true }),
  };
  const times = { worker: [], inline: [] };
  for (const m of Object.values(loaded)) for (let i = 0; i < 3; i++) await m.denoise(x, sigma); // warm-up, excluded
  const reps = b >= 16 ? Math.max(3, Math.ceil(repeats / 2)) : repeats;
  for (let i = 0; i < reps; i++) {
    for (const kind of i % 2 ? ['inline', 'worker'] : ['worker', 'inline']) {
      const t0 = performance.now();
      await loaded[kind].denoise(x, sigma);
      times[kind].push(performance.now() - t0);
    }
  }
  for (const m of Object.values(loaded)) await m.dispose();
  const [w, inl] = [median(times.worker), median(times.inline)];
  worker.perCall[b] = { workerMs: round(w, 2), inlineMs: round(inl, 2), ratio: round(w / inl, 3), overheadMs: round(w - inl, 2), calls: reps };
}
log(`worker vs inline, per call: ${JSON.stringify(worker.perCall)}`);
{
  const walls = { worker: [], inline: [] };
  for (let r = 0; r < cliRuns; r++) {
    for (const kind of r % 2 ? ['inline', 'worker'] : ['worker', 'inline']) {
      const env = kind === 'inline' ? { CM_INFERENCE: 'inline' } : {};
      const run = await runCli(['inpaint', inDir, '--mask', maskDir, '--out-dir', join(work, `out-${kind}`), ...common], { env });
      records(run, `inpaint ${kind}`);
      walls[kind].push(run.seconds);
    }
  }
  const [w, inl] = [median(walls.worker), median(walls.inline)];
  worker.cli = { images: n, runs: cliRuns, workerSeconds: round(w, 3), inlineSeconds: round(inl, 3), ratio: round(w / inl, 3) };
}
log(`worker vs inline, CLI: ${JSON.stringify(worker.cli)}`);

// ---- report -------------------------------------------------------------------------------------------------------

const flops = torch?.flops_per_eval_64 ?? null;
const derived = {};
for (const t of threadCounts) {
  derived[t] = {};
  for (const b of batches) {
    const ms = ortMs[t][b];
    const tms = torch?.eager_ms?.[t]?.[b];
    const gflops = flops ? (flops * b) / (ms / 1000) / 1e9 : null;
    const peak = Math.max(ortMatmulGflops[t] ?? 0, torch?.matmul_gflops?.[t] ?? 0, torch?.conv1x1_gflops?.[t] ?? 0) || null;
    derived[t][b] = {
      ortMsPerImage: round(ms / b, 2),
      torchOverOrt: tms ? round(tms / ms, 2) : null,
      ortGflops: round(gflops, 2),
      peakGflops: peak,
      efficiency: peak && gflops ? round(gflops / peak, 3) : null,
    };
  }
}
// ---- 6. The peer (issue 19) ----------------------------------------------------------------------------------------
const peer = await peerSection({ work, smoke, log, model, outDir, peerRounds: flags['peer-rounds'] });

const meta = {
  startedAt,
  seconds: round((performance.now() - started) / 1000, 1),
  model,
  modelName: card.name,
  resolution: RES,
  smoke,
  repeats,
  code: codeVersion(),
  machine: { ...machine(), loadavgAtStart: loadStart, load1DuringRun: loadSamples },
  onnxruntime: ort.env.versions?.common ?? 'unknown',
};
const result = { meta, ortMs, ortMatmulGflops, ortMatmulBySize, torch, derived, e2e, startup: { ...startupMedian, samples: startup }, fullres, perMP, worker, peer, diffusion: DIFFUSION() };
writeFileSync(join(outDir, 'speed.json'), JSON.stringify(result, null, 1) + '\n');
writeFileSync(join(outDir, 'speed.md'), markdown(result));
assembleResults(outDir);
rmSync(work, { recursive: true, force: true });
log(`wrote ${join(outDir, 'speed.json')}, speed.md, RESULTS.md`);

function DIFFUSION() {
  return [
    { method: 'DDRM', evaluations: '20', source: 'Kawar, Elad, Ermon, Song: Denoising Diffusion Restoration Models, NeurIPS 2022 (20 NFEs in their experiments)' },
    { method: 'DDNM', evaluations: '100', source: 'Wang, Yu, Zhang: Zero-Shot Image Restoration Using Denoising Diffusion Null-Space Model, ICLR 2023 (100 DDIM steps; DDNM+ time travel adds more)' },
    {
      method: 'RePaint (inpainting)',
      evaluations: '~2,400 (T = 250, r = 10, j = 10)',
      source: 'Lugmayr et al.: RePaint: Inpainting using Denoising Diffusion Probabilistic Models, CVPR 2022; the evaluation count is ours, from its published jump schedule (4,571 transitions, 2,411 of them denoising steps)',
    },
  ];
}

function markdown(r) {
  const m = r.meta;
  const l = m.machine;
  const t = r.torch;
  let s = `## Speed\n\nMeasured ${m.startedAt} in ${m.seconds} s${m.smoke ? ' (**smoke run**: tiny subset, not a result)' : ''}. Model \`${m.model}\` ` +
    `(${m.modelName}${t?.params ? `, ${t.params} parameters` : ''}), ${m.resolution}x${m.resolution}. Code: commit ${m.code.commit}${m.code.srcChanged.length ? ` with uncommitted changes in ${m.code.srcChanged.join(', ')}` : ''}. Machine: ${l.cores} x ${l.cpu}, Node ${l.node}, ` +
    `onnxruntime-node ${m.onnxruntime}${t?.torch ? `, PyTorch ${t.torch}` : ''}. Load average at the start ${l.loadavgAtStart.join(' / ')} (1/5/15 min); ` +
    `1-minute load during the run: ${l.load1DuringRun.map((v) => v.toFixed(2)).join(', ')}. ` +
    `The machine has ${l.cores} cores: a load above 1 means another process shared them, so 2-thread figures are the most affected.\n\n`;
  s += `### Per network evaluation (${m.resolution}x${m.resolution}, median of ${m.repeats} calls after 3 warm-up calls; batch 16: about half as many)\n\n`;
  s += `| threads | batch | onnxruntime ms/call | ms/image | PyTorch eager ms/call | PyTorch / onnxruntime | onnxruntime GFLOP/s | matmul peak GFLOP/s | efficiency |\n|---|---|---|---|---|---|---|---|---|\n`;
  for (const th of Object.keys(r.ortMs)) {
    for (const b of Object.keys(r.ortMs[th])) {
      const d = r.derived[th][b];
      s += `| ${th} | ${b} | ${r.ortMs[th][b]} | ${d.ortMsPerImage} | ${t?.eager_ms?.[th]?.[b] ?? '-'} | ${d.torchOverOrt ?? '-'} | ${d.ortGflops ?? '-'} | ${d.peakGflops ?? '-'} | ${d.efficiency !== null ? `${(d.efficiency * 100).toFixed(1)}%` : '-'} |\n`;
    }
  }
  if (t && !t.error) {
    s += `\nFLOPs per ${m.resolution}x${m.resolution} evaluation: **${(t.flops_per_eval_64 / 1e9).toFixed(3)} GFLOP** (2 x the multiply-accumulates of ` +
      `every convolution, linear layer and attention product, counted with PyTorch forward hooks on the training code's model). ` +
      `Peak: the fastest float32 matrix product measured in this run with the same thread count (median of 7 calls; ` +
      `onnxruntime MatMul, GFLOP/s by threads and size: ${JSON.stringify(r.ortMatmulBySize)}; PyTorch ${t.matmul_size}x${t.matmul_size} \`torch.mm\`: ` +
      `${JSON.stringify(t.matmul_gflops)}; the same as a PyTorch 1x1 convolution: ${JSON.stringify(t.conv1x1_gflops)}; this Debian PyTorch build ` +
      `uses a generic BLAS); efficiency = achieved / peak. ` +
      `PyTorch weights: ${t.weights} (weights do not change the speed).\n`;
  } else if (t?.error) {
    s += `\nPyTorch could not run: ${t.error}\n`;
  }
  s += `\n### The CLI end to end (${m.resolution}x${m.resolution} inpainting, centred box, default plan; onnxruntime's default threads; median of ${cliRuns} runs)\n\n`;
  s += `| --batch | images | evaluations each | wall s (one process, model load included) | images/s |\n|---|---|---|---|---|\n`;
  for (const [b, e] of Object.entries(r.e2e)) s += `| ${b} | ${e.images} | ${e.evaluations} | ${e.wallSeconds} | ${e.imagesPerSecond} |\n`;
  s += `\nStart-up (median of ${r.startup.runs}): \`cm --version\` ${r.startup.versionSeconds} s; a one-step edit of one image ` +
    `(16x16 -> 64x64 super-resolution, whole process) ${r.startup.oneStepEditSeconds} s.\n`;
  const f = r.fullres;
  s += `\n### Full resolution (the CLI, whole process, default plans; peak RSS from /usr/bin/time)\n\n`;
  s += `| case | evaluations | wall s | peak RSS MB | notes |\n|---|---|---|---|---|\n`;
  s += `| superres x4, ${f.superres.input} -> ${f.superres.output} (2 threads) | ${f.superres.evaluations} | ${f.superres.wallSeconds} | ${f.superres.maxRssMB ?? '-'} | ` +
    `${f.superres.pixelsPerSecondPerEval} output pixels/s per evaluation: ${(100 * f.superres.ratio).toFixed(0)}% of a ${m.resolution}x${m.resolution} evaluation's best rate, ${f.superres.singleEvalPixelsPerSecond} (${f.superres.oneEvalMs} ms per image at batch 4), ` +
    `${(100 * f.superres.ratioAlone).toFixed(0)}% of a single ${m.resolution}x${m.resolution} evaluation's ${f.superres.aloneEvalPixelsPerSecond} (${f.superres.aloneEvalMs} ms, one image per call); references timed just before and after the run |\n`;
  s += `| colorize, ${f.colorize.size} JPEG | ${f.colorize.evaluations} | ${f.colorize.wallSeconds} | ${f.colorize.maxRssMB ?? '-'} | coarse to fine, colours sampled up to 16 tiles across |\n`;
  for (const ext of ['jpg', 'png']) {
    const c = f[`inpaint30-${ext}`];
    s += `| inpaint a 30x30 hole, ${c.size} JPEG -> ${ext.toUpperCase()} | ${c.evaluations} | ${c.wallSeconds} | ${c.maxRssMB ?? '-'} | crop strategy: one window; decoding and encoding the photo included |\n`;
  }
  s += `\nSeconds per megapixel (output), one Kodak photo, default plans, whole process:\n\n| task | size | evaluations | wall s | s / MP | peak RSS MB |\n|---|---|---|---|---|---|\n`;
  for (const [k, e] of Object.entries(r.perMP)) s += `| ${k} | ${e.size} | ${e.evaluations} | ${e.wallSeconds} | ${e.secondsPerMegapixel} | ${e.maxRssMB ?? '-'} |\n`;
  const wk = r.worker;
  s += `\n### The inference worker (the model in a child process, the default) against the model in the CLI's own process (\`CM_INFERENCE=inline\`)\n\n`;
  s += `Same run, alternating the two. Per call: \`denoise\` through the runtime API at ${m.resolution}x${m.resolution}, ${wk.threads} thread(s), ` +
    `median after 3 warm-up calls; the difference is the cost of handing the batch to the worker and back (a copy each way, two process wake-ups).\n\n`;
  s += `| batch | worker ms/call | in-process ms/call | worker / in-process | overhead ms |\n|---|---|---|---|---|\n`;
  for (const [b, e] of Object.entries(wk.perCall)) s += `| ${b} | ${e.workerMs} | ${e.inlineMs} | ${e.ratio} | ${e.overheadMs} |\n`;
  s += `\nThe CLI end to end (${wk.cli.images} inpaintings as above, --batch 1, median of ${wk.cli.runs} runs each, whole process): ` +
    `worker ${wk.cli.workerSeconds} s, in-process ${wk.cli.inlineSeconds} s, ratio **${wk.cli.ratio}**.\n`;
  s += `\nWhat diffusion-based editors need for comparable tasks (quoted, not run):\n\n| method | network evaluations | source |\n|---|---|---|\n`;
  for (const d of r.diffusion) s += `| ${d.method} | ${d.evaluations} | ${d.source} |\n`;
  return s;
}

function spawnText(cmd, args, env = {}, timed = false) {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (e) => resolve({ code: -1, stdout, stderr: String(e) }));
    child.on('close', (code) => resolve({ code, stdout, stderr, ...(timed ? { seconds: (performance.now() - t0) / 1000 } : {}) }));
  });
}
