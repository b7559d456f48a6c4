#!/usr/bin/env node
// Quality benchmark of cm's editing tasks against classical baselines, through the CLI's own code path (bin/cm.js is
// spawned once per task and plan, on a folder of inputs written to a temporary folder).
//
//   node bench/quality.mjs [--model PATH] [--out DIR] [--crops N] [--plans 1,2,4] [--full-every K] [--no-full]
//                          [--threads N] [--deadline HH:MM] [--smoke]
//
// Main table: 64x64 crops (the model's size) of Kodak24, and of Set5 for super-resolution. Second table: whole photos
// through the CLI as it is today (edited at 64x64 and resized back). Writes quality.json, quality.md, RESULTS.md and
// contact sheets into --out (default bench/results; with --smoke a temporary folder).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { assembleResults, chooseModel, codeVersion, machine, modelCard, parseFlags, records, RESULTS, round, runCli } from './lib/common.mjs';
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
import { addNoise, boxDown, contactSheet, gaussianBlur, grayOf, load, quantize, saveGrayPng, savePng, upNearest, upsample } from './lib/images.mjs';
import { channel, colourfulness, harmonicFill, hfEnergy, mean, nearestFill, psnr, psnrY, ssimCrossCheck, ssimRgb, ssimY } from './lib/metrics.mjs';

