#!/usr/bin/env node
// bench:overlap (issue 19, item 4): how much tile overlap x4 super-resolution needs. On TRAINING photos (a choice of
// default is tuned here, so never on the evaluation photos): the 4x box-down of each photo, cm superres -x 4 at
// --overlap 0/2/4/8/16, PSNR against the photo, and against the --overlap 16 output (the largest difference, and how
// much larger the differences are on the columns and rows a tile edge can touch than elsewhere: a seam shows as a
// ratio above 1). Also the model pixels each overlap's tile grid takes (planTiles) for a few image sizes.
//
//   node bench/overlap.mjs [--photos 6] [--model PATH] [--out DIR] [--smoke]
//
// Writes overlap.json and overlap.md into --out (default bench/results).
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chooseModel, machine, parseFlags, records, RESULTS, ROOT, round, runCli } from './lib/common.mjs';
import { cropToMultiple } from './lib/data.mjs';
import { boxDown, load, savePng } from './lib/images.mjs';
import { mean, psnr } from './lib/metrics.mjs';

const flags = parseFlags(process.argv.slice(2));
const smoke = flags.smoke === true;
const outDir = typeof flags.out === 'string' ? flags.out : smoke ? join(tmpdir(), 'cm-bench-smoke') : RESULTS;
const count = Number(flags.photos ?? (smoke ? 1 : 6));
const overlaps = smoke ? [4, 16] : [0, 2, 4, 8, 16];
const model = await chooseModel(flags.model);
const work = mkdtempSync(join(tmpdir(), 'cm-bench-overlap-'));
mkdirSync(outDir, { recursive: true });
const log = (m) => process.stderr.write(`${m}\n`);
const TRAIN = '/work/shared/data/train/coco';
// Every 50th training photo, from the sorted list: the same ones every run.
const photos = readdirSync(TRAIN).filter((f) => f.endsWith('.jpg')).sort().filter((_, i) => i % 50 === 7).slice(0, count);

const { planTiles } = await import(join(ROOT, 'dist', 'sampler', 'tiles.js'));
const grids = {};
for (const [w, h] of [[512, 512], [768, 512], [1024, 1024], [2048, 2048], [4000, 3000]]) {
  grids[`${w}x${h}`] = Object.fromEntries(overlaps.map((o) => {
    const g = planTiles(w, h, 128, o, 192);
    return [o, { tiles: `${g.x.count}x${g.y.count} of ${g.tile}`, modelPixels: round((g.x.count * g.y.count * g.tile * g.tile) / (w * h), 3) }];
  }));
}

/** The largest ratio of a column (or row) of the differences to the mean of the columns two either side. */
function edgeRatio(a, b) {
  // The differences' energy per column and per row; a seam is a column or row much above its neighbours.
  const col = new Float64Array(a.w);
  const row = new Float64Array(a.h);
  for (let y = 0; y < a.h; y++) {
    for (let x = 0; x < a.w; x++) {
      let d = 0;
      for (let c = 0; c < 3; c++) d += Math.abs(a.data[(y * a.w + x) * 3 + c] - b.data[(y * a.w + x) * 3 + c]);
      col[x] += d;
      row[y] += d;
    }
  }
  const peak = (p) => {
    let worst = 0;
    for (let i = 2; i < p.length - 2; i++) {
      const around = (p[i - 2] + p[i + 2]) / 2;
      if (around > 0) worst = Math.max(worst, p[i] / around);
    }
    return worst;
  };
  return Math.max(peak(col), peak(row));
}

const per = Object.fromEntries(overlaps.map((o) => [o, { psnr: [], vs16: [], maxDiff: [], seam: [] }]));
for (const f of photos) {
  const gt = cropToMultiple(await load(join(TRAIN, f)), 4);
  const input = join(work, 'in.png');
  await savePng(boxDown(gt, 4), input);
  const outs = {};
  for (const o of overlaps) {
    const out = join(work, `out-${o}.png`);
    records(await runCli(['superres', '-x', '4', input, '-o', out, '--model', model, '--seed', '0', '--device', 'cpu', '-q', '--json', '--force', '--overlap', String(o)]), `${f} --overlap ${o}`);
    outs[o] = await load(out);
  }
  const ref = outs[overlaps[overlaps.length - 1]];
  for (const o of overlaps) {
    per[o].psnr.push(psnr(outs[o], gt));
    if (outs[o] === ref) continue;
    per[o].vs16.push(psnr(outs[o], ref));
    let m = 0;
    for (let i = 0; i < ref.data.length; i++) m = Math.max(m, Math.abs(outs[o].data[i] - ref.data[i]));
    per[o].maxDiff.push(m);
    per[o].seam.push(edgeRatio(outs[o], ref));
  }
  log(`${f} (${gt.w}x${gt.h}): ${overlaps.map((o) => `${o}: ${psnr(outs[o], gt).toFixed(3)}`).join(', ')}`);
}
const rows = Object.fromEntries(overlaps.map((o) => [o, {
  psnr: round(mean(per[o].psnr), 3),
  psnrVs16: per[o].vs16.length ? round(mean(per[o].vs16), 2) : null,
  maxDiff: per[o].maxDiff.length ? Math.max(...per[o].maxDiff) : null,
  worstRowOrColumn: per[o].seam.length ? round(Math.max(...per[o].seam), 2) : null,
}]));
const result = { measuredAt: new Date().toISOString(), machine: machine(), model, photos, rows, grids };
writeFileSync(join(outDir, 'overlap.json'), JSON.stringify(result, null, 1) + '\n');
let md = `## Tile overlap for x4 superres (issue 19)\n\nMeasured ${result.measuredAt}; model \`${model}\`; ${photos.length} training photos (${photos.join(', ')}), the 4x box-down of each, default plan, \`--seed 0\`.\n\n`;
md += `| --overlap | PSNR dB (mean) | PSNR vs the --overlap ${overlaps[overlaps.length - 1]} output | largest difference (grey levels) | worst row or column of the differences / its neighbours' |\n|---|---|---|---|---|\n`;
for (const [o, r] of Object.entries(rows)) md += `| ${o} | ${r.psnr} | ${r.psnrVs16 ?? '-'} | ${r.maxDiff ?? '-'} | ${r.worstRowOrColumn ?? '-'} |\n`;
md += `\nModel pixels per image pixel of each overlap's tile grid (tiles of 128 fitted up to 192, planTiles):\n\n| image | ${overlaps.map((o) => `overlap ${o}`).join(' | ')} |\n|---|${overlaps.map(() => '---|').join('')}\n`;
for (const [size, g] of Object.entries(grids)) md += `| ${size} | ${overlaps.map((o) => `${g[o].tiles}: ${g[o].modelPixels}x`).join(' | ')} |\n`;
writeFileSync(join(outDir, 'overlap.md'), md);
log(`wrote ${join(outDir, 'overlap.md')}`);
