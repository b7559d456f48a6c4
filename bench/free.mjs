#!/usr/bin/env node
// bench:free (issue 19, item 4: "everything else that is free"), each measured before/after in one run, alternating,
// medians:
// 1. x4 super-resolution through the CLI (a Kodak24 crop, 4x box-down), the default against --overlap 4 / 16 and
//    --batch 2 / 8: wall seconds per output MP, PSNR against the ground truth, and against the default's output.
// 2. onnxruntime: a session made from the model against one made from its saved optimised graph
//    (optimizedModelFilePath, level all, then loaded with optimisations disabled): creation ms, one call's ms, the
//    largest output difference; intra-op threads 1 against 2.
// 3. The JS around the model calls: one CLI run under --cpu-prof; the main process's busy time outside start-up
//    (the model runs in the worker process) as a share of the run's wall time, and its largest functions.
//
//   node bench/free.mjs [--rounds 3] [--side 128] [--model PATH] [--out DIR] [--smoke]
//
// Writes free.json and free.md into --out (default bench/results).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CLI, ROOT, chooseModel, machine, parseFlags, records, RESULTS, round, runCli } from './lib/common.mjs';
import { loadPhoto, photoPaths } from './lib/data.mjs';
import { boxDown, crop, load, savePng } from './lib/images.mjs';
import { median, psnr } from './lib/metrics.mjs';

const flags = parseFlags(process.argv.slice(2));
const smoke = flags.smoke === true;
const outDir = typeof flags.out === 'string' ? flags.out : smoke ? join(tmpdir(), 'cm-bench-smoke') : RESULTS;
const rounds = Number(flags.rounds ?? (smoke ? 1 : 3));
const side = Number(flags.side ?? (smoke ? 32 : 128));
const model = await chooseModel(flags.model);
const work = mkdtempSync(join(tmpdir(), 'cm-bench-free-'));
mkdirSync(outDir, { recursive: true });
const log = (m) => process.stderr.write(`${m}\n`);
const result = { measuredAt: new Date().toISOString(), machine: machine(), model, rounds };

// ---- 1. tiles: overlap and batch, end to end -------------------------------------------------------------------------
const photo = await loadPhoto(photoPaths('kodak24')[0]);
const gt = crop(photo, Math.floor((photo.w - 4 * side) / 2), Math.floor((photo.h - 4 * side) / 2), 4 * side, 4 * side);
const input = join(work, 'in.png');
await savePng(boxDown(gt, 4), input);
const variants = [
  ['default (overlap 8, batch 4 tiles of 128)', []],
  ['--overlap 4', ['--overlap', '4']],
  ['--overlap 16', ['--overlap', '16']],
  ['--batch 2', ['--batch', '2']],
  ['--batch 8', ['--batch', '8']],
];
const runs = Object.fromEntries(variants.map(([n]) => [n, { seconds: [] }]));
for (let r = 0; r < rounds; r++) {
  for (const [name, extra] of variants) {
    const out = join(work, `out-${name.replace(/[^a-z0-9]+/gi, '-')}.png`);
    const run = await runCli(['superres', '-x', '4', input, '-o', out, '--model', model, '--seed', '0', '--device', 'cpu', '-q', '--json', '--force', ...extra]);
    const rec = records(run, name)[0];
    runs[name].seconds.push(run.seconds);
    runs[name].evaluations = rec.evaluations;
    runs[name].img = await load(out);
  }
}
const mp = (gt.w * gt.h) / 1e6;
const base = runs[variants[0][0]];
result.tiles = { input: `${side}x${side} (the 4x box-down of a ${4 * side}x${4 * side} crop of Kodak24 image 1)`, rows: {} };
for (const [name, v] of Object.entries(runs)) {
  const s = median(v.seconds);
  result.tiles.rows[name] = { seconds: round(s, 2), secondsPerMP: round(s / mp, 2), vsDefault: round(s / median(base.seconds), 3), psnr: round(psnr(v.img, gt), 3), psnrVsDefault: v === base ? null : round(psnr(v.img, base.img), 2) };
}
log(`tiles: ${JSON.stringify(result.tiles.rows)}`);

