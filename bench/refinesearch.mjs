#!/usr/bin/env node
// Choose a task's coarse-to-fine refinement through the CLI (issue 17): the plan every finer level runs after the
// coarsest level ran the task's own (cm.task_plans' "refine"). The plan search (plansearch.mjs) scores single tiles
// of the model's size and never sees it; an image larger than a tile is edited coarse to fine, and the refinement
// there decides how much of the classical estimate's texture (the patch fill's) survives.
//
// For inpainting: crops of the validation photos (never trained on; not the evaluation photos) with box, strokes and
// object holes, `cm inpaint --fill patch` with each candidate: the model's stored plans (--steps K) times
// --refine-ts L,last for each level L (a level noisier than the plan's first is the same as the plan's first, and
// is skipped), next to the CLI as it is. Each cell: PSNR inside the hole (mean) and texture (the high-frequency
// energy inside the hole relative to the photo's, median; bench/lib/metrics.mjs), and the patch fill alone for
// reference (the texture the model starts from).
// The choice, among the rows of the task's default plan (the plan search chooses the coarsest level's plan; the other
// plans are shown for reference): the row that keeps the most of the patch fill's texture ("kept": the mean over
// families of the ratio of the medians) among those whose mean PSNR is within --margin dB (default 0.05, the
// project's margin for "no worse") of the best row's; the model is there to blend the copied texture into the
// hole's border, and texture is worth a few hundredths of a dB.
// Writes bench/results/refinesearch.{md,json}; `npm run train:replan -- --refine inpaint=L,last` stores the choice.
//
//   node bench/refinesearch.mjs [--model PATH] [--task inpaint] [--steps 1,2,4] [--levels 33,35,36,37,38]
//                               [--families box,strokes,object64,object100] [--crop 256] [--photos 19]
//                               [--margin 0.05] [--threads 2] [--out DIR] [--smoke]
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { chooseModel, codeVersion, machine, parseFlags, records, RESULTS, ROOT, round, runCli } from './lib/common.mjs';
import { cropsOf, maskPlane, validationPhotoPaths, withHole } from './lib/data.mjs';
import { toImg, toTensor } from './lib/estimates.mjs';
import { makeHole } from './lib/holes.mjs';
import { load, saveGrayPng, savePng } from './lib/images.mjs';
import { mean, median, psnr, textureRatio } from './lib/metrics.mjs';

