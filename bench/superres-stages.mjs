#!/usr/bin/env node
// Where superres's blockiness comes from: the model's default superres plans (cm.task_plans) run through the CLI's
// own operator and sampler (dist/), with every stage recorded: the classical estimate (Lanczos-3 of the low-res
// image), the start P(estimate), each model evaluation (clamped, before the projection), each projection, and the
// final in-range projection. On 64x64 crops of the TRAINING photos only (shared/data/train), never the eval set.
//
//   node bench/superres-stages.mjs [--model PATH] [--crops 48] [--factors 2,4,8] [--corrections smooth,lanczos,orthogonal]
//                                  [--threads 1] [--out bench/results/superres-stages.md]
//
// Blockiness: the energy of pixel differences across the p x p patch borders over that inside patches, relative to
// the ground truth's (bench/lib/metrics.mjs blockinessRatio), mean over crops; PSNR against the ground truth.
import { writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { machine, parseFlags, ROOT } from './lib/common.mjs';
import { fullPhotoCrops } from './lib/data.mjs';
import { boxDown } from './lib/images.mjs';
import { blockinessRatio, mean, psnr } from './lib/metrics.mjs';
import { toImg, toTensor } from './lib/estimates.mjs';

const dist = (p) => import(join(ROOT, 'dist', p));
const { loadModel, readModelFile } = await dist('runtime/model.js');
const { sample, perImageNoise } = await dist('sampler/sample.js');
const { planFromTs } = await dist('sampler/schedule.js');
const { superresOperator, upsampleNearest } = await dist('editing/superres.js');
const { stackOperators } = await dist('editing/operator.js');
const { tiledDenoiser } = await dist('sampler/tiles.js');
const { resample } = await dist('editing/resample.js');
const { Rng } = await dist('rng.js');
const { Tensor } = await dist('tensor.js');

const flags = parseFlags(process.argv.slice(2));
const modelPath = flags.model ?? join(ROOT, 'models', 'default.onnx');
const nCrops = Number(flags.crops ?? 48);
const factors = String(flags.factors ?? '2,4,8').split(',').map(Number);
const corrections = String(flags.corrections ?? 'smooth,lanczos,orthogonal').split(',');
const outPath = flags.out ?? join(ROOT, 'bench', 'results', 'superres-stages.md');

const file = await readModelFile(modelPath);
const { grid, resolution: RES } = file.card;
const model = await loadModel(file, { device: 'cpu', threads: Number(flags.threads ?? 1), inline: true, precision: 'float' });
const viewed = tiledDenoiser(model, { tile: RES, overlap: 0, batch: 64, small: RES });
const crops = await fullPhotoCrops(nCrops, RES, 11000);

/** The operator with every call recorded: name -> batch tensor. */
function recorded(op, log) {
  let evals = 0;
  let projections = 0;
  return {
    ...op,
    estimate: () => {
      const e = op.estimate();
      log.push(['estimate (Lanczos-3)', e]);
      return e;
    },
    project: (x) => {
      const px = op.project(x);
      if (projections === 0) log.push(['start P(estimate)', px]);
      else log.push([`evaluation ${evals}: model`, x], [`evaluation ${evals}: projected`, px]);
      projections++;
      evals++;
      return px;
    },
    projectInRange: (x) => {
      const out = op.projectInRange(x);
      log.push(['final in range', out]);
      return out;
    },
  };
}

const lines = [`# Superres blockiness stage by stage (${crops.length} 64x64 crops of training photos; model ${relative(ROOT, modelPath)})`, ''];
lines.push(`Machine: ${machine().cpu}. Blockiness relative to the ground truth's (mean over crops); PSNR in dB.`, '');
for (const p of factors) {
  const stored = file.card.taskPlans[`superres-x${p}`];
  const k = file.card.taskDefaults[`superres-x${p}`];
  const entry = stored[String(k)];
  const plan = planFromTs(grid, entry.ts, 'plan');
  const lows = crops.map((gt) => boxDown(gt, p));
  const lanczos = lows.map((low) => toImg(resample(toTensor(Tensor, low), RES, RES, 'lanczos3')));
  lines.push(`## x${p}: plan ts ${entry.ts.join(',')}, eta ${entry.eta}, samples ${entry.samples}, views ${entry.views ? 'on' : 'off'}`, '');
  const table = new Map();
  for (const corr of corrections) {
    const log = [];
    const ops = stackOperators(lows.map((low) => superresOperator(upsampleNearest(toTensor(Tensor, low), p), p, corr)));
    const op = recorded(ops, log);
    await sample(viewed, {
      operator: op,
      sigmas: plan.sigmas,
      sigmaMin: grid.sigmaMin,
      noise: Array.from({ length: entry.samples }, (_, s) => perImageNoise(crops.map((_, i) => new Rng(i, s)))),
      start: entry.start,
      eta: entry.eta,
      views: entry.views ?? false,
    });
    for (const [name, t] of log) {
      const imgs = crops.map((_, i) => toImg(t.image(i)));
      const clip = (im) => ({ ...im, data: im.data.map((v) => Math.min(255, Math.max(0, v))) });
      const b = mean(imgs.map((im, i) => blockinessRatio(clip(im), crops[i], p)));
      const q = mean(imgs.map((im, i) => psnr(clip(im), crops[i])));
      if (!table.has(name)) table.set(name, {});
      table.get(name)[corr] = `${b.toFixed(2)} / ${q.toFixed(2)}`;
    }
  }
  const lb = mean(lanczos.map((im, i) => blockinessRatio(im, crops[i], p)));
  const lq = mean(lanczos.map((im, i) => psnr(im, crops[i])));
  lines.push(`Lanczos-3 (not projected): blockiness ${lb.toFixed(2)}, PSNR ${lq.toFixed(2)}`, '');
  lines.push(`| stage | ${corrections.join(' | ')} |`, `|---|${corrections.map(() => '---').join('|')}|`);
  for (const [name, row] of table) lines.push(`| ${name} | ${corrections.map((c) => row[c] ?? '').join(' | ')} |`);
  lines.push('');
  process.stderr.write(lines.slice(-table.size - 5).join('\n') + '\n');
}
writeFileSync(outPath, lines.join('\n') + '\n');
process.stderr.write(`wrote ${outPath}\n`);