// ---- 2. onnxruntime: saved optimised graph, threads --------------------------------------------------------------------
const ort = await import('onnxruntime-node');
ort.env.logLevel = 'fatal';
const int8 = model.replace(/\.onnx$/, '-int8.onnx');
const sessionModel = readdirSync(join(model, '..')).includes(int8.split('/').pop()) ? int8 : model;
const noSpin = { extra: { session: { intra_op: { allow_spinning: '0' } } } };
const saved = join(work, 'optimised.onnx');
const create = async (path, o, threads = 2) => {
  const t0 = performance.now();
  const s = await ort.InferenceSession.create(path, { executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1, ...noSpin, ...o });
  return { s, ms: performance.now() - t0 };
};
await (await create(sessionModel, { graphOptimizationLevel: 'all', optimizedModelFilePath: saved })).s.release();
const b = smoke ? 1 : 4;
const x = new Float32Array(b * 3 * 128 * 128).map((_, i) => 0.5 * Math.sin(i * 0.013) + 0.1 * Math.cos(i * 0.7));
const feeds = { x: new ort.Tensor('float32', x, [b, 3, 128, 128]), sigma: new ort.Tensor('float32', new Float32Array(b).fill(0.2), [b]) };
const contenders = [
  ['the model, level all, 2 threads (the CLI)', sessionModel, { graphOptimizationLevel: 'all' }, 2],
  ['its saved optimised graph, level disabled, 2 threads', saved, { graphOptimizationLevel: 'disabled' }, 2],
  ['the model, level all, 1 thread', sessionModel, { graphOptimizationLevel: 'all' }, 1],
];
const ortRuns = Object.fromEntries(contenders.map(([n]) => [n, { create: [], call: [] }]));
let reference;
for (let r = 0; r < rounds; r++) {
  for (const [name, path, o, threads] of contenders) {
    const { s, ms } = await create(path, o, threads);
    ortRuns[name].create.push(ms);
    await s.run(feeds);
    for (let i = 0; i < (smoke ? 1 : 3); i++) {
      const t0 = performance.now();
      const out = await s.run(feeds);
      ortRuns[name].call.push(performance.now() - t0);
      reference ??= out.denoised.data.slice();
      let d = 0;
      for (let k = 0; k < reference.length; k++) d = Math.max(d, Math.abs(reference[k] - out.denoised.data[k]));
      ortRuns[name].maxDiff = Math.max(ortRuns[name].maxDiff ?? 0, d);
    }
    await s.release();
  }
}
result.ort = { model: sessionModel, call: `${b} tiles of 128x128`, rows: {} };
for (const [name, v] of Object.entries(ortRuns)) result.ort.rows[name] = { createMs: round(median(v.create), 0), callMs: round(median(v.call), 0), maxDiff: v.maxDiff };
log(`ort: ${JSON.stringify(result.ort.rows)}`);

// ---- 3. the JS around the model calls ------------------------------------------------------------------------------
const profDir = join(work, 'prof');
mkdirSync(profDir);
const t0 = performance.now();
const p = spawnSync(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${profDir}`, CLI, 'superres', '-x', '4', input, '-o', join(work, 'prof.png'), '--model', model, '--seed', '0', '--device', 'cpu', '-q', '--json', '--force'], { encoding: 'utf8', env: { ...process.env, ORT_DISABLE_TELEMETRY: '1' } });
const wall = (performance.now() - t0) / 1000;
records({ code: p.status, stdout: p.stdout, stderr: p.stderr }, 'profiled run');
// The main process's profile (the worker process writes its own: the one with the fewest samples in onnxruntime).
const profiles = readdirSync(profDir).map((f) => JSON.parse(readFileSync(join(profDir, f), 'utf8')));
const selfTimes = (p) => {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const t = {};
  for (let i = 0; i < p.samples.length; i++) {
    const f = byId.get(p.samples[i]).callFrame;
    const ours = f.url.includes(`${ROOT}dist/`);
    const key = `${ours ? '' : '~'}${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
    t[key] = (t[key] ?? 0) + (p.timeDeltas[i] ?? 0) / 1000;
  }
  return t;
};
const main = profiles.map(selfTimes).find((t) => Object.keys(t).some((k) => k.includes('sampler/sample.js'))) ?? {};
// Start-up (module loading, compiling) is not the JS around the model calls: only the functions of our dist/ (the
// pipeline, sampler, operators, tensors, I/O) and the garbage collector count.
const around = Object.entries(main).filter(([k]) => !k.startsWith('~') || k.startsWith('~(garbage collector)'));
const aroundMs = around.reduce((s, [, v]) => s + v, 0);
result.js = { wallSeconds: round(wall, 2), aroundModelSeconds: round(aroundMs / 1000, 2), share: round(aroundMs / 1000 / wall, 3), top: Object.fromEntries(around.sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => [k, round(v, 0)])) };
log(`js: ${JSON.stringify(result.js)}`);

result.loadavgAfter = machine().loadavg;
writeFileSync(join(outDir, 'free.json'), JSON.stringify(result, null, 1) + '\n');
let md = `## Free speed (issue 19 item 4), before/after in one run\n\nMeasured ${result.measuredAt}; ${result.machine.cores} x ${result.machine.cpu}, load average ${result.machine.loadavg.join(' / ')} at the start, ${result.loadavgAfter.join(' / ')} at the end; model \`${model}\`; medians of ${rounds}, alternating.\n`;
md += `\n### Tiles: overlap and batch, x4 superres of ${result.tiles.input}, whole process\n\n| variant | wall s | s per output MP | vs default | PSNR dB | PSNR vs the default's output |\n|---|---|---|---|---|---|\n`;
for (const [n, r] of Object.entries(result.tiles.rows)) md += `| ${n} | ${r.seconds} | ${r.secondsPerMP} | ${r.vsDefault} | ${r.psnr} | ${r.psnrVsDefault ?? '-'} |\n`;
md += `\n### onnxruntime (${result.ort.model.split('/').pop()}, one call of ${result.ort.call})\n\n| session | create ms | call ms | largest output difference |\n|---|---|---|---|\n`;
for (const [n, r] of Object.entries(result.ort.rows)) md += `| ${n} | ${r.createMs} | ${r.callMs} | ${r.maxDiff} |\n`;
md += `\n### The JS around the model calls (one profiled run, main process; the model runs in the worker process)\n\n${result.js.aroundModelSeconds} s of ${result.js.wallSeconds} s wall (${round(100 * result.js.share, 1)}%; profiling inflates it). Largest (self ms): ${Object.entries(result.js.top).map(([k, v]) => `\`${k}\` ${v}`).join(', ')}.\n`;
writeFileSync(join(outDir, 'free.md'), md);
log(`wrote ${join(outDir, 'free.md')}`);
