#!/usr/bin/env node
// Quality benchmark of cm's editing tasks against classical baselines, through the CLI's own code path (bin/cm.js is
// spawned once per task and plan, on a folder of inputs written to a temporary folder).
//
//   node bench/quality.mjs [--model PATH] [--out DIR] [--crops N] [--full-every K] [--no-full]
//                          [--threads N] [--deadline HH:MM] [--python PATH] [--only superres,colorize,...]
//                          [--compare OTHER/bin/cm.js [--compare-label NAME]] [--precisions] [--smoke]
//   node bench/quality.mjs --rewrite [--out DIR]   (quality.md and RESULTS.md again from quality.json: no measuring)
//
// Main table: 64x64 crops (the model's size) of Kodak24, and of Set5 for super-resolution; cm with the model's own
// per-task defaults, with --steps 1, and with the paper's sampler (start from the known data at sigma_max, eta 1),
// next to the classical methods a user would compare with (PIL bicubic / Lanczos, OpenCV Telea / Navier-Stokes, the
// harmonic fill, scikit-image non-local means: bench/baselines.py). Every PSNR has a sharpness figure beside it
// (high-frequency energy relative to the ground truth's). A targets table says which quality targets are met.
// Second table: whole photos through the CLI. Writes quality.json, quality.md, RESULTS.md and contact sheets
// (100% zoom) into --out (default bench/results; with --smoke a temporary folder). --only keeps the variants whose id
// or family is listed; --compare also runs another build's CLI (e.g. the main branch's) with its defaults, in the same
// run, as "cm (defaults), NAME".
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { assembleResults, chooseModel, codeVersion, machine, modelCard, parseFlags, records, RESULTS, ROOT, round, runCli } from './lib/common.mjs';
import {
  MASK_FAMILIES,
  cropToMultiple,
  cropsOf,
  loadPhoto,
  makeMask,
  maskPlane,
  photoPaths,
  regionColourError,
  strokePainting,
  withHole,
} from './lib/data.mjs';
import { addNoise, boxDown, contactSheet, crop, gaussianBlur, grayOf, load, quantize, saveGrayPng, savePng, upNearest } from './lib/images.mjs';
import { blockinessRatio, channel, colourfulness, hfEnergy, mean, nearestFill, psnr, psnrY, ssimCrossCheck, ssimRgb, ssimY, textureRatio } from './lib/metrics.mjs';
import { cmEstimate } from './lib/estimates.mjs';

