#!/usr/bin/env node
// Per-task defaults for a model (cm.task_plans): a search over the sampler's start, plan and noise on the VALIDATION
// photos of the training folder (the ~2% of shared/data/train that training holds out by a hash of their path, as
// training/cmtrain/data.py does), never on Kodak24 or Set5. It runs the CLI's own operators and sampler (dist/) with
// onnxruntime-node in this process, on 64x64 full-scale crops, every task variant of the quality benchmark.
//
//   node bench/plansearch.mjs --model PATH [--crops 32] [--tasks superres-x4,inpaint,...] [--threads 2]
//                             [--start EARLIER.json|model] [--rounds 3] [--out training/results/task_plans.json]
//                             [--val-percent 2] [--ks 1,2,4] [--smoke]
//   node bench/plansearch.mjs --model PATH --score-only [--crops 32] [--tasks ...]
//
// Per task and number of evaluations K (1, 2, 4; --ks for others): a coarse grid over the first grid index (the start level) and eta
// with the warm start, then coordinate refinement (move one index by 1 or 2, eta by 0.25) while the objective
// improves; then the best K = 1, 2, 4 plans once more with averaged samples, within --budget evaluations (K x samples,
// default 4; more samples kept only where they buy 0.05 dB over fewer). Each task's "default" is its cheapest K
// (evaluations x samples) within 0.05 dB of the best objective (colorize, stroke: the best).
// --start refines from earlier choices (a later checkpoint of the same run) instead of the coarse grid; `--start model`
// from the plans stored in the model itself (cm.task_plans). --rounds bounds the refinement rounds per K (default 3):
// `--start model --rounds 1` is the bounded fast mode that training's promotion runs.
// --score-only searches nothing: it scores the model's own default of every task variant (cm.task_plans) and prints
// {variant: {psnr, ...}} as JSON on stdout.
// Each K's best plan is also tried with views (each evaluation on another mirrored or turned copy: no extra cost).
// Presets of --quality: "fast" is the best one-evaluation, one-sample plan; "best" the best of each K's plan with 1 to
// 16 samples and views, within --best-budget evaluations (default 16).
// Objectives: PSNR (inpainting: in the hole) for superres, inpaint, denoise; colorize: PSNR among plans whose
// colourfulness is 0.5-1.5x the photos'; stroke: among plans whose high-frequency energy is 0.8-1.2x the photos', the
// smallest region colour error. Inpainting also reports the texture in the hole (its high-frequency energy over the
// photo's there, median over the crops) without choosing by it: in these 64x64 crops even the patch fill alone has
// under 0.5 of the photo's (box holes 0.40), so a floor of 0.5 chose plans from sigma 2.8 that invent the hole anew. Writes the chosen plans (JSON, the cm.task_plans format) and every scored
// configuration (CSV next to it).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseFlags, ROOT, round } from './lib/common.mjs';
import { cropsOf, makeMask, strokePainting, regionColourError, validationPhotoPaths, withHole } from './lib/data.mjs';
import { addNoise, boxDown, grayOf, load, quantize } from './lib/images.mjs';
import { blockinessRatio, colourfulness, hfEnergy, mean, median, psnr, textureRatio } from './lib/metrics.mjs';

const dist = (p) => import(join(ROOT, 'dist', p));
const { loadModel, readModelFile } = await dist('runtime/model.js');
const { sample, perImageNoise } = await dist('sampler/sample.js');
const { evenPlan, planFromTs, planFromLevel } = await dist('sampler/schedule.js');
const { cheapestWithin, PLAN_MARGIN_DB } = await dist('sampler/plan-choice.js');
const { inpaintOperator } = await dist('editing/inpaint.js');
const { colorizeOperator, luminance } = await dist('editing/colorize.js');
const { superresOperator, upsampleNearest } = await dist('editing/superres.js');
const { stackOperators, unconstrained } = await dist('editing/operator.js');
const { Rng } = await dist('rng.js');
const { Tensor } = await dist('tensor.js');

