#!/usr/bin/env node
// Peak memory of every image task against the image size, and the estimate cm refuses images by (before decoding
// them: src/commands/memory.ts) checked against it. Not part of CI.
//
//   node bench/memory.mjs [--model PATH] [--out DIR] [--smoke]
//
// 1. Each task at three sizes (output pixels), on the CPU, one evaluation and one sample (memory does not grow with
//    the steps; more samples add an accumulator, measured in 3): the CLI's peak RSS and its inference worker's; and
//    colorize at four times the largest size, to check the lines beyond what they were fitted on.
// 2. The worker against the pixels of one model call (--tile 128, --batch 1, 4, 16).
// 3. --samples 2 against --samples 1 (superres, the largest size): the averaging buffers.
// Then a least-squares line per task (CLI peak minus the input file's bytes, against the pixels), and the estimate
// the CLI uses for each measured case next to the measured total: the run fails (exit 1) when any measured total is
// above its estimate. Writes memory.json and memory.md into --out (default bench/results; --smoke: a temporary
// folder, small sizes).
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { chooseModel, CLI, codeVersion, machine, parseFlags, records, RESULTS, ROOT, round } from './lib/common.mjs';
import { runWithPeak } from './lib/peak.mjs';

sharp.cache(false);
const flags = parseFlags(process.argv.slice(2));
const smoke = flags.smoke === true;
const outDir = typeof flags.out === 'string' ? flags.out : smoke ? join(tmpdir(), 'cm-bench-smoke') : RESULTS;
const model = await chooseModel(flags.model);
const { estimatePeak, callPixelsBound, MEMORY_MODEL } = await import(join(ROOT, 'dist', 'commands', 'memory.js'));
const { planProcesses } = await import(join(ROOT, 'dist', 'runtime', 'processes.js'));
// The CLI's inference processes on this machine (--threads 0), as its memory check counts them.
const PROCESSES = planProcesses(0, availableParallelism(), process.env.CM_INFERENCE_PROCESSES).processes;
mkdirSync(outDir, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'cm-bench-memory-'));
const t0 = Date.now();
const log = (msg) => process.stderr.write(`[${Math.round((Date.now() - t0) / 1000)}s] ${msg}\n`);
const MiB = 1 << 20;
const mb = (v) => round(v / MiB, 1);

// Output sizes: 0.8, 3.1 and 12 megapixels (a 12 MP camera photo is 4000x3000).
const SIZES = smoke ? [[256, 192], [512, 384], [768, 576]] : [[1024, 768], [2048, 1536], [4000, 3000]];
const TASKS = [
  { task: 'colorize', scale: 1, args: [] },
  { task: 'inpaint', scale: 1, args: ['--strategy', 'tile'], mask: true }, // the whole image, coarse to fine: inpaint's largest
  { task: 'superres', scale: 4, args: ['-x', '4'] },
  { task: 'denoise', scale: 1, args: ['--noise', '25'] },
  { task: 'stroke', scale: 1, args: [] },
];
const common = ['--model', model, '--device', 'cpu', '--seed', '0', '--steps', '1', '--samples', '1', '--json', '-q', '--force'];

/** A photo-like test image: smooth gradients with texture (its PNG is about as large as a photo's). */
async function makeImage(path, w, h) {
  const d = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const t = ((x * 13) ^ (y * 7)) & 31;
      d[i] = ((x * 200) / w + t) | 0;
      d[i + 1] = ((y * 200) / h + t) | 0;
      d[i + 2] = (((x + y) * 100) / (w + h) + 2 * t) | 0;
    }
  }
  await sharp(d, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path);
}

/** A centred box over a quarter of the image. */
async function makeMask(path, w, h) {
  const d = Buffer.alloc(w * h);
  for (let y = Math.floor(h / 4); y < Math.floor((3 * h) / 4); y++) d.fill(255, y * w + Math.floor(w / 4), y * w + Math.floor((3 * w) / 4));
  await sharp(d, { raw: { width: w, height: h, channels: 1 } }).png().toFile(path);
}