const flags = parseFlags(process.argv.slice(2));
const smoke = flags.smoke === true;
const outDir = typeof flags.out === 'string' ? flags.out : smoke ? join(tmpdir(), 'cm-bench-smoke') : RESULTS;
const python = typeof flags.python === 'string' ? flags.python : '/usr/bin/python3';
const perPhoto = Number(flags.crops ?? (smoke ? 1 : 2));
const fullEvery = Number(flags['full-every'] ?? 6);
// One model thread per process: on a 2-core machine shared with other jobs, 2 threads were up to 2x slower, not faster.
const threads = String(flags.threads ?? 1);
const full = flags['no-full'] !== true;
const only = typeof flags.only === 'string' ? flags.only.split(',') : null;
const compare = typeof flags.compare === 'string' ? { name: `cm (defaults), ${flags['compare-label'] ?? 'compared build'}`, args: [], cli: flags.compare } : null;
if (flags.rewrite === true) {
  // The tables again from the measurements (after a change to how they are presented); the sheets stay as listed.
  const { meta, main, fullRes } = JSON.parse(readFileSync(join(outDir, 'quality.json'), 'utf8'));
  const md = readFileSync(join(outDir, 'quality.md'), 'utf8');
  const sheets = [...md.matchAll(/^!\[([^\]]+)\]\(\1\)$/gm)].map((m) => m[1]);
  writeFileSync(join(outDir, 'quality.md'), markdown(meta, main, fullRes, sheets));
  assembleResults(outDir);
  process.exit(0);
}
const model = await chooseModel(flags.model);
const card = await modelCard(model);
const RES = card.resolution;
// The cm runs of every variant: the model's own defaults for the task, --steps 1, and the paper's sampler with the
// model's two-evaluation plan from sigma_max (start from the known data, fresh noise at each step).
const paperTs = (card.plans['2'] ?? [0, Math.round(0.55 * (card.grid.size - 1)), card.grid.size - 1]).join(',');
// --precisions: only the defaults (--precision auto: int8 on a CPU with VNNI or AMX) and the float model's, the
// 0.05 dB check of the int8 variant.
const CM_RUNS = flags.precisions === true ? [
  { name: 'cm (defaults)', args: [] },
  { name: 'cm (defaults), --precision float', args: ['--precision', 'float'] },
] : [
  { name: 'cm (defaults)', args: [] },
  ...(compare ? [compare] : []),
  ...(smoke ? [] : [{ name: 'cm --steps 1', args: ['--steps', '1'] }]),
  { name: 'cm, paper sampler', args: ['--ts', paperTs, '--start', 'known', '--eta', '1'], paper: true },
];
const started = performance.now();
const startedAt = new Date().toISOString();
const loadBefore = machine().loadavg;
mkdirSync(outDir, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'cm-bench-quality-'));
const log = (msg) => process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0)}s] ${msg}\n`);

// ---- tasks --------------------------------------------------------------------------------------------------------

// sharp: high-frequency energy (mean squared difference to a sigma-1 Gaussian blur) relative to the ground truth's:
// below 1 a blur, near 1 as detailed as the photo (inpainting: inside the hole).
const sharpness = (img, gt, mask) => textureRatio(img, gt, mask);
const srMetrics = (img, gt) => ({ psnr: psnr(img, gt), sharp: sharpness(img, gt), ssim: ssimRgb(img, gt), psnrY: psnrY(img, gt), ssimY: ssimY(img, gt) });
const holeMetrics = (img, gt, ctx) => ({ psnr: psnr(img, gt, ctx.mask), sharp: sharpness(img, gt, ctx.mask), ssim: ssimRgb(img, gt, ctx.mask) });
const denoiseMetrics = (img, gt) => ({ psnr: psnr(img, gt), sharp: sharpness(img, gt), ssim: ssimRgb(img, gt) });
const colourMetrics = (img, gt) => ({ psnr: psnr(img, gt), sharp: sharpness(img, gt), ssim: ssimRgb(img, gt), colourfulness: colourfulness(img) });
const strokeMetrics = (img, gt, ctx) => ({ colourError: regionColourError(img, ctx.strokes), hf: hfEnergy(img) });

// blockiness: energy across the p x p patch borders over that inside patches, relative to the ground truth's (1: as
// blocky as the photo; a patch grid shows above).
function superres(p) {
  return {
    id: `superres x${p}`,
    family: 'superres',
    task: 'superres',
    cliArgs: ['-x', String(p)],
    python: (inDir, _maskDir, out) => ['superres', '--scale', String(p), inDir, out],
    peerScale: p,
    async prepare(gt) {
      const low = boxDown(gt, p);
      return {
        input: low,
        show: upNearest(low, p),
        baselines: {
          "Lanczos + patch means (cm's start)": await cmEstimate('superres', low, { scale: p }),
          "Lanczos + patch means per patch (cm's old start)": await cmEstimate('superres', low, { scale: p, correction: 'orthogonal' }),
        },
      };
    },
    metrics: (img, gt) => ({ ...srMetrics(img, gt), blockiness: blockinessRatio(img, gt, p) }),
  };
}

function inpaint(family) {
  return {
    id: `inpaint ${family}`,
    family: 'inpaint',
    task: 'inpaint',
    cliArgs: [],
    python: (inDir, maskDir, out) => ['inpaint', inDir, maskDir, out],
    async prepare(gt, i) {
      const mask = makeMask(family, gt.w, gt.h, 7000 + i);
      const input = withHole(gt, mask); // the hole's pixels never reach the CLI
      return { input, mask, show: input, baselines: { "harmonic fill (cm's start)": await cmEstimate('inpaint', input, { mask }), nearest: nearestFill(input, mask) }, ctx: { mask } };
    },
    metrics: holeMetrics,
  };
}

const colorize = {
  id: 'colorize',
  family: 'colorize',
  task: 'colorize',
  cliArgs: [],
  async prepare(gt) {
    const gray = quantize(grayOf(gt));
    return { input: gray, gray: true, show: gray, baselines: { 'gray input': gray } };
  },
  metrics: colourMetrics,
};

function denoise(sigma) {
  return {
    id: `denoise ${sigma}`,
    family: 'denoise',
    task: 'denoise',
    cliArgs: ['--noise', String(sigma)],
    python: (inDir, _maskDir, out) => ['denoise', '--sigma', String(sigma), inDir, out],
    paperArgs: ['--steps', '1', '--eta', '1'],
    // Of the non-local-means strengths, only the best on these images is kept (an oracle choice, like the blur's).
    oracle: /^non-local means/,
    async prepare(gt, i) {
      const noisy = addNoise(gt, sigma, 9000 + i);
      return { input: noisy, show: noisy, baselines: { 'noisy input': noisy } };
    },
    // The Gaussian blur's width is tuned per noise level on the benchmark images themselves (an oracle choice, which
    // favours the baseline).
    // The whole photos reuse the width tuned on the crops (same photos, same scale, same noise).
    tune(items) {
      let best = null;
      for (const s of this.tuned ? [this.tuned] : [0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.8, 2.1, 2.5, 3.0]) {
        const blurred = items.map((it) => quantize(gaussianBlur(it.input, s)));
        const score = mean(items.map((it, k) => psnr(blurred[k], it.gt)));
        if (!best || score > best.score) best = { s, score, blurred };
      }
      items.forEach((it, k) => (it.baselines[`gaussian blur (sigma ${best.s})`] = best.blurred[k]));
      this.tuned ??= best.s;
    },
    metrics: denoiseMetrics,
  };
}

const stroke = {
  id: 'stroke',
  family: 'stroke',
  task: 'stroke',
  cliArgs: [],
  // The paper's SDEdit plan: sigma 5.38 then 2.24 (ts 16,20,39), fresh noise.
  paperArgs: ['--ts', '16,20,39', '--eta', '1'],
  async prepare(gt) {
    const strokes = strokePainting(gt);
    // No ground truth: the photo the strokes were made from is shown as the natural reference.
    return { input: strokes.painting, show: strokes.painting, baselines: { 'stroke input': strokes.painting, 'source photo': gt }, ctx: { strokes } };
  },
  metrics: strokeMetrics,
};

const ALL = [
  ...[2, 4, 8].map(superres),
  ...MASK_FAMILIES.map(inpaint),
  colorize,
  ...[15, 25, 50].map(denoise),
  stroke,
];

// ---- running one variant over a set of images ----------------------------------------------------------------------

async function runVariant(v, images, { label, runs, keepIdx }) {
  const dir = join(work, `${label}-${v.id.replace(/\s+/g, '-')}`);
  const inDir = join(dir, 'in');
  const maskDir = join(dir, 'mask');
  mkdirSync(inDir, { recursive: true });
  mkdirSync(maskDir, { recursive: true });
  const items = [];
  for (let i = 0; i < images.length; i++) {
    const { stem, img: gt } = images[i];
    const prep = await v.prepare(gt, i);
    const item = { stem, gt, ...prep, ctx: prep.ctx ?? {} };
    if (prep.gray) await saveGrayPng(Float32Array.from({ length: gt.w * gt.h }, (_, p) => prep.input.data[p * 3]), gt.w, gt.h, join(inDir, `${stem}.png`));
    else await savePng(prep.input, join(inDir, `${stem}.png`));
    if (prep.mask) await saveGrayPng(maskPlane(prep.mask), gt.w, gt.h, join(maskDir, `${stem}.png`));
    items.push(item);
  }
  if (v.python) await pythonBaselines(v, items, inDir, maskDir, join(dir, 'baselines'));
  if (v.peerScale) await peerBaselines(v, items, inDir, join(dir, 'peer'));
  v.tune?.(items);
  const methods = {};
  const add = (name, m) => {
    methods[name] ??= {};
    for (const [k, val] of Object.entries(m)) (methods[name][k] ??= []).push(val);
  };
  for (const it of items) for (const [name, img] of Object.entries(it.baselines)) add(name, v.metrics(img, it.gt, it.ctx));
  if (v.family === 'colorize') for (const it of items) add('ground truth', { colourfulness: colourfulness(it.gt) });
  const timing = {};
  const settings = {};
  const launch = (run) => {
    const outK = join(dir, `out-${run.name.replace(/[^a-z0-9]+/gi, '-')}`);
    const args = [v.task, inDir, '--out-dir', outK, '--name', '{stem}.{ext}', '--model', model, '--device', 'cpu', '--seed', '0',
      '--threads', threads, '-q', '--json', '--batch', '16', ...v.cliArgs, ...(run.paper && v.paperArgs ? v.paperArgs : run.args)];
    if (v.task === 'inpaint') args.push('--mask', maskDir);
    return runCli(args, { cli: run.cli }).then((result) => ({ result, outK, run }));
  };
  let next = launch(runs[0]);
  for (let j = 0; j < runs.length; j++) {
    const { result, outK, run } = await next;
    next = j + 1 < runs.length ? launch(runs[j + 1]) : null;
    const recs = records(result, `${label} ${v.id} ${run.name}`);
    const r0 = recs[0] ?? {};
    const name = run.name;
    settings[name] = { evaluations: r0.evaluations, ts: r0.ts, start: r0.start, eta: r0.eta, samples: r0.samples };
    timing[name] = round(result.seconds, 2);
    for (let i = 0; i < items.length; i++) {
      const img = await load(join(outK, `${items[i].stem}.png`));
      if (img.w !== items[i].gt.w || img.h !== items[i].gt.h) throw new Error(`${v.id}: output ${img.w}x${img.h} for a ${items[i].gt.w}x${items[i].gt.h} target`);
      add(name, v.metrics(img, items[i].gt, items[i].ctx));
      if (keepIdx.includes(i)) (items[i].outputs ??= []).push(img);
    }
  }
  const summary = {};
  for (const [name, ms] of Object.entries(methods)) {
    summary[name] = Object.fromEntries(Object.entries(ms).map(([k, xs]) => [k, round(mean(xs), k.startsWith('ssim') || k === 'sharp' ? 3 : 2)]));
  }
  if (v.oracle) {
    // Keep only the best of a baseline's tuned variants (by mean PSNR).
    const tuned = Object.keys(summary).filter((n) => v.oracle.test(n));
    const best = tuned.reduce((a, n) => (summary[n].psnr > summary[a].psnr ? n : a), tuned[0]);
    for (const n of tuned) if (n !== best) delete summary[n];
    for (const it of items) for (const n of tuned) if (n !== best) delete it.baselines[n];
  }
  if (v.family === 'stroke') {
    // High-frequency energy against natural photos (the crops the strokes came from).
    const natural = summary['source photo'].hf;
    for (const s of Object.values(summary)) s.hfRatio = round(s.hf / natural, 3);
  }
  const kept = keepIdx.filter((i) => i < items.length).map((i) => items[i]);
  log(`${label} ${v.id}: ${items.length} images, ${Object.entries(timing).map(([k, s]) => `${k} ${s}s`).join(', ')}`);
  return { n: items.length, methods: summary, settings, cliSeconds: timing, kept };
}

/** The library baselines of a variant (bench/baselines.py), added to each item's baselines; noted when missing. */
const missingBaselines = new Set();
async function pythonBaselines(v, items, inDir, maskDir, out) {
  const r = spawnSync(python, [join(ROOT, 'bench', 'baselines.py'), ...v.python(inDir, maskDir, out)], { encoding: 'utf8' });
  if (r.status !== 0) {
    const why = (r.stdout || r.stderr || String(r.error)).trim().split('\n').pop();
    missingBaselines.add(`${v.id}: ${why}`);
    log(`${v.id}: library baselines not measured: ${why}`);
    return;
  }
  for (const method of readdirSync(out)) {
    for (const it of items) {
      const path = join(out, method, `${it.stem}.png`);
      if (existsSync(path)) it.baselines[method] = await load(path);
    }
  }
}

/**
 * The peer of issue 19 as a superres baseline: UpscalerJS's ESRGAN slim and medium (bench/upscalerjs.mjs, one process
 * per model over the folder) on the same low-res input as cm; noted when it cannot run.
 */
async function peerBaselines(v, items, inDir, out) {
  for (const which of ['slim', 'medium']) {
    const r = spawnSync(process.execPath, [join(ROOT, 'bench', 'upscalerjs.mjs'), which, inDir, join(out, which), '--scale', String(v.peerScale)], { encoding: 'utf8' });
    if (r.status !== 0) {
      const why = (r.stderr || r.stdout || String(r.error)).trim().split('\n').pop();
      missingBaselines.add(`${v.id}: UpscalerJS esrgan-${which}: ${why}`);
      log(`${v.id}: UpscalerJS esrgan-${which} not measured: ${why}`);
      continue;
    }
    for (const it of items) {
      const path = join(out, which, `${it.stem}.png`);
      if (existsSync(path)) it.baselines[`UpscalerJS esrgan-${which}`] = await load(path);
    }
  }
}

// ---- image sets ---------------------------------------------------------------------------------------------------

const kodakPaths = photoPaths('kodak24').slice(0, smoke ? 2 : undefined);
const set5Paths = smoke ? [] : photoPaths('set5');
const kodakCrops = [];
for (const [j, path] of kodakPaths.entries()) {
  const photo = await loadPhoto(path);
  for (const [k, c] of cropsOf(photo, perPhoto, RES, 1000 + j).entries()) {
    kodakCrops.push({ stem: `${basename(path, '.png')}-${k}`, img: c.img });
  }
}
const set5Crops = [];
for (const [j, path] of set5Paths.entries()) {
  const photo = await loadPhoto(path);
  for (const [k, c] of cropsOf(photo, perPhoto, RES, 2000 + j).entries()) set5Crops.push({ stem: `set5-${j + 1}-${k}`, img: c.img });
}
log(`model ${model}; ${kodakCrops.length} Kodak24 crops, ${set5Crops.length} Set5 crops; cm runs: ${CM_RUNS.map((r) => r.name).join(', ')}`);

const keepMain = [0, Math.min(kodakCrops.length - 1, perPhoto * 12 + 1)];
const fullSheets = {}; // variant -> one row of 100% windows of a whole photo
const main = {};
const fullRes = {};
const sheets = {};
const skipped = [];

// Our SSIM against the ssim.js package on two images of the run (green channel).
const [ca, cb] = [kodakCrops[0].img, kodakCrops[kodakCrops.length - 1].img];
const ssimCheck = ssimCrossCheck(channel(ca, 1), channel(cb, 1), ca.w, ca.h);
ssimCheck.absDiff = Math.abs(ssimCheck.ssimjs - ssimCheck.ours);
if (!(ssimCheck.absDiff < 1e-6)) throw new Error(`SSIM differs from ssim.js: ${JSON.stringify(ssimCheck)}`);

// --deadline HH:MM (UTC, today) or an ISO time: variants not started by then are skipped and listed as such.
const deadline = typeof flags.deadline === 'string'
  ? Date.parse(/^\d\d:\d\d$/.test(flags.deadline) ? `${startedAt.slice(0, 10)}T${flags.deadline}:00Z` : flags.deadline)
  : Infinity;
const inTime = (what) => {
  if (Date.now() < deadline) return true;
  skipped.push(what);
  log(`skipped ${what}: past the deadline`);
  return false;
};

const chosen = only ? ALL.filter((v) => only.includes(v.id) || only.includes(v.family)) : ALL;
if (only && chosen.length === 0) throw new Error(`--only ${flags.only}: no variant has that id or family (${ALL.map((v) => v.id).join(', ')})`);
const mainVariants = smoke ? chosen.filter((v) => ['superres x4', 'inpaint box', 'colorize', 'denoise 25', 'stroke'].includes(v.id)) : chosen;
for (const v of mainVariants) {
  if (!inTime(`${v.id} / crops`)) continue;
  const r = await runVariant(v, kodakCrops, { label: 'kodak-crops', runs: CM_RUNS, keepIdx: keepMain });
  main[`${v.id} / Kodak24 crops`] = { variant: v.id, images: 'Kodak24 crops', family: v.family, n: r.n, methods: r.methods, settings: r.settings, cliSeconds: r.cliSeconds };
  (sheets[v.family] ??= []).push(...r.kept.map((it) => [it.show, Object.values(it.baselines)[0], ...(it.outputs ?? []), it.gt]));
  if (v.family === 'superres' && set5Crops.length && inTime(`${v.id} / Set5 crops`)) {
    const s = await runVariant(v, set5Crops, { label: 'set5-crops', runs: CM_RUNS, keepIdx: [] });
    main[`${v.id} / Set5 crops`] = { variant: v.id, images: 'Set5 crops', family: v.family, n: s.n, methods: s.methods, settings: s.settings, cliSeconds: s.cliSeconds };
  }
  await writeAll(false);
}

// Whole photos at full resolution (tiles, coarse to fine, windows around holes): fewer photos, the defaults.
if (full) {
  const fullKodak = smoke ? kodakPaths.slice(0, 1) : kodakPaths.filter((_, j) => j % fullEvery === 0);
  const photos = [];
  for (const path of fullKodak) photos.push({ stem: basename(path, '.png'), img: cropToMultiple(await loadPhoto(path), 8) });
  const set5Full = [];
  for (const [j, path] of set5Paths.entries()) set5Full.push({ stem: `set5-${j + 1}`, img: cropToMultiple(await loadPhoto(path), 8) });
  const fullVariants = smoke ? chosen.filter((v) => ['superres x4', 'inpaint box'].includes(v.id)) : chosen.filter((v) => v.family !== 'stroke');
  const fullRuns = [CM_RUNS[0], ...(compare ? [compare] : [])];
  for (const v of fullVariants) {
    if (!inTime(`${v.id} / Kodak24 full`)) continue;
    const r = await runVariant(v, photos, { label: 'kodak-full', runs: fullRuns, keepIdx: [0] });
    fullRes[`${v.id} / Kodak24 full`] = { variant: v.id, images: `Kodak24 full (${photos.length} photo${photos.length === 1 ? '' : 's'})`, family: v.family, n: r.n, methods: r.methods, settings: r.settings, cliSeconds: r.cliSeconds };
    // A 256x256 window of the first photo at 100% zoom (nothing resized): input, first baseline, cm, ground truth.
    const it = r.kept[0];
    if (it) {
      const side = Math.min(256, it.gt.w, it.gt.h);
      const x0 = Math.floor((it.gt.w - side) / 2);
      const y0 = Math.floor((it.gt.h - side) / 2);
      const cut = (img) => crop(img, x0, y0, side, side);
      fullSheets[v.id.replace(/\s+/g, '-')] = { side, row: [cut(it.show), cut(Object.values(it.baselines)[0]), ...(it.outputs ?? []).map(cut), cut(it.gt)] };
    }
    if (v.family === 'superres' && set5Full.length && inTime(`${v.id} / Set5 full`)) {
      const s = await runVariant(v, set5Full, { label: 'set5-full', runs: fullRuns, keepIdx: [] });
      fullRes[`${v.id} / Set5 full`] = { variant: v.id, images: 'Set5 full', family: v.family, n: s.n, methods: s.methods, cliSeconds: s.cliSeconds };
    }
    await writeAll(false);
  }
}

await writeAll(true);
rmSync(work, { recursive: true, force: true });
log(`wrote ${join(outDir, 'quality.json')}, quality.md, RESULTS.md and the contact sheets`);

/** Write everything measured so far (after each variant, so that an interrupted run still leaves its tables). */
async function writeAll(done) {
  const sheetFiles = [];
  for (const [family, rows] of Object.entries(sheets)) {
    const file = `sheet-${family}.png`;
    await contactSheet(rows, RES, join(outDir, file));
    sheetFiles.push(file);
  }
  for (const [id, { side, row }] of Object.entries(fullSheets)) {
    const file = `sheet-full-${id}.png`;
    await contactSheet([row], side, join(outDir, file));
    sheetFiles.push(file);
  }
  const meta = {
    startedAt,
    seconds: round((performance.now() - started) / 1000, 1),
    complete: done,
    model,
    modelName: card.name,
    resolution: RES,
    cmRuns: CM_RUNS.map((r) => ({ name: r.name, args: r.args.join(' '), ...(r.cli ? { cli: r.cli } : {}) })),
    only,
    missingBaselines: [...missingBaselines],
    cropsPerPhoto: perPhoto,
    threads,
    fullEvery,
    kodakCrops: kodakCrops.length,
    set5Crops: set5Crops.length,
    smoke,
    skipped,
    machine: { ...machine(), loadavgAtStart: loadBefore },
    ssimCheck,
    code: codeVersion(),
    seeds: 'cm --seed 0 (image i of a batch gets seed i); crops, masks and noise from fixed seeds in bench/lib',
  };
  writeFileSync(join(outDir, 'quality.json'), JSON.stringify({ meta, main, fullRes }, null, 1) + '\n');
  writeFileSync(join(outDir, 'quality.md'), markdown(meta, main, fullRes, sheetFiles));
  assembleResults(outDir);
}

function markdown(meta, main, fullRes, sheetFiles) {
  const cols = {
    superres: [['psnr', 'PSNR'], ['sharp', 'sharpness'], ['blockiness', 'blockiness'], ['ssim', 'SSIM'], ['psnrY', 'PSNR-Y'], ['ssimY', 'SSIM-Y']],
    inpaint: [['psnr', 'PSNR (hole)'], ['sharp', 'sharpness (hole)'], ['ssim', 'SSIM (hole)']],
    colorize: [['psnr', 'PSNR'], ['sharp', 'sharpness'], ['ssim', 'SSIM'], ['colourfulness', 'colourfulness']],
    denoise: [['psnr', 'PSNR'], ['sharp', 'sharpness'], ['ssim', 'SSIM']],
    stroke: [['colourError', 'region colour error'], ['hf', 'HF energy'], ['hfRatio', 'HF / natural']],
  };
  const titles = {
    superres: 'Super-resolution (input: box average of the target)',
    inpaint: 'Inpainting (metrics inside the hole)',
    colorize: 'Colorization (input: the luminance)',
    denoise: 'Denoising (Gaussian noise, 0-255 units, input rounded to 8 bits)',
    stroke: 'Stroke-guided generation (no ground truth)',
  };
  const table = (results) => {
    let s = '';
    for (const family of Object.keys(cols)) {
      const entries = Object.entries(results).filter(([, r]) => r.family === family);
      if (!entries.length) continue;
      s += `\n#### ${titles[family]}\n\n| variant | images | n | method | ${cols[family].map(([, t]) => t).join(' | ')} |\n|---|---|---|---|${cols[family].map(() => '---|').join('')}\n`;
      for (const [, r] of entries) {
        for (const [name, m] of Object.entries(r.methods)) {
          const bold = name.startsWith('cm');
          const how = r.settings?.[name];
          const label = how ? `**${name}**: ${describeSettings(how)}` : name;
          s += `| ${r.variant} | ${r.images} | ${r.n} | ${label} | ${cols[family].map(([k]) => fmt(m[k])).join(' | ')} |\n`;
        }
      }
    }
    return s;
  };
  const verdicts = (results) => {
    let s = '\n| variant | images | best baseline (PSNR, sharpness) | cm defaults (PSNR, sharpness) | cm - baseline | verdict |\n|---|---|---|---|---|---|\n';
    for (const r of Object.values(results)) {
      if (r.family === 'stroke') continue;
      // cm's own start counts as a baseline where it is a classical method a user has (the harmonic fill, the gray
      // input), not where it is ours (Lanczos + patch means).
      const ours = (n) => r.family === 'superres' && /cm's (old )?start/.test(n);
      const base = Object.entries(r.methods).filter(([n]) => !n.startsWith('cm') && n !== 'ground truth' && !ours(n));
      const c = r.methods['cm (defaults)'];
      if (!base.length || !c) continue;
      const b = base.reduce((a, x) => (x[1].psnr > a[1].psnr ? x : a));
      const raw = c.psnr - b[1].psnr;
      const d = Math.abs(raw) < 0.005 ? 0 : raw; // a tie below what the table shows
      s += `| ${r.variant} | ${r.images} | ${b[0]}: ${fmt(b[1].psnr)}, ${fmt(b[1].sharp)} | ${fmt(c.psnr)}, ${fmt(c.sharp)} | ${d >= 0 ? '+' : ''}${d.toFixed(2)} dB | ${d === 0 ? 'ties the baseline' : d > 0 ? 'beats the baseline' : '**misses the baseline**'} |\n`;
    }
    return s;
  };
  const l = meta.machine;
  let s = `## Quality\n\nMeasured ${meta.startedAt} in ${meta.seconds} s${meta.smoke ? ' (**smoke run**: tiny subset, not a result)' : ''}` +
    `${meta.complete ? '' : ' (**run in progress or interrupted**: partial tables)'}. ` +
    `${meta.skipped.length ? `Not measured (past the run's --deadline): ${meta.skipped.join(', ')}. ` : ''}` +
    `${meta.missingBaselines.length ? `Library baselines not measured: ${meta.missingBaselines.join('; ')}. ` : ''}` +
    `Model \`${meta.model}\` (${meta.modelName}, ${meta.resolution}x${meta.resolution}); cm runs: ${meta.cmRuns.map((r) => `${r.name} (\`${r.args || 'no flags'}\`)`).join(', ')} ` +
    `(each row says the plan, start, eta and samples it used); \`--device cpu --seed 0 --threads ${meta.threads} --batch 16\`. Code: commit ${meta.code.commit}${meta.code.srcChanged.length ? ` with uncommitted changes in ${meta.code.srcChanged.join(', ')}` : ''}. Machine: ${l.cores} x ${l.cpu}, Node ${l.node}; ` +
    `load average ${l.loadavgAtStart.join(' / ')} at the start, ${l.loadavg.join(' / ')} at the end (1/5/15 min).` +
    `${(meta.merged ?? []).map((m) => ` ${m}`).join('')}\n\n` +
    `PSNR in dB (8-bit values, peak 255); SSIM of Wang et al. 2004 (Gaussian 11x11 window, sigma 1.5, no downsampling; our separable code, equal to the ssim.js package's to ${meta.ssimCheck.absDiff.toExponential(0)} on a check pair); RGB = mean over the ` +
    `three channels; PSNR-Y/SSIM-Y on BT.601 luma; no border shaved. Sharpness: high-frequency energy (mean squared ` +
    `difference to a sigma-1 Gaussian blur; inpainting: inside the hole) relative to the ground truth's, so 1 is as detailed as ` +
    `the photo and a blur that wins in PSNR shows below 1. Values are means over the images.\n\n` +
    `### Targets (cm defaults, Kodak24 crops; superres also Set5 crops; colorize also whole photos)\n` + targets(main, fullRes) + '\n' +
    `### Main table: ${meta.resolution}x${meta.resolution} crops (the model's own size)\n\n` +
    `${meta.kodakCrops} crops of Kodak24 (${meta.cropsPerPhoto} per photo at fixed random positions)` +
    `${meta.set5Crops ? ` and, for super-resolution, ${meta.set5Crops} crops of Set5` : ''}. For super-resolution the crop is the ` +
    `high-resolution target and its p x p box average the input.\n` + table(main) +
    `\n#### Does cm beat its baselines? (main table, best plan vs best baseline, PSNR)\n` + verdicts(main);
  if (Object.keys(fullRes).length) {
    s += `\n### Full resolution\n\nWhole photos at their own size through the CLI with the model's defaults: the sampler over ` +
      `tiles (superres, denoise), coarse to fine (colorize), windows around the holes or the whole image coarse to fine ` +
      `(inpaint, \`--strategy auto\`). Every ${meta.fullEvery}th Kodak24 photo and all of Set5 (cropped to multiples of 8). ` +
      `Contact sheets \`sheet-full-*.png\`: a 256x256 window of the first photo at 100% zoom.\n` + table(fullRes) + verdicts(fullRes);
  }
  if (sheetFiles.length) {
    s += `\n### Contact sheets (100% zoom, git-ignored)\n\nColumns: input | the first baseline (cm's start: Lanczos + patch means, harmonic fill; gray input; noisy input; the stroke input) | ` +
      `${meta.cmRuns.map((r) => r.name).join(' | ')} | ground truth (for strokes: the photo the strokes were made from). ` +
      `Two crops per variant.\n\n` + sheetFiles.map((f) => `![${f}](${f})`).join('\n') + '\n';
  }
  return s;
}

