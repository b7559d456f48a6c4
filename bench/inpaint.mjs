#!/usr/bin/env node
// Inpainting with texture (issue 17): cm's --fill smooth | patch | auto next to the harmonic fill, the patch fill alone
// (what --fill patch starts from: how much of its texture the model keeps) and OpenCV's Telea,
// Navier-Stokes, xphoto FSR (fast) and shift-map (bench/baselines.py --xphoto), on box, strokes and "object" holes
// (a blob of about 64x64 or 100x100, bench/lib/holes.mjs) in crops and in whole photos of Kodak24 and Set5.
// Per method: PSNR inside the hole and texture (the high-frequency energy inside the hole, the difference to a sigma-1
// Gaussian blur, relative to the photo's there: 1 as detailed as the photo, near 0 a smudge), as a mean and a
// median over holes; and the CLI's wall time. Targets (issue 17): texture 0.5 to 1.5 of the photo's, PSNR at most
// 1.5 dB under the harmonic fill. Writes bench/results/inpaint.{md,json} and contact sheets at 100%
// (bench/results/inpaint-*.png, git-ignored: they show evaluation photos).
//
//   node bench/inpaint.mjs [--model PATH] [--set eval|train] [--crop 256] [--full-every 6] [--no-full] [--no-crops]
//                          [--families box,strokes,object64,object100] [--fills smooth,patch,auto] [--cm-args="..."]
//                          [--threads 1] [--python /usr/bin/python3] [--out DIR] [--smoke]
//                          [--groups kodak-crops,set5-crops,kodak-whole,set5-whole] [--merge]
// --groups: only these groups of photos (default all; --no-crops / --no-full drop theirs).
// --merge: keep the rows (and, in a row measured again, the methods not run again) of the results file already in
// --out, replacing what this run measured: a slow benchmark run in parts (e.g. two processes at once, or --fills
// patch,auto after a change to the patch fill) adds up to one table. Each row records its date and code.
// --smoke: two Kodak24 crops and one Set5 crop, object64 holes only, no whole photos (a test runs it on the tiny model).
// --set train measures training photos instead (for choosing defaults: never tune on the evaluation photos).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { chooseModel, codeVersion, machine, parseFlags, records, RESULTS, ROOT, round, runCli } from './lib/common.mjs';
import { cropsOf, cropToMultiple, maskPlane, photoPaths, trainingPhotoPaths, withHole } from './lib/data.mjs';
import { toImg, toTensor } from './lib/estimates.mjs';
import { HOLE_FAMILIES, makeHole } from './lib/holes.mjs';
import { crop, load, saveGrayPng, savePng } from './lib/images.mjs';
import { mean, median, psnr, textureRatio } from './lib/metrics.mjs';

