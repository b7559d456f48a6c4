#!/usr/bin/env node
// cm against published figures, on whole photos (part of `npm run bench:quality`; alone: `npm run bench:published`).
//
//   node bench/published.mjs [--model PATH] [--out DIR] [--threads 2] [--sigmas 15,25,50] [--photos N]
//                            [--no-denoise] [--no-superres] [--smoke]
//
// 1. Colour denoising on all 24 Kodak24 photos at full size, sigma 15 / 25 / 50 (0-255 units), with the protocol of
//    the published tables (lib/protocol.mjs: noise added in floating point, no rounding or clipping before the
//    network; output clipped and rounded to 8 bits; PSNR over RGB, peak 255, no border shaved; mean over photos),
//    next to the published CBM3D, CDnCNN, FFDNet and DRUNet figures. The noisy photo is float, which no image file
//    the CLI reads can hold, so this part runs the CLI's own code (dist/: the model's stored denoise plan, the
//    fitted tiles and per-call batch of the CPU, editFullResolution) in this process; before measuring it checks on
//    an 8-bit noisy photo that this path gives exactly `cm denoise`'s output, byte for byte.
// 2. x4 super-resolution of every Kodak24 and Set5 photo, whole: each photo cropped to a multiple of 4 (top left),
//    box-averaged by 4 and rounded to 8 bits (the benchmark's forward model), upscaled by the real CLI (`cm superres
//    -x 4`, the model's defaults) and by PIL's Lanczos and bicubic (bench/baselines.py); PSNR over RGB and on BT.601
//    luma, no border shaved.
// Writes published.json and published.md into --out (default bench/results; with --smoke a temporary folder) and
// RESULTS.md joined with the other benchmarks' tables.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { assembleResults, chooseModel, codeVersion, machine, parseFlags, records, RESULTS, ROOT, round, runCli } from './lib/common.mjs';
import { cropToMultiple, photoPaths } from './lib/data.mjs';
import { addNoise, boxDown, crop, load, savePng } from './lib/images.mjs';
import { mean, psnr, psnrY } from './lib/metrics.mjs';
import { noiseSource, noisyPlanes, PUBLISHED_KODAK24, psnr8, toImage8 } from './lib/protocol.mjs';

const flags = parseFlags(process.argv.slice(2));
const smoke = flags.smoke === true;
const outDir = typeof flags.out === 'string' ? flags.out : smoke ? join(tmpdir(), 'cm-bench-smoke') : RESULTS;
const threads = Number(flags.threads ?? 2);
const sigmas = String(flags.sigmas ?? (smoke ? '25' : '15,25,50')).split(',').map(Number);
const nPhotos = Number(flags.photos ?? (smoke ? 2 : Infinity));
const python = typeof flags.python === 'string' ? flags.python : '/usr/bin/python3';
const modelPath = await chooseModel(flags.model);
const started = performance.now();
const log = (msg) => process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0)}s] ${msg}\n`);

const dist = (p) => import(join(ROOT, 'dist', p));
const { readModelFile, loadModel } = await dist('runtime/model.js');
const { chooseSampling, chooseTiling, perCall, stagesOf } = await dist('commands/common.js');
const { evaluations, planFromLevel } = await dist('sampler/schedule.js');
const { editFullResolution } = await dist('sampler/fullres.js');
const { unconstrained } = await dist('editing/operator.js');
const { Tensor } = await dist('tensor.js');

const file = await readModelFile(modelPath);
const work = mkdtempSync(join(tmpdir(), 'cm-published-'));
const results = { meta: { date: new Date().toISOString(), model: modelPath, name: file.card.name, machine: machine(), code: codeVersion(), threads }, denoise: null, superres: null };

/** `cm denoise --noise sigma` on a float tensor, as the command runs it (src/commands/denoise.ts and run.ts). */
async function denoiser(steps) {
  const model = await loadModel(file, { device: 'cpu', threads, inline: true });
  const args = { steps };
  const tiling = chooseTiling(args, file);
  const call = { ...tiling, ...perCall(args, model.device, tiling.tile) };
  return {
    model,
    run: async (planes, w, h, sigma, seed) => {
      const own = (k) => planFromLevel(file.card.grid, sigma / 127.5, k);
      const s = chooseSampling(args, file, 'denoise', 1, own);
      const [out] = await editFullResolution(model, [{ operator: unconstrained(new Tensor(1, 3, h, w, planes)), seed, scales: 'tiles' }], {
        ...call,
        small: file.card.resolution,
        ...stagesOf(s),
        sigmaMin: file.card.grid.sigmaMin,
        startIsNoisy: true,
      });
      return { out: out.data, evaluations: evaluations(s.plan) * s.samples, plan: { eta: s.eta, samples: s.samples, views: s.views } };
    },
  };
}

/** This path against the CLI itself on an 8-bit noisy photo: the same bytes, or the benchmark stops. */
async function checkAgainstCli(run, gt, sigma) {
  const noisy8 = addNoise(gt, sigma, 4242);
  const inPath = join(work, 'check-in.png');
  const outPath = join(work, 'check-out.png');
  await savePng(noisy8, inPath);
  records(await runCli(['denoise', inPath, '--noise', String(sigma), '-o', outPath, '--seed', '0', '--device', 'cpu', '--threads', String(threads), '-q', '--json']), 'denoise check');
  const planes = new Float32Array(3 * gt.w * gt.h);
  for (let p = 0; p < gt.w * gt.h; p++) for (let c = 0; c < 3; c++) planes[c * gt.w * gt.h + p] = noisy8.data[p * 3 + c] / 127.5 - 1;
  const mine = toImage8((await run(planes, gt.w, gt.h, sigma, 0)).out, gt.w, gt.h);
  const cli = await load(outPath);
  const differ = mine.data.reduce((n, v, i) => n + (v !== cli.data[i] ? 1 : 0), 0);
  if (differ) throw new Error(`the benchmark's denoising path differs from cm denoise in ${differ} values`);
  log(`check: this path = cm denoise, byte for byte (${gt.w}x${gt.h}, sigma ${sigma})`);
}