function describeSettings(h) {
  const ts = h.ts ? `ts ${h.ts.join(',')}` : `${h.evaluations} eval${h.evaluations === 1 ? '' : 's'} from the noise level`;
  return `${ts}, start ${h.start}, eta ${h.eta}${h.samples > 1 ? `, ${h.samples} samples` : ''}`;
}

/** The issue's quality targets against the main table (cm defaults): met, or missed by how much. */
function targets(main, fullRes = {}) {
  const rows = [];
  const m = (key) => (main[key] ?? fullRes[key])?.methods;
  const best = (methods, re) => Object.entries(methods ?? {}).filter(([n]) => re.test(n)).reduce((a, x) => (!a || x[1].psnr > a[1].psnr ? x : a), null);
  const line = (what, value, target, ok, unit = 'dB') => rows.push(`| ${what} | ${value} | ${target} | ${ok === null ? 'not measured' : ok ? 'met' : '**missed**'}${ok === false && unit ? ` (by ${unit})` : ''} |`);
  for (const set of ['Kodak24 crops', 'Set5 crops']) {
    for (const p of [2, 4, 8]) {
      const ms = m(`superres x${p} / ${set}`);
      const l = ms?.['Lanczos (PIL)'];
      const c = ms?.['cm (defaults)'];
      if (!c || !l) continue;
      const gap = c.psnr - (l.psnr + 0.5);
      line(`superres x${p}, ${set}`, `${fmt(c.psnr)} dB (sharpness ${fmt(c.sharp)})`, `Lanczos ${fmt(l.psnr)} + 0.5`, gap >= 0, `${(-gap).toFixed(2)} dB`);
      if (c.blockiness === undefined) continue;
      const over = c.blockiness - l.blockiness;
      line(`superres x${p} blockiness, ${set}`, `${fmt(c.blockiness)} x the photos'`, `at most Lanczos's ${fmt(l.blockiness)}`, over <= 0, `${over.toFixed(2)} x`);
    }
  }
  for (const fam of ['box', 'strokes']) {
    const ms = m(`inpaint ${fam} / Kodak24 crops`);
    const c = ms?.['cm (defaults)'];
    const b = best(ms, /harmonic|Telea|Navier/);
    if (!c || !b) continue;
    const gap = c.psnr - b[1].psnr;
    line(`inpaint ${fam} (hole)`, `${fmt(c.psnr)} dB (sharpness ${fmt(c.sharp)})`, `best classical fill: ${b[0]} ${fmt(b[1].psnr)}`, gap >= 0, `${(-gap).toFixed(2)} dB`);
  }
  for (const sigma of [15, 25, 50]) {
    const ms = m(`denoise ${sigma} / Kodak24 crops`);
    const c = ms?.['cm (defaults)'];
    const b = best(ms, /non-local means/);
    if (!c) continue;
    const gap = b ? c.psnr - (b[1].psnr + 1) : null;
    line(`denoise ${sigma}`, `${fmt(c.psnr)} dB (sharpness ${fmt(c.sharp)})`, b ? `non-local means ${fmt(b[1].psnr)} + 1` : 'non-local means + 1', gap === null ? null : gap >= 0, gap === null ? '' : `${(-gap).toFixed(2)} dB`);
  }
  // Colours that do no harm: at least the gray input's PSNR, and at least 0.4 of the photos' colourfulness.
  for (const set of ['Kodak24 crops', 'Kodak24 full']) {
    const col = m(`colorize / ${set}`);
    if (!col?.['cm (defaults)']) continue;
    const c = col['cm (defaults)'];
    const g = col['gray input'];
    const ratio = c.colourfulness / col['ground truth'].colourfulness;
    const okP = c.psnr >= g.psnr;
    const okC = ratio >= 0.4;
    line(`colorize PSNR, ${set}`, `${fmt(c.psnr)} dB`, `gray input ${fmt(g.psnr)}`, okP, `${(g.psnr - c.psnr).toFixed(2)} dB`);
    line(`colorize colourfulness, ${set}`, `${ratio.toFixed(2)} x the photos'`, 'at least 0.4 x', okC, okC ? '' : `${(0.4 - ratio).toFixed(2)} x`);
  }
  const st = m('stroke / Kodak24 crops');
  if (st?.['cm (defaults)']) {
    const c = st['cm (defaults)'];
    const src = st['source photo'];
    const okH = c.hfRatio >= 0.8 && c.hfRatio <= 1.2;
    line('stroke high-frequency energy', `${fmt(c.hfRatio)} x natural photos'`, '0.8-1.2 x', okH, okH ? '' : `${(c.hfRatio < 0.8 ? 0.8 - c.hfRatio : c.hfRatio - 1.2).toFixed(2)} x`);
    const okE = c.colourError <= 2 * src.colourError;
    line('stroke region colour error', `${fmt(c.colourError)}`, `at most 2 x the source photo's ${fmt(src.colourError)}`, okE, okE ? '' : `${(c.colourError - 2 * src.colourError).toFixed(2)}`);
  }
  return rows.length ? `\n| target | cm defaults | must reach | verdict |\n|---|---|---|---|\n${rows.join('\n')}\n` : '\n(no target measured)\n';
}

function fmt(v) {
  return v === null || v === undefined ? '-' : String(v);
}
