#!/usr/bin/env node
// The strength of superres's deblocking finish (src/editing/superres.ts DEBLOCK), chosen on crops of the TRAINING
// photos (shared/data/train, never the eval set): the model's stored default superres plans run through the CLI's own
// operator and sampler (dist/) without the finish, then the finish at each strength on their outputs. Each row: PSNR
// against the photo and blockiness (the energy of pixel differences across the p x p patch borders over that inside
// patches, relative to the photo's: bench/lib/metrics.mjs blockinessRatio), means over the crops with texture (flat
// crops have no blockiness to compare). The chosen strength per factor: the smallest in the list whose blockiness is
// at most Lanczos-3's (which is not consistent with the means). Then the same on --whole training photos (cropped to
// 768x512 after a Lanczos resize, as big as Kodak24's), run through the CLI's own edit path (pipeline/edit.js
// runEdits: its plans, tiles and batch), to check the choice on whole photos.
//
//   node bench/deblock.mjs [--model PATH] [--crops 96] [--seed 23000] [--whole 6] [--factors 2,4,8]
//                          [--strengths 0,0.05,...,1] [--threads 1] [--out bench/results/deblock.md]
import { writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { machine, parseFlags, ROOT } from './lib/common.mjs';
import { fullPhotoCrops, fullPhotoPaths } from './lib/data.mjs';
import { boxDown, crop, load, resize } from './lib/images.mjs';
import { blockiness, blockinessRatio, mean, psnr } from './lib/metrics.mjs';
import { toImg, toTensor } from './lib/estimates.mjs';

const dist = (p) => import(join(ROOT, 'dist', p));
const { loadModel, readModelFile } = await dist('runtime/model.js');
const { sample, perImageNoise } = await dist('sampler/sample.js');
const { planFromTs } = await dist('sampler/schedule.js');
const { DEBLOCK, superresOperator, upsampleNearest } = await dist('editing/superres.js');
const { stackOperators } = await dist('editing/operator.js');
const { tiledDenoiser } = await dist('sampler/tiles.js');
const { resample } = await dist('editing/resample.js');
const { Rng } = await dist('rng.js');
const { Tensor } = await dist('tensor.js');
const { runEdits, taskSampling, taskTiling } = await dist('pipeline/edit.js');
const { IMAGE_TASK_SPECS } = await dist('pipeline/tasks.js');

const flags = parseFlags(process.argv.slice(2));
const modelPath = flags.model ?? join(ROOT, 'models', 'default.onnx');
const nCrops = Number(flags.crops ?? 96);
const seed0 = Number(flags.seed ?? 23000);
const factors = String(flags.factors ?? '2,4,8').split(',').map(Number);
const strengths = flags.strengths ? String(flags.strengths).split(',').map(Number) : Array.from({ length: 21 }, (_, i) => i / 20);
const nWhole = Number(flags.whole ?? 6);
const outPath = flags.out ?? join(ROOT, 'bench', 'results', 'deblock.md');

const paths = fullPhotoPaths();
const file = await readModelFile(modelPath);
const { grid, resolution: RES } = file.card;
const model = await loadModel(file, { device: 'cpu', threads: Number(flags.threads ?? 1), inline: true, precision: 'float' });
const viewed = tiledDenoiser(model, { tile: RES, overlap: 0, batch: 64, small: RES });
const crops = await fullPhotoCrops(nCrops, RES, seed0, seed0);
/** The mean squared difference between horizontal neighbours: crops under 4 (grey levels squared) are flat. */
const activity = (g) => {
  let s = 0;
  for (let y = 0; y < g.h; y++) for (let x = 0; x + 1 < g.w; x++) for (let c = 0; c < 3; c++) s += (g.data[(y * g.w + x + 1) * 3 + c] - g.data[(y * g.w + x) * 3 + c]) ** 2;
  return s / (g.h * (g.w - 1) * 3);
};
const clip = (im) => ({ ...im, data: im.data.map((v) => Math.min(255, Math.max(0, v))) });

// Whole training photos: every 7919th (a prime stride over the list) of at least 800x540, resized to cover 768x512.
const wholes = [];
for (let i = 0; wholes.length < nWhole && i < paths.length; i++) {
  const photo = await load(paths[(i * 7919 + 101) % paths.length]);
  if (photo.w < 800 || photo.h < 540) continue;
  const k = Math.max(768 / photo.w, 512 / photo.h);
  wholes.push(crop(await resize(photo, Math.ceil(photo.w * k), Math.ceil(photo.h * k), 'lanczos3'), 0, 0, 768, 512));
}

const lines = [`# The strength of superres's deblocking finish (${relative(ROOT, modelPath)}, ${machine().cpu})`, ''];
const chosen = {};
for (const p of factors) {
  const used = crops.filter((g) => activity(g) > 4 && blockiness(g, p) > 0);
  const entry = file.card.taskPlans[`superres-x${p}`][String(file.card.taskDefaults[`superres-x${p}`])];
  const plan = planFromTs(grid, entry.ts, 'plan');
  const lows = used.map((gt) => toTensor(Tensor, boxDown(gt, p)));
  const ys = lows.map((low) => upsampleNearest(low, p));
  const out = await sample(viewed, {
    operator: stackOperators(ys.map((y) => superresOperator(y, p, 'smooth', 0))),
    sigmas: plan.sigmas,
    sigmaMin: grid.sigmaMin,
    noise: Array.from({ length: entry.samples }, (_, s) => perImageNoise(used.map((_, i) => new Rng(i, s)))),
    start: entry.start,
    eta: entry.eta,
    views: entry.views ?? false,
  });
  const score = (imgs) => [mean(imgs.map((im, i) => psnr(clip(im), used[i]))), mean(imgs.map((im, i) => blockinessRatio(clip(im), used[i], p)))];
  lines.push(`## x${p} (plan ts ${entry.ts.join(',')})`, '');
  chosen[p] = table(p, `${used.length} of ${crops.length} crops with texture`, ys, (i) => out.image(i), score(lows.map((low) => toImg(resample(low, RES, RES, 'lanczos3')))), score);
  // Whole photos through the CLI's edit path, without the finish.
  const lowsW = wholes.map((gt) => toTensor(Tensor, boxDown(gt, p)));
  const ysW = lowsW.map((low) => upsampleNearest(low, p));
  const sampling = taskSampling(IMAGE_TASK_SPECS.superres, { scale: p }, file.card);
  const tiling = taskTiling({ threads: Number(flags.threads ?? 1) }, file.card, 'cpu');
  const outsW = [];
  for (const y of ysW) outsW.push((await runEdits(model, [{ edit: { width: y.w, height: y.h, operator: superresOperator(y, p, 'smooth', 0) }, seed: 0 }], sampling, tiling, false))[0]);
  const scoreW = (imgs) => [mean(imgs.map((im, i) => psnr(clip(im), wholes[i]))), mean(imgs.map((im, i) => blockinessRatio(clip(im), wholes[i], p)))];
  const w = table(p, `${wholes.length} whole training photos (768x512)`, ysW, (i) => outsW[i], scoreW(lowsW.map((low) => toImg(resample(low, 768, 512, 'lanczos3')))), scoreW);
  lines.push('', `Chosen on crops: ${chosen[p] ?? 'none'}; on whole photos it would be ${w ?? 'none'} (shipped: ${DEBLOCK[p]})`, '');
  process.stderr.write(lines.slice(-2 * strengths.length - 16).join('\n') + '\n');
}

/** One table: PSNR and blockiness after the finish at each strength; the smallest strength as blocky as Lanczos-3 at most. */
function table(p, what, ys, output, [lq, lb], score) {
  lines.push(`${what}: Lanczos-3 ${lq.toFixed(3)} dB, blockiness ${lb.toFixed(3)}`, '');
  lines.push('| strength | PSNR | change | blockiness |', '|---|---|---|---|');
  let base;
  let pick;
  for (const s of strengths) {
    const fin = ys.map((y, i) => {
      const op = superresOperator(y, p, 'smooth', s);
      return toImg(op.finish ? op.finish(output(i)) : output(i));
    });
    const [q, b] = score(fin);
    base ??= q;
    if (pick === undefined && b <= lb) pick = s;
    lines.push(`| ${s}${s === DEBLOCK[p] ? ' (shipped)' : ''} | ${q.toFixed(3)} | ${(q - base).toFixed(3)} | ${b.toFixed(3)} |`);
  }
  lines.push('');
  return pick;
}
writeFileSync(outPath, lines.join('\n') + '\n');
process.stderr.write(`wrote ${outPath}\n`);