if (flags['no-denoise'] !== true) {
  const photos = photoPaths('kodak24').slice(0, nPhotos);
  const rows = {};
  for (const steps of [undefined, 1]) {
    const label = steps === undefined ? 'cm (defaults)' : 'cm --steps 1';
    const { model, run } = await denoiser(steps);
    if (steps === undefined) await checkAgainstCli(run, crop(await load(photos[0]), 0, 0, 256, 192), 25);
    for (const sigma of sigmas) {
      const per = [];
      const t0 = performance.now();
      let info;
      const noisy = [];
      for (let i = 0; i < photos.length; i++) {
        const gt = await load(photos[i]);
        const planes = noisyPlanes(gt, sigma, noiseSource(i, sigma));
        noisy.push(psnr8(toImage8(planes, gt.w, gt.h), gt)); // the noisy input itself, clipped and rounded like an output
        const r = await run(planes, gt.w, gt.h, sigma, i);
        info = r;
        per.push(psnr8(toImage8(r.out, gt.w, gt.h), gt));
      }
      const secs = (performance.now() - t0) / 1000;
      (rows[label] ??= { evaluations: info.evaluations, plan: info.plan, psnr: {}, perPhoto: {}, seconds: {} });
      rows[label].psnr[sigma] = mean(per);
      rows[label].perPhoto[sigma] = per.map((v) => round(v, 3));
      rows[label].seconds[sigma] = round(secs, 1);
      (rows.noisy ??= {})[sigma] = mean(noisy);
      log(`denoise ${sigma}, ${label}: ${mean(per).toFixed(2)} dB over ${per.length} photos (${secs.toFixed(0)} s)`);
    }
    await model.dispose();
  }
  results.denoise = { photos: photos.map((p) => basename(p)), sigmas, rows };
}

if (flags['no-superres'] !== true) {
  const sets = { Kodak24: photoPaths('kodak24').slice(0, nPhotos), Set5: photoPaths('set5').slice(0, nPhotos) };
  const out = {};
  for (const [set, paths] of Object.entries(sets)) {
    const lowDir = join(work, `${set}-low`);
    const cmDir = join(work, `${set}-cm`);
    const baseDir = join(work, `${set}-base`);
    mkdirSync(lowDir, { recursive: true });
    const gts = {};
    for (const p of paths) {
      const gt = cropToMultiple(await load(p), 4);
      const name = basename(p).replace(/\.[^.]+$/, '.png');
      gts[name] = gt;
      await savePng(boxDown(gt, 4), join(lowDir, name));
    }
    const t0 = performance.now();
    const recs = records(await runCli(['superres', lowDir, '-x', '4', '--out-dir', cmDir, '--name', '{stem}.{ext}', '--device', 'cpu', '--threads', String(threads), '--seed', '0', '-q', '--json']), `superres ${set}`);
    const secs = (performance.now() - t0) / 1000;
    const base = spawnSync(python, [join(ROOT, 'bench', 'baselines.py'), 'superres', '--scale', '4', lowDir, baseDir], { encoding: 'utf8' });
    if (base.status !== 0) throw new Error(`bench/baselines.py: ${base.stdout}${base.stderr}`);
    const methods = { cm: cmDir, ...Object.fromEntries(readdirSync(baseDir).map((m) => [m, join(baseDir, m)])) };
    const table = {};
    for (const [m, dir] of Object.entries(methods)) {
      const per = [];
      for (const [name, gt] of Object.entries(gts)) {
        const img = await load(join(dir, name));
        per.push({ rgb: psnr(img, gt), y: psnrY(img, gt) });
      }
      table[m] = { rgb: mean(per.map((r) => r.rgb)), y: mean(per.map((r) => r.y)), perPhoto: per.map((r) => round(r.rgb, 3)) };
    }
    out[set] = { photos: Object.keys(gts), table, cmSeconds: round(secs, 1), plan: { evaluations: recs[0].evaluations, ts: recs[0].ts, eta: recs[0].eta, samples: recs[0].samples } };
    log(`superres x4 ${set}: cm ${table.cm.rgb.toFixed(2)} dB, Lanczos ${table['Lanczos (PIL)'].rgb.toFixed(2)} dB (${secs.toFixed(0)} s)`);
  }
  results.superres = out;
}