const flags = parseFlags(process.argv.slice(2));
const smoke = flags.smoke === true;
const modelPath = flags.model ?? join(ROOT, 'models', 'default.onnx');
const nCrops = Number(flags.crops ?? (smoke ? 4 : 32));
const outPath = flags.out ?? join(ROOT, 'training', 'results', 'task_plans.json');
// A stored plan costs at most this many network evaluations per image (or tile): K steps x samples.
const budget = Number(flags.budget ?? 4);
// --quality best may spend up to this many evaluations (steps x samples), each on another dihedral view.
const bestBudget = Number(flags['best-budget'] ?? 16);
const rounds = Number(flags.rounds ?? (smoke ? 1 : 3));
// The numbers of evaluations (steps) searched per task: --ks 1,2,3,4 (default 1,2,4).
const KS = String(flags.ks ?? '1,2,4').split(',').map(Number);
if (!KS.every((k) => Number.isInteger(k) && k >= 1 && k <= 16) || !KS.includes(1)) throw new Error(`--ks: expected numbers of steps such as 1,2,4, with 1 (the fast preset), got ${flags.ks}`);
const scoreOnly = flags['score-only'] === true;
const TRAIN_DIR = process.env.CM_TRAIN_DIR ?? join(ROOT, '..', 'shared', 'data', 'train');
const valShare = Math.round(Number(flags['val-percent'] ?? 2) * 100);
const started = performance.now();
const log = (msg) => process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0)}s] ${msg}\n`);

// ---- validation photos: exactly cmtrain.data.is_validation ------------------------------------------------------
const valPaths = validationPhotoPaths(valShare);
if (valPaths.length === 0) throw new Error(`no validation photos under ${TRAIN_DIR}`);

const file = await readModelFile(modelPath);
const { grid, resolution: RES } = file.card;
const earlier = flags.start === 'model' ? file.card.taskPlans : typeof flags.start === 'string' ? JSON.parse(readFileSync(flags.start, 'utf8')) : null;
// The float model by default (plans are the model's, whatever the CPU); --precision int8 searches with its int8 variant.
const model = await loadModel(file, { device: 'cpu', threads: Number(flags.threads ?? 2), inline: true, precision: flags.precision ?? 'float' });
// The crops are of the model's size: one tile each, so the tiled denoiser only adds the views (as the CLI has them).
const { tiledDenoiser } = await dist('sampler/tiles.js');
const viewed = tiledDenoiser(model, { tile: RES, overlap: 0, batch: 64, small: RES });
const crops = [];
for (let i = 0; crops.length < nCrops; i++) {
  const photo = await load(valPaths[i % valPaths.length]);
  if (photo.w < RES || photo.h < RES) continue;
  crops.push(cropsOf(photo, 1, RES, 5000 + i)[0].img);
}
log(`model ${modelPath}; ${crops.length} crops of ${valPaths.length} validation photos`);

// ---- images <-> tensors as the CLI has them -------------------------------------------------------------------------
const toTensor = (img) => {
  const t = new Tensor(1, 3, img.h, img.w);
  const plane = img.w * img.h;
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) t.data[c * plane + p] = Math.round(img.data[p * 3 + c]) / 127.5 - 1;
  return t;
};
const toImg = (t, i) => {
  const plane = t.w * t.h;
  const data = new Float32Array(plane * 3);
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) data[p * 3 + c] = Math.min(255, Math.max(0, Math.round((t.data[(i * 3 + c) * plane + p] + 1) * 127.5)));
  return { w: t.w, h: t.h, data };
};
const maskTensor = (m, w, h) => new Tensor(1, 1, h, w, Float32Array.from(m));

// ---- task variants: operators exactly as the commands build them ------------------------------------------------------
const natural = mean(crops.map(hfEnergy));
const naturalColour = mean(crops.map(colourfulness));
function variant(name, task, build, metric) {
  const items = crops.map((gt, i) => ({ gt, ...build(gt, i) }));
  return { name, task, items, metric };
}
const superres = (p) =>
  variant(`superres-x${p}`, `superres-x${p}`, (gt) => ({ op: superresOperator(upsampleNearest(toTensor(boxDown(gt, p)), p), p) }), (out, it) => ({ psnr: psnr(out, it.gt), hf: hfEnergy(out) / hfEnergy(it.gt), blockiness: blockinessRatio(out, it.gt, p) }));
const inpaint = (family) =>
  variant(`inpaint-${family}`, 'inpaint', (gt, i) => {
    const mask = makeMask(family, gt.w, gt.h, 7000 + i);
    // The CLI's default fill (--fill auto: PatchMatch where the hole's surroundings are textured), seeded per image.
    return { mask, op: inpaintOperator(toTensor(withHole(gt, mask)), maskTensor(mask, gt.w, gt.h), { fill: 'auto', seed: i }) };
  }, (out, it) => ({ psnr: psnr(out, it.gt, it.mask), hf: hfEnergy(out) / hfEnergy(it.gt), texture: textureRatio(out, it.gt, it.mask) }));
const colorize = variant('colorize', 'colorize', (gt) => {
  // The CLI reads a gray PNG and keeps its luminance: the gray value replicated has it.
  const g = toTensor(quantize(grayOf(gt)));
  const l = luminance(g);
  const plane = gt.w * gt.h;
  const gray = new Tensor(1, 3, gt.h, gt.w);
  for (let c = 0; c < 3; c++) gray.data.set(l.data, c * plane);
  return { op: colorizeOperator(gray) };
}, (out, it) => ({ psnr: psnr(out, it.gt), colour: colourfulness(out) / naturalColour, hf: hfEnergy(out) / hfEnergy(it.gt) }));
const denoise = (sigma) => variant(`denoise-${sigma}`, 'denoise', (gt, i) => ({ op: unconstrained(toTensor(addNoise(gt, sigma, 9000 + i))), sigma }), (out, it) => ({ psnr: psnr(out, it.gt), hf: hfEnergy(out) / hfEnergy(it.gt) }));
const stroke = variant('stroke', 'stroke', (gt) => {
  const strokes = strokePainting(gt);
  return { strokes, op: unconstrained(toTensor(strokes.painting)), sourceErr: regionColourError(gt, strokes) };
}, (out, it) => ({ colourErr: regionColourError(out, it.strokes) / Math.max(1, it.sourceErr), hf: hfEnergy(out) / natural }));

const ALL = [superres(2), superres(4), superres(8), inpaint('box'), inpaint('strokes'), colorize, denoise(15), denoise(25), denoise(50), stroke];
const only = typeof flags.tasks === 'string' ? flags.tasks.split(',') : smoke ? ['superres-x4', 'inpaint-box'] : null;
const variants = only ? ALL.filter((v) => only.includes(v.name) || only.includes(v.task)) : ALL;

// ---- scoring one configuration ---------------------------------------------------------------------------------------
const rows = [];
const scored = new Map();
async function score(v, cfg) {
  const id = `${v.name}|${key(cfg)}`;
  if (!scored.has(id)) scored.set(id, await scoreNow(v, cfg));
  return scored.get(id);
}
async function scoreNow(v, cfg) {
  const ops = stackOperators(v.items.map((it) => it.op));
  const plan = v.task === 'denoise' ? planFromLevel(grid, v.items[0].sigma / 127.5, cfg.k) : planFromTs(grid, cfg.ts, 'plan');
  const x = await sample(viewed, {
    operator: ops,
    sigmas: plan.sigmas,
    sigmaMin: grid.sigmaMin,
    noise: Array.from({ length: cfg.samples }, (_, k) => perImageNoise(v.items.map((_, i) => new Rng(i, k)))),
    start: cfg.start,
    eta: cfg.eta,
    views: cfg.views ?? false,
    startIsNoisy: v.task === 'denoise',
  });
  const m = aggregate(v.items.map((it, i) => v.metric(toImg(x, i), it)));
  const row = { variant: v.name, k: cfg.k, ts: cfg.ts?.join(',') ?? `level,${cfg.k}`, start: cfg.start, eta: cfg.eta, samples: cfg.samples, views: cfg.views ? 1 : 0, ...m };
  rows.push(row);
  return row;
}

/** The crops' figures as one: means, but the texture in the hole as a median (a smooth hole's ratio can be huge). */
function aggregate(per) {
  return Object.fromEntries(Object.keys(per[0]).map((k) => [k, (k === 'texture' ? median : mean)(per.map((r) => r[k]))]));
}
/** The figures logged and printed. */
const SHOWN = ['psnr', 'hf', 'blockiness', 'texture', 'colour', 'colourErr'];

/** What a cheaper plan may give up: 0.05 dB on the PSNR tasks; colorize and stroke, whose objectives are no PSNR, take their best (the cheaper on a tie). */
const marginOf = (task) => (task === 'colorize' || task === 'stroke' ? 1e-3 : PLAN_MARGIN_DB);

/** Higher is better; infeasible configurations rank below every feasible one. */
function objective(v, r) {
  if (v.task === 'colorize') return r.colour >= 0.5 && r.colour <= 1.5 ? r.psnr : -1000 - Math.abs(Math.log(r.colour));
  if (v.task === 'stroke') {
    // Feasible: the smallest colour error. Otherwise the smaller of the two misses, each as a log ratio to its
    // bound, is what counts (neither a blur nor a recoloured picture wins outright).
    const hfMiss = r.hf < 0.8 ? Math.log(0.8 / r.hf) : r.hf > 1.2 ? Math.log(r.hf / 1.2) : 0;
    const colourMiss = Math.max(0, Math.log(r.colourErr / 2));
    return hfMiss === 0 && colourMiss === 0 ? -r.colourErr : -1000 - Math.max(hfMiss, colourMiss);
  }
  return r.psnr;
}

const key = (c) => `${c.ts?.join(',') ?? c.k}|${c.start}|${c.eta}|${c.samples}|${c.views ? 'views' : ''}`;
const last = grid.size - 1;
const spaced = (s0, k) => evenPlan(grid, k, s0).ts;

async function searchK(v, k) {
  const evalCfg = async (c) => ({ cfg: c, row: await score(v, c) });
  const etas = [0, 0.5, 1];
  let best = null;
  const consider = (e) => {
    if (!best || objective(v, e.row) > objective(v, best.row)) best = e;
  };
  if (v.task === 'denoise') {
    for (const eta of etas) consider(await evalCfg({ k, start: 'estimate', eta, samples: 1 }));
    return best;
  }
  const before = earlier?.[v.task]?.[String(k)];
  if (before?.ts) {
    consider(await evalCfg({ k, ts: before.ts, start: before.start ?? 'estimate', eta: before.eta ?? 1, samples: 1 }));
  } else {
    const starts = v.task === 'stroke' ? [8, 12, 16, 20, 24] : [18, 22, 26, 30, 33];
    for (const s0 of starts) {
      if (last - s0 < k) continue;
      for (const eta of etas) consider(await evalCfg({ k, ts: spaced(s0, k), start: 'estimate', eta, samples: 1 }));
    }
  }
  for (let round_ = 0; round_ < rounds; round_++) {
    const before = key(best.cfg);
    const { ts, eta } = best.cfg;
    const moves = [];
    for (let j = 0; j < ts.length - 1; j++) {
      for (const d of [-2, -1, 1, 2]) {
        const t = ts.slice();
        t[j] += d;
        if (t[j] >= 0 && (j === 0 || t[j] > t[j - 1]) && t[j] < t[j + 1]) moves.push({ ...best.cfg, ts: t });
      }
    }
    for (const d of [-0.25, 0.25]) if (eta + d >= 0 && eta + d <= 1) moves.push({ ...best.cfg, eta: eta + d });
    for (const m of moves) consider(await evalCfg(m));
    if (key(best.cfg) === before) break;
  }
  return best;
}

if (scoreOnly) {
  // Each variant with its task's stored default (what `cm <task>` runs without sampling flags).
  const out = {};
  for (const v of variants) {
    const byK = file.card.taskPlans[v.task];
    const k = file.card.taskDefaults[v.task];
    const entry = byK?.[String(k)];
    if (!entry) throw new Error(`${modelPath}: no stored default plan for ${v.task}`);
    const row = await score(v, { k, ts: entry.ts, start: entry.start, eta: entry.eta, samples: entry.samples ?? 1, views: entry.views ?? false });
    out[v.name] = Object.fromEntries(Object.entries(row).filter(([n]) => SHOWN.includes(n)));
    log(`${v.name}: default (K=${k}) ${JSON.stringify(out[v.name])}`);
  }
  await model.dispose();
  await new Promise((done) => process.stdout.write(`${JSON.stringify(out)}\n`, done));
  process.exit(0);
}

const chosen = {};
for (const v of variants) {
  const t0 = performance.now();
  // The classical estimate itself (no evaluation): Lanczos, the harmonic fill, the gray image, the noisy input.
  const ops = stackOperators(v.items.map((it) => it.op));
  const est = ops.projectInRange(ops.project(ops.estimate()));
  rows.push({ variant: v.name, k: 0, ts: 'estimate', start: 'estimate', eta: 0, samples: 1, ...aggregate(v.items.map((it, i) => v.metric(toImg(est, i), it))) });
  log(`${v.name}: the estimate alone: ${Object.entries(rows.at(-1)).filter(([n]) => SHOWN.includes(n)).map(([n, x]) => `${n} ${round(x, 3)}`).join(' ')}`);
  // The paper's sampler with the model's own plans, for reference.
  for (const [k, ts] of Object.entries(file.card.plans)) {
    if (v.task === 'denoise' || v.task === 'stroke') continue;
    if (Number(k) <= 2) await score(v, { k: Number(k), ts, start: 'known', eta: 1, samples: 1 });
  }
  const best = {};
  for (const k of smoke ? [1] : KS) best[k] = await searchK(v, k);
  const fastCfg = best[1].cfg;
  const fastRow = best[1].row;
  // Averaging: the best plans again with more samples, within --budget evaluations in all; a K keeps more samples
  // only where they buy the margin over fewer (the cheapest within 0.05 dB, as for the default below: otherwise every
  // K would fill the budget and the default's rule would have nothing cheaper to choose).
  for (const k of Object.keys(best).map(Number)) {
    if (v.task === 'denoise' && best[k].cfg.eta === 0) continue; // deterministic: averaging changes nothing
    const options = [{ ...best[k], cost: k }];
    for (const s of [2, 4, 8]) {
      if (k * s > budget || smoke) continue;
      const cfg = { ...best[k].cfg, samples: s };
      options.push({ cfg, row: await score(v, cfg), cost: k * s });
    }
    const pick = cheapestWithin(options.map((o, i) => ({ k: i, cost: o.cost, objective: objective(v, o.row) })), marginOf(v.task));
    best[k] = { cfg: options[pick.k].cfg, row: options[pick.k].row };
  }
  // Views: the same evaluations, each on another mirrored or turned view (free: kept where they score better).
  for (const k of Object.keys(best).map(Number)) {
    if (k * best[k].cfg.samples < 2 || smoke) continue;
    const cfg = { ...best[k].cfg, views: true };
    const row = await score(v, cfg);
    if (objective(v, row) > objective(v, best[k].row)) best[k] = { cfg, row };
  }
  // --quality fast: one evaluation, one sample (the K = 1 search before averaging).
  best.fast = { cfg: { ...fastCfg, k: 1 }, row: fastRow };
  // --quality best: the best plan of each K with more samples and views, up to bestBudget evaluations.
  if (!smoke) {
    let top = null;
    for (const k of KS) {
      if (!best[k]) continue;
      for (const s of [1, 2, 4, 8, 16]) {
        if (k * s > bestBudget) continue;
        const cfg = { ...best[k].cfg, k, samples: s, views: k * s > 1 };
        const row = await score(v, cfg);
        if (!top || objective(v, row) > objective(v, top.row)) top = { cfg, row };
      }
    }
    best.best = top;
  }
  chosen[v.name] = best;
  const show = (e) => `${e.cfg.ts?.join(',') ?? 'level'} ${e.cfg.start} eta ${e.cfg.eta} x${e.cfg.samples}${e.cfg.views ? ' views' : ''}: ${Object.entries(e.row).filter(([n]) => SHOWN.includes(n)).map(([n, x]) => `${n} ${round(x, 3)}`).join(' ')}`;
  log(`${v.name} (${((performance.now() - t0) / 1000).toFixed(0)} s): ${Object.entries(best).map(([k, e]) => `K=${k} ${show(e)}`).join(' | ')}`);
}

// ---- cm.task_plans: one entry per task and K; inpaint takes the plan that is best over both mask families ------------
const taskPlans = {};
for (const v of variants) {
  for (const [k, e] of Object.entries(chosen[v.name])) {
    if (!e) continue;
    const entry = {
      ...(k === 'fast' || k === 'best' ? { k: e.cfg.k } : {}),
      ...(e.cfg.ts ? { ts: e.cfg.ts } : {}),
      start: e.cfg.start,
      eta: e.cfg.eta,
      ...(e.cfg.samples > 1 ? { samples: e.cfg.samples } : {}),
      ...(e.cfg.views ? { views: true } : {}),
    };
    const byK = (taskPlans[v.task] ??= {});
    if (!byK[k]) byK[k] = { entry, from: v.name, obj: objective(v, e.row) };
    else byK[k].alternatives = [...(byK[k].alternatives ?? []), { entry, from: v.name, obj: objective(v, e.row) }];
  }
}
// Where two variants share a task (inpaint box / strokes, denoise 15 / 25 / 50), each candidate is scored on every
// variant of the task and the best mean objective wins.
for (const [task, byK] of Object.entries(taskPlans)) {
  const vs = variants.filter((v) => v.task === task);
  for (const [k, slot] of Object.entries(byK)) {
    const cands = [slot, ...(slot.alternatives ?? [])].map((c) => c.entry);
    if (cands.length === 1) {
      byK[k] = cands[0];
      continue;
    }
    let win = null;
    for (const c of cands) {
      let total = 0;
      for (const v of vs) total += objective(v, await score(v, { k: Number(k), ...c, samples: c.samples ?? 1 }));
      // (a preset's own k comes with c)
      if (!win || total > win.total) win = { c, total };
    }
    byK[k] = win.c;
    byK[k].objective = win.total / vs.length;
  }
}
// The default of each task: the cheapest entry (evaluations x samples) within 0.05 dB of the best by the objective (mean
// over the task's variants; src/sampler/plan-choice.ts); colorize and stroke, whose objectives are no PSNR, take their
// best (the cheaper on a tie). The PSNR against evaluations of every task is logged.
for (const [task, byK] of Object.entries(taskPlans)) {
  const vs = variants.filter((v) => v.task === task);
  const measured = [];
  for (const [k, entry] of Object.entries(byK)) {
    if (k === 'fast' || k === 'best') {
      delete entry.objective;
      continue;
    }
    let obj = entry.objective;
    if (obj === undefined) {
      obj = 0;
      for (const v of vs) obj += objective(v, await score(v, { k: Number(k), ...entry, samples: entry.samples ?? 1 })) / vs.length;
    }
    delete entry.objective;
    measured.push({ k: Number(k), cost: Number(k) * (entry.samples ?? 1), objective: obj });
  }
  byK.default = cheapestWithin(measured, marginOf(task)).k;
  log(`${task}: objective against evaluations ${measured.sort((a, b) => a.cost - b.cost).map((m) => `${m.cost}: ${round(m.objective, 3)}`).join(', ')}; default K=${byK.default}`);
}
await model.dispose();
mkdirSync(dirname(outPath), { recursive: true });
writeFileSync(outPath, `${JSON.stringify(taskPlans)}\n`);
const cols = ['variant', 'k', 'ts', 'start', 'eta', 'samples', 'views', 'psnr', 'hf', 'texture', 'blockiness', 'colour', 'colourErr'];
writeFileSync(outPath.replace(/\.json$/, '.csv'), [cols.join(','), ...rows.map((r) => cols.map((c) => (typeof r[c] === 'number' ? round(r[c], 4) : `"${r[c] ?? ''}"`)).join(','))].join('\n') + '\n');
log(`wrote ${outPath} and ${outPath.replace(/\.json$/, '.csv')} (${rows.length} configurations)`);
process.stdout.write(`${JSON.stringify(taskPlans)}\n`);