const flags = parseFlags(process.argv.slice(2));
const smoke = flags.smoke === true;
const outDir = typeof flags.out === 'string' ? flags.out : smoke ? join(tmpdir(), 'cm-bench-smoke') : RESULTS;
const plans = String(flags.plans ?? (smoke ? '1' : '1,2,4')).split(',').map(Number);
const perPhoto = Number(flags.crops ?? (smoke ? 1 : 2));
const fullEvery = Number(flags['full-every'] ?? 6);
// One model thread per process: on a 2-core machine shared with other jobs, 2 threads were up to 2x slower, not faster.
const threads = String(flags.threads ?? 1);
const full = flags['no-full'] !== true;
const model = await chooseModel(flags.model);
const card = await modelCard(model);
const RES = card.resolution;
const started = performance.now();
const startedAt = new Date().toISOString();
const loadBefore = machine().loadavg;
mkdirSync(outDir, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'cm-bench-quality-'));
const log = (msg) => process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0)}s] ${msg}\n`);

// ---- tasks --------------------------------------------------------------------------------------------------------

const srMetrics = (img, gt) => ({ psnr: psnr(img, gt), ssim: ssimRgb(img, gt), psnrY: psnrY(img, gt), ssimY: ssimY(img, gt) });
const holeMetrics = (img, gt, ctx) => ({ psnr: psnr(img, gt, ctx.mask), ssim: ssimRgb(img, gt, ctx.mask) });
const denoiseMetrics = (img, gt) => ({ psnr: psnr(img, gt), ssim: ssimRgb(img, gt) });
const colourMetrics = (img, gt) => ({ psnr: psnr(img, gt), ssim: ssimRgb(img, gt), colourfulness: colourfulness(img) });
const strokeMetrics = (img, gt, ctx) => ({ colourError: regionColourError(img, ctx.strokes), hf: hfEnergy(img) });

function superres(p) {
  return {
    id: `superres x${p}`,
    family: 'superres',
    task: 'superres',
    cliArgs: ['-x', String(p)],
    defaultSteps: 2,
    async prepare(gt) {
      const low = boxDown(gt, p);
      return {
        input: low,
        show: upNearest(low, p),
        baselines: { bicubic: upsample(low, p, 'bicubic'), lanczos3: upsample(low, p, 'lanczos3') },
      };
    },
    metrics: srMetrics,
  };
}

function inpaint(family) {
  return {
    id: `inpaint ${family}`,
    family: 'inpaint',
    task: 'inpaint',
    cliArgs: [],
    defaultSteps: 2,
    async prepare(gt, i) {
      const mask = makeMask(family, gt.w, gt.h, 7000 + i);
      const input = withHole(gt, mask); // the hole's pixels never reach the CLI
      return { input, mask, show: input, baselines: { harmonic: harmonicFill(input, mask), nearest: nearestFill(input, mask) }, ctx: { mask } };
    },
    metrics: holeMetrics,
  };
}

const colorize = {
  id: 'colorize',
  family: 'colorize',
  task: 'colorize',
  cliArgs: [],
  defaultSteps: 2,
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
    defaultSteps: 1,
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
  defaultSteps: 2,
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

async function runVariant(v, images, { label, planList, keepIdx }) {
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
  v.tune?.(items);
  const methods = {};
  const add = (name, m) => {
    methods[name] ??= {};
    for (const [k, val] of Object.entries(m)) (methods[name][k] ??= []).push(val);
  };
  for (const it of items) for (const [name, img] of Object.entries(it.baselines)) add(name, v.metrics(img, it.gt, it.ctx));
  if (v.family === 'colorize') for (const it of items) add('ground truth', { colourfulness: colourfulness(it.gt) });
  const timing = {};
  const launch = (k) => {
    const outK = join(dir, `out-${k}`);
    const args = [v.task, inDir, '--out-dir', outK, '--name', '{stem}.{ext}', '--model', model, '--device', 'cpu', '--seed', '0',
      '--steps', String(k), '--threads', threads, '-q', '--json', '--batch', '16', ...v.cliArgs];
    if (v.task === 'inpaint') args.push('--mask', maskDir);
    return runCli(args).then((run) => ({ run, outK, k }));
  };
  let next = launch(planList[0]);
  for (let j = 0; j < planList.length; j++) {
    const { run, outK, k } = await next;
    next = j + 1 < planList.length ? launch(planList[j + 1]) : null;
    const recs = records(run, `${label} ${v.id} --steps ${k}`);
    const evals = recs[0]?.evaluations;
    const name = `cm, ${evals} eval${evals === 1 ? '' : 's'}`;
    timing[name] = round(run.seconds, 2);
    for (let i = 0; i < items.length; i++) {
      const img = await load(join(outK, `${items[i].stem}.png`));
      if (img.w !== items[i].gt.w || img.h !== items[i].gt.h) throw new Error(`${v.id}: output ${img.w}x${img.h} for a ${items[i].gt.w}x${items[i].gt.h} target`);
      add(name, v.metrics(img, items[i].gt, items[i].ctx));
      if (keepIdx.includes(i)) (items[i].outputs ??= []).push(img);
    }
  }
  const summary = {};
  for (const [name, ms] of Object.entries(methods)) {
    summary[name] = Object.fromEntries(Object.entries(ms).map(([k, xs]) => [k, round(mean(xs), k.startsWith('ssim') ? 4 : 2)]));
  }
  if (v.family === 'stroke') {
    // High-frequency energy against natural photos (the crops the strokes came from).
    const natural = summary['source photo'].hf;
    for (const s of Object.values(summary)) s.hfRatio = round(s.hf / natural, 3);
  }
  const kept = keepIdx.filter((i) => i < items.length).map((i) => items[i]);
  log(`${label} ${v.id}: ${items.length} images, ${Object.entries(timing).map(([k, s]) => `${k} ${s}s`).join(', ')}`);
  return { n: items.length, methods: summary, cliSeconds: timing, kept };
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
log(`model ${model}; ${kodakCrops.length} Kodak24 crops, ${set5Crops.length} Set5 crops, plans ${plans.join('/')} evaluations`);

const keepMain = [0, Math.min(kodakCrops.length - 1, perPhoto * 12 + 1)];
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

const mainVariants = smoke ? ALL.filter((v) => ['superres x4', 'inpaint box', 'colorize', 'denoise 25', 'stroke'].includes(v.id)) : ALL;
for (const v of mainVariants) {
  if (!inTime(`${v.id} / crops`)) continue;
  const r = await runVariant(v, kodakCrops, { label: 'kodak-crops', planList: plans, keepIdx: keepMain });
  main[`${v.id} / Kodak24 crops`] = { variant: v.id, images: 'Kodak24 crops', family: v.family, n: r.n, methods: r.methods, cliSeconds: r.cliSeconds };
  (sheets[v.family] ??= []).push(...r.kept.map((it) => [it.show, Object.values(it.baselines)[0], ...(it.outputs ?? []), it.gt]));
  if (v.family === 'superres' && set5Crops.length && inTime(`${v.id} / Set5 crops`)) {
    const s = await runVariant(v, set5Crops, { label: 'set5-crops', planList: plans, keepIdx: [] });
    main[`${v.id} / Set5 crops`] = { variant: v.id, images: 'Set5 crops', family: v.family, n: s.n, methods: s.methods, cliSeconds: s.cliSeconds };
  }
  await writeAll(false);
}

// Whole photos through the CLI as it is today (edited at the model's size and resized back): fewer photos, default plans.
if (full) {
  const fullKodak = kodakPaths.filter((_, j) => smoke || j % fullEvery === 0);
  const photos = [];
  for (const path of fullKodak) photos.push({ stem: basename(path, '.png'), img: cropToMultiple(await loadPhoto(path), 8) });
  const set5Full = [];
  for (const [j, path] of set5Paths.entries()) set5Full.push({ stem: `set5-${j + 1}`, img: cropToMultiple(await loadPhoto(path), 8) });
  const fullVariants = smoke ? ALL.filter((v) => ['superres x4', 'inpaint box'].includes(v.id)) : ALL.filter((v) => v.family !== 'stroke');
  for (const v of fullVariants) {
    if (!inTime(`${v.id} / Kodak24 full`)) continue;
    const r = await runVariant(v, photos, { label: 'kodak-full', planList: [v.defaultSteps], keepIdx: [] });
    fullRes[`${v.id} / Kodak24 full`] = { variant: v.id, images: `Kodak24 full (${photos.length} photo${photos.length === 1 ? '' : 's'})`, family: v.family, n: r.n, methods: r.methods, cliSeconds: r.cliSeconds };
    if (v.family === 'superres' && set5Full.length && inTime(`${v.id} / Set5 full`)) {
      const s = await runVariant(v, set5Full, { label: 'set5-full', planList: [v.defaultSteps], keepIdx: [] });
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
  const meta = {
    startedAt,
    seconds: round((performance.now() - started) / 1000, 1),
    complete: done,
    model,
    modelName: card.name,
    resolution: RES,
    plans,
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
    superres: [['psnr', 'PSNR'], ['ssim', 'SSIM'], ['psnrY', 'PSNR-Y'], ['ssimY', 'SSIM-Y']],
    inpaint: [['psnr', 'PSNR (hole)'], ['ssim', 'SSIM (hole)']],
    colorize: [['psnr', 'PSNR'], ['ssim', 'SSIM'], ['colourfulness', 'colourfulness']],
    denoise: [['psnr', 'PSNR'], ['ssim', 'SSIM']],
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
      for (const [id, r] of entries) {
        for (const [name, m] of Object.entries(r.methods)) {
          const bold = name.startsWith('cm');
          s += `| ${r.variant} | ${r.images} | ${r.n} | ${bold ? `**${name}**` : name} | ${cols[family].map(([k]) => fmt(m[k])).join(' | ')} |\n`;
        }
      }
    }
    return s;
  };
  const verdicts = (results) => {
    let s = '\n| variant | images | best baseline (PSNR) | best cm (PSNR) | cm - baseline | verdict |\n|---|---|---|---|---|---|\n';
    for (const r of Object.values(results)) {
      if (r.family === 'stroke') continue;
      const base = Object.entries(r.methods).filter(([n]) => !n.startsWith('cm') && n !== 'ground truth');
      const cm = Object.entries(r.methods).filter(([n]) => n.startsWith('cm'));
      if (!base.length || !cm.length) continue;
      const b = base.reduce((a, x) => (x[1].psnr > a[1].psnr ? x : a));
      const c = cm.reduce((a, x) => (x[1].psnr > a[1].psnr ? x : a));
      const d = c[1].psnr - b[1].psnr;
      s += `| ${r.variant} | ${r.images} | ${b[0]}: ${fmt(b[1].psnr)} | ${c[0]}: ${fmt(c[1].psnr)} | ${d >= 0 ? '+' : ''}${d.toFixed(2)} dB | ${d >= 0 ? 'beats the baseline' : '**misses the baseline**'} |\n`;
    }
    return s;
  };
  const l = meta.machine;
  let s = `## Quality\n\nMeasured ${meta.startedAt} in ${meta.seconds} s${meta.smoke ? ' (**smoke run**: tiny subset, not a result)' : ''}` +
    `${meta.complete ? '' : ' (**run in progress or interrupted**: partial tables)'}. ` +
    `${meta.skipped.length ? `Not measured (past the run's --deadline): ${meta.skipped.join(', ')}. ` : ''}` +
    `Model \`${meta.model}\` (${meta.modelName}, ${meta.resolution}x${meta.resolution}); plans: ${meta.plans.join(', ')} evaluations ` +
    `(the model's own plans, \`--steps K\`); \`--device cpu --seed 0 --threads ${meta.threads} --batch 16\`. Code: commit ${meta.code.commit}${meta.code.srcChanged.length ? ` with uncommitted changes in ${meta.code.srcChanged.join(', ')}` : ''}. Machine: ${l.cores} x ${l.cpu}, Node ${l.node}; ` +
    `load average ${l.loadavgAtStart.join(' / ')} at the start, ${l.loadavg.join(' / ')} at the end (1/5/15 min).\n\n` +
    `PSNR in dB (8-bit values, peak 255); SSIM of Wang et al. 2004 (Gaussian 11x11 window, sigma 1.5, no downsampling; our separable code, equal to the ssim.js package's to ${meta.ssimCheck.absDiff.toExponential(0)} on a check pair); RGB = mean over the ` +
    `three channels; PSNR-Y/SSIM-Y on BT.601 luma; no border shaved. Values are means over the images.\n\n` +
    `### Main table: ${meta.resolution}x${meta.resolution} crops (the model's own size)\n\n` +
    `${meta.kodakCrops} crops of Kodak24 (${meta.cropsPerPhoto} per photo at fixed random positions)` +
    `${meta.set5Crops ? ` and, for super-resolution, ${meta.set5Crops} crops of Set5` : ''}. For super-resolution the crop is the ` +
    `high-resolution target and its p x p box average the input.\n` + table(main) +
    `\n#### Does cm beat its baselines? (main table, best plan vs best baseline, PSNR)\n` + verdicts(main);
  if (Object.keys(fullRes).length) {
    s += `\n### Full resolution through the CLI as it is today\n\n**Not a fair test of the model**: the CLI edits an image ` +
      `whose size differs from ${meta.resolution}x${meta.resolution} by resizing it to ${meta.resolution}x${meta.resolution} and back ` +
      `(tiled full-resolution editing is not built yet), restoring the known data at full size. Every ${meta.fullEvery}th Kodak24 photo ` +
      `and all of Set5 (cropped to multiples of 8), each task's default number of evaluations.\n` + table(fullRes) + verdicts(fullRes);
  }
  if (sheetFiles.length) {
    s += `\n### Contact sheets\n\nColumns: input | ${'baseline (bicubic, harmonic fill, gray input, noisy input; for strokes the stroke input)'} | ` +
      `cm at ${meta.plans.join(', ')} evaluations | ground truth (for strokes: the photo the strokes were made from). ` +
      `Two crops per variant.\n\n` + sheetFiles.map((f) => `![${f}](${f})`).join('\n') + '\n';
  }
  return s;
}

function fmt(v) {
  return v === null || v === undefined ? '-' : String(v);
}