const flags = parseFlags(process.argv.slice(2));
const smoke = flags.smoke === true;
const modelPath = await chooseModel(flags.model);
const task = flags.task ?? 'inpaint';
if (task !== 'inpaint') throw new Error(`--task: only inpaint is searched so far (received ${task})`);
const list = (v, d) => String(v ?? d).split(',').filter(Boolean);
const levels = list(flags.levels, smoke ? '36,38' : '33,35,36,37,38').map(Number);
const families = list(flags.families, smoke ? 'object64' : 'box,strokes,object64,object100');
const cropSize = Number(flags.crop ?? 256);
const nPhotos = Number(flags.photos ?? (smoke ? 2 : 19));
const margin = Number(flags.margin ?? 0.05);
const threads = String(flags.threads ?? 2);
const outDir = flags.out ?? (smoke ? join(tmpdir(), 'cm-bench-refinesearch') : RESULTS);
const started = performance.now();
const log = (msg) => process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0)}s] ${msg}\n`);
mkdirSync(outDir, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'cm-refinesearch-'));

const { readModelFile } = await import(join(ROOT, 'dist', 'runtime', 'model.js'));
const { Tensor } = await import(join(ROOT, 'dist', 'tensor.js'));
const { classicalFill } = await import(join(ROOT, 'dist', 'editing', 'inpaint.js'));
const file = await readModelFile(modelPath);
const last = file.card.grid.size - 1;
const stored = file.card.taskPlans[task] ?? {};

// ---- inputs: one crop per validation photo, one hole of each family ------------------------------------------------
const inputs = {};
const photos = validationPhotoPaths().slice(0, nPhotos);
for (const fam of families) {
  const dir = join(work, fam);
  mkdirSync(join(dir, 'in'), { recursive: true });
  mkdirSync(join(dir, 'mask'), { recursive: true });
  const items = [];
  for (let i = 0; i < photos.length; i++) {
    const photo = await load(photos[i]);
    if (photo.w < cropSize || photo.h < cropSize) continue;
    const gt = cropsOf(photo, 1, cropSize, 5000 + i)[0].img;
    const mask = makeHole(fam, gt.w, gt.h, 8000 + i);
    const stem = `p${String(i).padStart(2, '0')}`;
    const input = withHole(gt, mask); // the hole's pixels never reach the CLI
    await savePng(input, join(dir, 'in', `${stem}.png`));
    await saveGrayPng(maskPlane(mask), gt.w, gt.h, join(dir, 'mask', `${stem}.png`));
    // what --fill patch starts from, before the model: the texture there is to keep
    const fill = toImg(classicalFill(toTensor(Tensor, input), new Tensor(1, 1, gt.h, gt.w, Float32Array.from(mask)), { fill: 'patch', seed: 0 }));
    items.push({ stem, gt, mask, fill });
  }
  inputs[fam] = { dir, items };
}
log(`${photos.length} validation photos, crops of ${cropSize}, holes ${families.join(', ')}; model ${modelPath}`);

// ---- candidates ----------------------------------------------------------------------------------------------------
const defaultK = file.card.taskDefaults[task] ?? null;
const stepsList = list(flags.steps, smoke ? String(defaultK) : '1,2,4').map(Number);
const candidates = [{ name: 'the CLI as it is', args: [], k: defaultK, refine: null }];
for (const k of stepsList) {
  const ts = stored[String(k)]?.ts;
  if (!ts) throw new Error(`${modelPath}: no stored ${task} plan of ${k} evaluations (stored: ${Object.keys(stored).join(', ')})`);
  for (const l of levels) {
    if (l < ts[0] || l >= last) continue;
    candidates.push({ name: `--steps ${k} --refine-ts ${l},${last}`, args: ['--steps', String(k), '--refine-ts', `${l},${last}`], k, refine: [l, last], ts });
  }
}

const score = (imgs, items) => ({
  psnr: round(mean(items.map((it, i) => psnr(imgs[i], it.gt, it.mask))), 3),
  texture: round(median(items.map((it, i) => textureRatio(imgs[i], it.gt, it.mask))), 3),
});
const alone = { name: 'the patch fill alone (no model)', families: {} };
for (const fam of families) alone.families[fam] = { ...score(inputs[fam].items.map((it) => it.fill), inputs[fam].items), seconds: 0 };
summarise(alone);

const rows = [];
for (const c of candidates) {
  const row = { ...c, families: {} };
  for (const fam of families) {
    const { dir, items } = inputs[fam];
    const out = join(dir, `out-${rows.length}`);
    const run = await runCli(['inpaint', join(dir, 'in'), '--mask', join(dir, 'mask'), '--fill', 'patch', '--out-dir', out, '--name', '{stem}.{ext}', '--model', modelPath, '--device', 'cpu', '--seed', '0', '--threads', threads, '-q', '--json', ...c.args]);
    records(run, `${c.name} ${fam}`);
    const imgs = [];
    for (const it of items) imgs.push(await load(join(out, `${it.stem}.png`)));
    row.families[fam] = { ...score(imgs, items), seconds: round(run.seconds / items.length, 2) };
  }
  summarise(row);
  rows.push(row);
  log(`${c.name}: ${families.map((f) => `${f} ${row.families[f].psnr} / ${row.families[f].texture}`).join('; ')}`);
}
rmSync(work, { recursive: true, force: true });

function summarise(row) {
  row.psnr = round(mean(families.map((f) => row.families[f].psnr)), 3);
  row.kept = round(mean(families.map((f) => row.families[f].texture / Math.max(1e-9, alone.families[f].texture))), 3);
}

// ---- the choice ----------------------------------------------------------------------------------------------------
const own = rows.filter((r) => r.refine && r.k === defaultK);
const best = Math.max(...own.map((r) => r.psnr));
const chosen = own.filter((r) => r.psnr >= best - margin - 1e-9).reduce((a, b) => (a === undefined || b.kept > a.kept ? b : a), undefined);
const json = {
  date: new Date().toISOString(),
  machine: machine(),
  code: codeVersion(),
  model: modelPath,
  task,
  photos: photos.length,
  crop: cropSize,
  margin,
  fillAlone: alone,
  rows: rows.map(({ args: _a, ...r }) => r),
  chosen: chosen ? { k: chosen.k, refine: chosen.refine } : null,
};
writeFileSync(join(outDir, 'refinesearch.json'), `${JSON.stringify(json, null, 1)}\n`);
const md = [
  `## Coarse to fine's refinement, chosen through the CLI (bench/refinesearch.mjs)`,
  '',
  `${json.date}, model ${modelPath}; ${machine().cpu}; code ${json.code.commit}${json.code.srcChanged?.length ? ` + changes in ${json.code.srcChanged.join(', ')}` : ''}.`,
  '',
  `${photos.length} validation photos, one ${cropSize}x${cropSize} crop each, \`cm ${task} --fill patch\`; each cell: PSNR inside the hole (dB, mean) / texture inside the hole relative to the photo's (median). Kept: the texture as a share of the patch fill's, the mean over the families. Chosen among the rows of the default plan (${defaultK} evaluations): the one that keeps the most among those within ${margin} dB of the best mean PSNR (${best}).`,
  '',
  `| run | ${families.join(' | ')} | mean PSNR | kept | s per image |`,
  `|---|${families.map(() => '---|').join('')}---|---|---|`,
  ...[alone, ...rows].map(
    (r) =>
      `| ${r.name}${r === chosen ? ' **(chosen)**' : ''} | ${families.map((f) => `${r.families[f].psnr} / ${r.families[f].texture}`).join(' | ')} | ${r.psnr} | ${r.kept} | ${r === alone ? '' : round(mean(families.map((f) => r.families[f].seconds)), 2)} |`,
  ),
  '',
  chosen ? `Chosen: ${chosen.name}: store it with \`npm run train:replan -- --refine ${task}=${chosen.refine.join(',')}\`.` : `No refinement of the default plan (${defaultK} evaluations) was measured: nothing chosen.`,
  '',
];
writeFileSync(join(outDir, 'refinesearch.md'), md.join('\n'));
log(chosen ? `chosen: ${chosen.name} (mean ${chosen.psnr} dB, kept ${chosen.kept} of the fill's texture)` : 'nothing chosen');