async function measure(label, task, input, args, what) {
  const run = await runWithPeak(CLI, [task, input, ...args, '-o', join(work, 'out.png'), ...common], { cwd: ROOT });
  const rec = records(run, label)[0];
  log(`${label}: cli ${mb(run.memory.cli)} MiB, worker ${mb(run.memory.worker)} MiB, ${round(run.seconds, 1)} s`);
  return { ...what, seconds: round(run.seconds, 1), evaluations: rec.evaluations, memory: run.memory };
}

// ---- 1. every task at three sizes ----------------------------------------------------------------------------------
const cases = [];
for (const t of TASKS) {
  for (const [w, h] of SIZES) {
    const [iw, ih] = [w / t.scale, h / t.scale];
    const input = join(work, `${t.task}-${w}.png`);
    await makeImage(input, iw, ih);
    const args = [...t.args];
    if (t.mask) {
      await makeMask(join(work, `mask-${w}.png`), iw, ih);
      args.push('--mask', join(work, `mask-${w}.png`));
    }
    const fileBytes = statSync(input).size; // the image's file (a mask's memory is in inpaint's line)
    cases.push(await measure(`${t.task} ${w}x${h}`, t.task, input, args, { task: t.task, width: w, height: h, pixels: w * h, inputPixels: iw * ih, fileBytes, samples: 1, batch: null }));
  }
}

// An image four times the largest above (48 megapixels), colorize only: the lines hold beyond what they were fitted on.
if (!smoke) {
  const [w, h] = [8000, 6000];
  const input = join(work, 'colorize-8000.png');
  await makeImage(input, w, h);
  const c = await measure(`colorize ${w}x${h}`, 'colorize', input, [], { task: 'colorize', width: w, height: h, pixels: w * h, inputPixels: w * h, fileBytes: statSync(input).size, samples: 1, batch: null });
  cases.push({ ...c, extrapolated: true });
}

// ---- 2. the worker against the pixels of one call ---------------------------------------------------------------------
const workerCases = [];
{
  const [w, h] = smoke ? [512, 512] : [1024, 1024];
  const input = join(work, 'worker.png');
  await makeImage(input, w, h);
  for (const batch of [1, 4, 16]) {
    const r = await measure(`worker, --batch ${batch}`, 'denoise', input, ['--noise', '25', '--tile', '128', '--batch', String(batch)], { task: 'denoise', width: w, height: h, pixels: w * h, inputPixels: w * h, fileBytes: statSync(input).size, samples: 1, batch, tile: 128 });
    workerCases.push({ ...r, callPixels: batch * 128 * 128 });
  }
}

// ---- 3. more than one sample ------------------------------------------------------------------------------------------
let samples;
{
  const [w, h] = SIZES.at(-1);
  const input = join(work, 'superres-samples.png');
  await makeImage(input, w / 4, h / 4);
  const one = cases.find((c) => c.task === 'superres' && c.width === w);
  const run = await runWithPeak(CLI, ['superres', input, '-x', '4', '-o', join(work, 'out.png'), ...common.filter((a, i, all) => a !== '--samples' && all[i - 1] !== '--samples'), '--samples', '2'], { cwd: ROOT });
  records(run, 'superres --samples 2');
  const two = { task: 'superres', width: w, height: h, pixels: w * h, inputPixels: (w * h) / 16, fileBytes: statSync(input).size, samples: 2, batch: null, seconds: round(run.seconds, 1), memory: run.memory };
  log(`superres --samples 2: cli ${mb(run.memory.cli)} MiB`);
  samples = { one, two, extraBytesPerPixel: round((two.memory.cli - one.memory.cli) / (w * h), 2) };
}

// ---- the fit, and the estimate against every measurement --------------------------------------------------------------
function line(points) {
  const n = points.length;
  const mx = points.reduce((s, p) => s + p[0], 0) / n;
  const my = points.reduce((s, p) => s + p[1], 0) / n;
  const sxx = points.reduce((s, p) => s + (p[0] - mx) ** 2, 0);
  const slope = points.reduce((s, p) => s + (p[0] - mx) * (p[1] - my), 0) / sxx;
  return { intercept: my - slope * mx, slope };
}
const fits = {};
for (const t of TASKS) {
  const pts = cases.filter((c) => c.task === t.task && !c.extrapolated).map((c) => [c.pixels, c.memory.cli - c.fileBytes]);
  const f = line(pts);
  fits[t.task] = { baseMiB: mb(f.intercept), bytesPerPixel: round(f.slope, 1), worstResidualMiB: mb(Math.max(...pts.map(([x, y]) => y - f.intercept - f.slope * x))) };
}
// Per inference process: the workers' peaks (added) over their count.
const wf = line(workerCases.map((c) => [c.callPixels, c.memory.worker / PROCESSES]));
fits.worker = { baseMiB: mb(wf.intercept), bytesPerCallPixel: round(wf.slope, 1) };