rmSync(work, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'published.json'), `${JSON.stringify(results, null, 1)}\n`);
writeFileSync(join(outDir, 'published.md'), markdown(results));
assembleResults(outDir);
log(`wrote ${join(outDir, 'published.md')}`);

function markdown({ meta, denoise, superres }) {
  const f = (v) => (v === undefined || v === null ? '-' : v.toFixed(2));
  const lines = [
    '## Against published figures (`bench/published.mjs`)',
    '',
    `Measured ${meta.date.slice(0, 16).replace('T', ' ')} UTC on ${meta.machine.cpu} (${meta.machine.cores} cores), model ${meta.name} (\`${basename(meta.model)}\`), ` +
      `commit ${meta.code.commit}${meta.code.srcChanged.length ? ` with uncommitted changes in ${meta.code.srcChanged.join(', ')}` : ''}, ${meta.threads} model threads.`,
    '',
  ];
  if (denoise) {
    lines.push(
      `### Colour denoising, Kodak24 (${denoise.photos.length} photos, full size)`,
      '',
      'Protocol of the published tables: Gaussian noise of the given sigma (0-255 units) added in floating point, no ' +
        'rounding or clipping before the network; the output clipped to 0-255 and rounded; PSNR over RGB, peak 255, no ' +
        'border shaved, the mean of the per-photo PSNRs. The noise is our own (seeded per photo and sigma), so figures ' +
        'differ from the papers\' by the noise draw as well (a few hundredths of a dB). cm runs the model\'s stored ' +
        'denoise plan through the CLI\'s own tiled sampler (checked equal to `cm denoise` on an 8-bit input).',
      '',
      `| method | ${denoise.sigmas.map((s) => `sigma ${s}`).join(' | ')} | source |`,
      `|---|${denoise.sigmas.map(() => '---|').join('')}---|`,
    );
    if (denoise.rows.noisy) lines.push(`| the noisy input | ${denoise.sigmas.map((s) => f(denoise.rows.noisy[s])).join(' | ')} | measured |`);
    for (const [label, r] of Object.entries(denoise.rows)) {
      if (label === 'noisy') continue;
      lines.push(`| **${label}** (${r.evaluations} evaluation${r.evaluations === 1 ? '' : 's'}${r.plan.samples > 1 ? `, ${r.plan.samples} samples averaged` : ''}, eta ${r.plan.eta}${r.plan.views ? ', a flip or rotation per step' : ''}) | ${denoise.sigmas.map((s) => `**${f(r.psnr[s])}**`).join(' | ')} | measured here |`);
    }
    for (const p of PUBLISHED_KODAK24) lines.push(`| ${p.method} | ${denoise.sigmas.map((s) => f(p[s])).join(' | ')} | ${p.source} |`);
    lines.push('');
  }
  if (superres) {
    lines.push(
      '### x4 super-resolution, whole photos',
      '',
      'Every photo of each set, cropped to a multiple of 4, box-averaged by 4 and rounded to 8 bits; upscaled by `cm superres -x 4` ' +
        '(the model\'s defaults) and by PIL; PSNR over RGB (and on BT.601 luma Y), no border shaved, mean over photos.',
      '',
      '| set | photos | cm RGB (Y) | Lanczos (PIL) RGB (Y) | bicubic (PIL) RGB (Y) | cm - Lanczos | cm plan | cm seconds |',
      '|---|---|---|---|---|---|---|---|',
    );
    for (const [set, s] of Object.entries(superres)) {
      const t = s.table;
      const l = t['Lanczos (PIL)'];
      const b = t['bicubic (PIL)'];
      lines.push(`| ${set} | ${s.photos.length} | ${f(t.cm.rgb)} (${f(t.cm.y)}) | ${f(l.rgb)} (${f(l.y)}) | ${f(b.rgb)} (${f(b.y)}) | ${(t.cm.rgb - l.rgb >= 0 ? '+' : '') + (t.cm.rgb - l.rgb).toFixed(2)} | ${s.plan.evaluations} evaluations${s.plan.samples > 1 ? ` x ${s.plan.samples} samples` : ''}, ts ${s.plan.ts?.join(',') ?? '-'}, eta ${s.plan.eta} | ${s.cmSeconds} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}