const flags = parseFlags(process.argv.slice(2));
const smoke = flags.smoke === true;
const model = await chooseModel(flags.model);
const set = flags.set ?? 'eval';
const cropSize = Number(flags.crop ?? 256);
const fullEvery = flags['no-full'] ? 0 : Number(flags['full-every'] ?? (smoke ? 0 : 6));
const families = String(flags.families ?? (smoke ? 'object64' : 'object64,object100,box,strokes')).split(',');
const fills = String(flags.fills ?? 'smooth,patch,auto').split(',');
const cmArgs = typeof flags['cm-args'] === 'string' ? flags['cm-args'].split(' ').filter(Boolean) : [];
const threads = String(flags.threads ?? 1);
const python = typeof flags.python === 'string' ? flags.python : '/usr/bin/python3';
const outDir = flags.out ?? (smoke ? join(tmpdir(), 'cm-bench-smoke') : RESULTS);
const started = performance.now();
const log = (msg) => process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0)}s] ${msg}\n`);
const work = mkdtempSync(join(tmpdir(), 'cm-bench-inpaint-'));
mkdirSync(outDir, { recursive: true });

const dist = (p) => import(join(ROOT, 'dist', p));
const { Tensor } = await dist('tensor.js');
const { classicalFill } = await dist('editing/inpaint.js');

// ---- photos ---------------------------------------------------------------------------------------------------------
function trainPhotos(n) {
  const all = trainingPhotoPaths();
  const stride = Math.max(1, Math.floor(all.length / n));
  return all.filter((_, i) => i % stride === 0).slice(0, n);
}
const GROUP_KEYS = { 'kodak-crops': 'Kodak24 crops', 'set5-crops': 'Set5 crops', 'kodak-whole': 'Kodak24 whole photos', 'set5-whole': 'Set5 whole photos' };
const only = typeof flags.groups === 'string' ? flags.groups.split(',') : null;
for (const k of only ?? []) if (!GROUP_KEYS[k]) throw new Error(`--groups: unknown group ${k} (one of ${Object.keys(GROUP_KEYS).join(', ')})`);
const merge = flags.merge === true;
const groups = [];
if (set === 'train') {
  const paths = trainPhotos(Number(flags.photos ?? (smoke ? 2 : 24)));
  groups.push({ label: 'training crops', paths, crop: true });
} else {
  const kodak = photoPaths('kodak24');
  const set5 = photoPaths('set5');
  if (!flags['no-crops']) {
    groups.push({ label: 'Kodak24 crops', paths: smoke ? kodak.slice(0, 2) : kodak, crop: true });
    groups.push({ label: 'Set5 crops', paths: smoke ? set5.slice(0, 1) : set5, crop: true });
  }
  if (fullEvery > 0) {
    groups.push({ label: 'Kodak24 whole photos', paths: kodak.filter((_, i) => i % fullEvery === 0), crop: false });
    groups.push({ label: 'Set5 whole photos', paths: set5, crop: false });
  }
}

if (only) groups.splice(0, groups.length, ...groups.filter((g) => only.some((k) => GROUP_KEYS[k] === g.label)));

const PATCH_ALONE = 'patch fill alone (no model)';
const toT = (img) => toTensor(Tensor, img);
const toI = toImg;
const metrics = (img, gt, mask) => ({ psnr: psnr(img, gt, mask), texture: textureRatio(img, gt, mask) });

function runPython(args) {
  return new Promise((resolve) => {
    const child = spawn(python, args);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (e) => resolve({ status: -1, stdout: '', stderr: String(e) }));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

// ---- one group x family: inputs, baselines, cm runs -----------------------------------------------------------------
const rows = [];
const sheets = [];
for (const g of groups) {
  for (const fam of families) {
    const dir = join(work, `${g.label}-${fam}`.replace(/[^a-z0-9]+/gi, '-'));
    const inDir = join(dir, 'in');
    const maskDir = join(dir, 'mask');
    mkdirSync(inDir, { recursive: true });
    mkdirSync(maskDir, { recursive: true });
    const items = [];
    for (let i = 0; i < g.paths.length; i++) {
      const photo = await load(g.paths[i]);
      let gt;
      if (g.crop) {
        if (photo.w < cropSize || photo.h < cropSize) gt = crop(photo, 0, 0, Math.min(photo.w, cropSize), Math.min(photo.h, cropSize));
        else gt = cropsOf(photo, 1, cropSize, 4000 + i)[0].img;
      } else gt = cropToMultiple(photo, 8);
      const mask = makeHole(fam, gt.w, gt.h, 7000 + i);
      const stem = `p${String(i).padStart(2, '0')}`;
      const input = withHole(gt, mask); // the hole's pixels never reach the CLI
      await savePng(input, join(inDir, `${stem}.png`));
      await saveGrayPng(maskPlane(mask), gt.w, gt.h, join(maskDir, `${stem}.png`));
      items.push({ stem, gt, mask, input, outs: {} });
    }
    const add = (method, it, img) => (it.outs[method] = { img, ...metrics(img, it.gt, it.mask) });
    // the harmonic fill (cm's classical smooth estimate), in this process
    // and the patch fill alone (what --fill patch starts from, before the model refines it): how much texture the model keeps
    for (const it of items) {
      const [y, fill] = [toT(it.input), new Tensor(1, 1, it.gt.h, it.gt.w, Float32Array.from(it.mask))];
      add('harmonic fill', it, toI(classicalFill(y, fill)));
      add(PATCH_ALONE, it, toI(classicalFill(y, fill, { fill: 'patch', seed: 0 })));
    }
    // OpenCV, in a process of its own while cm runs (the machine's cores are shared)
    const base = join(dir, 'baselines');
    const pyRun = runPython([join(ROOT, 'bench', 'baselines.py'), 'inpaint', '--xphoto', inDir, maskDir, base]);
    // cm, one run per --fill
    const timing = {};
    for (const f of fills) {
      const name = `cm --fill ${f}`;
      const out = join(dir, `out-${f}`);
      const run = await runCli(['inpaint', inDir, '--mask', maskDir, '--fill', f, '--out-dir', out, '--name', '{stem}.{ext}', '--model', model, '--device', 'cpu', '--seed', '0', '--threads', threads, '-q', '--json', ...cmArgs]);
      records(run, `${g.label} ${fam} ${name}`);
      timing[name] = round(run.seconds / items.length, 2);
      for (const it of items) add(name, it, await load(join(out, `${it.stem}.png`)));
    }
    const py = await pyRun;
    let pyMethods = [];
    if (py.status === 0) {
      pyMethods = Object.keys(JSON.parse(py.stdout.trim().split('\n').pop()).written);
      for (const m of pyMethods) for (const it of items) add(m, it, await load(join(base, m, `${it.stem}.png`)));
    } else log(`baselines: ${py.stdout.trim() || py.stderr.trim().split('\n').pop()} (skipped)`);
    const methods = ['harmonic fill', PATCH_ALONE, ...pyMethods, ...fills.map((f) => `cm --fill ${f}`)];
    const row = { group: g.label, family: fam, holes: items.length, date: new Date().toISOString(), code: codeVersion().commit, methods: {}, secondsPerImage: timing };
    for (const m of methods) {
      const ps = items.map((it) => it.outs[m].psnr);
      const ts = items.map((it) => it.outs[m].texture);
      row.methods[m] = { psnr: round(mean(ps)), textureMean: round(mean(ts), 3), textureMedian: round(median(ts), 3) };
    }
    rows.push(row);
    await writeReport(false);
    log(`${g.label} ${fam}: ${methods.map((m) => `${m} ${row.methods[m].psnr} dB / ${row.methods[m].textureMedian}`).join('; ')}`);
    // Contact sheets at 100%: the first two holes of each crop group, a window around the hole for whole photos.
    if (sheets.length < 16) for (const it of items.slice(0, g.crop ? 2 : 1)) sheets.push({ label: `${g.label} ${fam} ${it.stem}`, it, methods, crop: !g.crop });
  }
}
rmSync(work, { recursive: true, force: true });

// ---- contact sheet: one row per hole, columns input | methods | truth, at 100% (whole photos: 256 around the hole) ----
async function sheet(entries, path) {
  const cell = cropSize;
  const gap = 4;
  const cols = 2 + Math.max(...entries.map((e) => e.methods.length));
  const W = cols * (cell + gap) + gap;
  const H = entries.length * (cell + gap) + gap;
  const out = { w: W, h: H, data: new Float32Array(W * H * 3).fill(255) };
  entries.forEach((e, r) => {
    const { it } = e;
    // the window: centred on the hole's bounding box
    let [x0, y0, x1, y1] = [it.gt.w, it.gt.h, 0, 0];
    for (let p = 0; p < it.mask.length; p++) {
      if (!it.mask[p]) continue;
      const x = p % it.gt.w;
      const y = (p - x) / it.gt.w;
      [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
    }
    const cw = Math.min(cell, it.gt.w);
    const ch = Math.min(cell, it.gt.h);
    const cx = Math.max(0, Math.min(it.gt.w - cw, Math.round((x0 + x1) / 2 - cw / 2)));
    const cy = Math.max(0, Math.min(it.gt.h - ch, Math.round((y0 + y1) / 2 - ch / 2)));
    const imgs = [it.input, ...e.methods.map((m) => it.outs[m].img), it.gt];
    imgs.forEach((img, c) => {
      for (let y = 0; y < ch; y++) {
        for (let x = 0; x < cw; x++) {
          const s = ((cy + y) * img.w + cx + x) * 3;
          const d = ((gap + r * (cell + gap) + y) * W + gap + c * (cell + gap) + x) * 3;
          out.data.set(img.data.subarray(s, s + 3), d);
        }
      }
    });
  });
  await savePng(out, path);
}
await writeReport(true);


// ---- report (rewritten after every row, so an interrupted run leaves what it measured) ---------------------------
async function writeReport(final) {
  const sheetPaths = [];
  for (let k = 0; k * 8 < sheets.length; k++) {
    const path = join(outDir, `inpaint-${set}-${k + 1}.png`);
    await sheet(sheets.slice(8 * k, 8 * k + 8), path);
    sheetPaths.push(path);
  }

  // ---- report ---------------------------------------------------------------------------------------------------------
  const meta = { date: new Date().toISOString(), model, set, cropSize, fullEvery, families, fills, cmArgs, threads, machine: machine(), code: codeVersion(), seconds: round((performance.now() - started) / 1000, 0) };
  const ok = (m, h) => m.textureMedian >= 0.5 && m.textureMedian <= 1.5 && m.psnr >= h.psnr - 1.5;
  let md = `## Inpainting with texture (bench:inpaint)\n\n${meta.date}, model ${model}, ${set === 'train' ? 'TRAINING photos' : 'Kodak24 and Set5'}; ` +
    `${meta.machine.cpu}, ${meta.machine.cores} cores (load ${meta.machine.loadavg.join(' ')}), code ${meta.code.commit}` +
    `${meta.code.srcChanged.length ? ` + changes in ${meta.code.srcChanged.join(', ')}` : ''}${cmArgs.length ? `, cm ${cmArgs.join(' ')}` : ''}.\n\n` +
    `Crops ${cropSize}x${cropSize} (one per photo)${fullEvery ? `; whole photos: every ${fullEvery}th Kodak24 photo and all of Set5` : ''}. ` +
    `Holes: box (the centred half-width, half-height box), strokes (5 brush polylines), object64 / object100 (a blob of about 64x64 / 100x100). ` +
    `Each cell: PSNR inside the hole (dB, mean) / texture inside the hole relative to the photo's (median over holes; mean in the JSON). ` +
    `Targets: texture 0.5 to 1.5, PSNR at most 1.5 dB under the harmonic fill (met: yes/no after cm's cells).\n\n`;
  const base = set === 'train' ? 'inpaint-train' : 'inpaint';
  const all = merge ? mergedRows(join(outDir, `${base}.json`), rows) : rows;
  const methodNames = [...new Set(all.flatMap((r) => Object.keys(r.methods)))];
  md += `| holes | ${methodNames.join(' | ')} |\n|${'---|'.repeat(methodNames.length + 1)}\n`;
  for (const r of all) {
    const h = r.methods['harmonic fill'];
    const cells = methodNames.map((m) => {
      const v = r.methods[m];
      if (!v) return '';
      const mark = m.startsWith('cm') && m !== 'cm --fill smooth' ? (ok(v, h) ? ' yes' : ' no') : '';
      return `${v.psnr} / ${v.textureMedian}${mark}`;
    });
    md += `| ${r.group}, ${r.family} (${r.holes}) | ${cells.join(' | ')} |\n`;
  }
  md += `\nSeconds per image (the CLI's wall time over the group, model load included): ` +
    all.map((r) => `${r.group} ${r.family}: ${Object.entries(r.secondsPerImage).map(([k, v]) => `${k.replace('cm --fill ', '')} ${v}`).join(', ')}`).join('; ') + '.\n';
  md += `\nContact sheets (100%; columns: input | ${methodNames.join(' | ')} | truth): ${sheetPaths.map((p) => p.replace(ROOT, '')).join(', ')} (git-ignored).\n`;
  if (merge) md += `\nRows measured at different times (--merge): each row's date and code are in ${base}.json.\n`;
  writeFileSync(join(outDir, `${base}.md`), md);
  writeFileSync(join(outDir, `${base}.json`), JSON.stringify({ meta, rows: all }, null, 1));
  if (final) process.stdout.write(md);
}
/**
 * The rows of the results file at `path` (read again at every write, so two runs at once, on other groups, add up)
 * with this run's rows put in: a row of the same group and family keeps the methods this run did not measure, and
 * their times. Sorted in the benchmark's order of groups and families.
 */
function mergedRows(path, fresh) {
  const out = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')).rows : [];
  for (const r of fresh) {
    const i = out.findIndex((o) => o.group === r.group && o.family === r.family);
    if (i < 0) out.push(r);
    else {
      out[i] = { ...r, methods: { ...out[i].methods, ...r.methods }, secondsPerImage: { ...out[i].secondsPerImage, ...r.secondsPerImage } };
    }
  }
  const order = Object.values(GROUP_KEYS);
  const fams = HOLE_FAMILIES;
  return out.sort((a, b) => order.indexOf(a.group) - order.indexOf(b.group) || fams.indexOf(a.family) - fams.indexOf(b.family));
}