// The CLI's own defaults on the CPU: 4 tiles a call, as many fitted tiles as hold 4 of 128 (see perCall in common.ts).
const defaultTiling = { tile: 128, maxTile: 192, batch: 4, callPixels: 4 * 128 * 128 };
const estimateOf = (c) => {
  const tiling = c.batch === null ? defaultTiling : { tile: c.tile, maxTile: c.tile, batch: c.batch };
  return estimatePeak(c.task, { pixels: c.pixels, fileBytes: c.fileBytes, samples: c.samples, callPixels: callPixelsBound(tiling), modelBytes: statSync(model).size, processes: PROCESSES });
};
const checked = [...cases, ...workerCases, samples.two].map((c) => ({ ...c, estimate: estimateOf(c), ratio: round(estimateOf(c) / c.memory.total, 2) }));
const under = checked.filter((c) => c.estimate < c.memory.total);

const result = {
  meta: { date: new Date().toISOString(), model, machine: machine(), code: codeVersion(), seconds: Math.round((Date.now() - t0) / 1000), smoke },
  fits,
  samples: { extraBytesPerPixel: samples.extraBytesPerPixel },
  memoryModel: MEMORY_MODEL,
  cases: checked,
};
writeFileSync(join(outDir, 'memory.json'), `${JSON.stringify(result, null, 2)}\n`);

let md = `## Peak memory (\`npm run bench:memory\`)\n\n`;
md += `${result.meta.date.slice(0, 10)}, ${result.meta.machine.cpu} (${result.meta.machine.cores} cores), model ${model.replace(ROOT, '')}, CPU, one evaluation, one sample, default tiling unless said. `;
md += `Peak RSS of the CLI (from /usr/bin/time) and of its inference worker (its VmHWM, polled every 5 ms); total = the two peaks added. `;
md += `Estimate = what cm computes before decoding (src/commands/memory.ts); it must be at least the total.\n\n`;
md += `| task | output size | MP | input file KB | CLI MiB | worker MiB | total MiB | estimate MiB | estimate / total | s |\n|---|---|---|---|---|---|---|---|---|---|\n`;
for (const c of checked) {
  const what = c.batch !== null ? `${c.task} --tile ${c.tile} --batch ${c.batch}` : c.samples > 1 ? `${c.task} --samples ${c.samples}` : c.extrapolated ? `${c.task} (not fitted on)` : c.task;
  md += `| ${what} | ${c.width}x${c.height} | ${round(c.pixels / 1e6, 2)} | ${Math.round(c.fileBytes / 1024)} | ${mb(c.memory.cli)} | ${mb(c.memory.worker)} | ${mb(c.memory.total)} | ${mb(c.estimate)} | ${c.ratio} | ${c.seconds} |\n`;
}
md += `\nLeast-squares lines (CLI peak minus the input file's bytes, against the output pixels): `;
md += TASKS.map((t) => `${t.task} ${fits[t.task].baseMiB} MiB + ${fits[t.task].bytesPerPixel} B/pixel (worst point ${fits[t.task].worstResidualMiB} MiB above)`).join('; ');
md += `. Worker: ${fits.worker.baseMiB} MiB + ${fits.worker.bytesPerCallPixel} B per pixel of one model call. A second sample adds ${samples.extraBytesPerPixel} B/pixel to the CLI.\n`;
writeFileSync(join(outDir, 'memory.md'), md);
process.stdout.write(md);
rmSync(work, { recursive: true, force: true });
if (under.length > 0) {
  process.stderr.write(`the estimate is below the measured peak for: ${under.map((c) => `${c.task} ${c.width}x${c.height}`).join(', ')}\n`);
  process.exit(1);
}
