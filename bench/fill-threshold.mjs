#!/usr/bin/env node
// How `cm inpaint --fill auto` decides (src/editing/inpaint.ts TEXTURED), measured on TRAINING photos only (never
// Kodak24 or Set5): per crop and hole, the texture of the hole's known surroundings (surroundTexture) and the two
// classical fills' PSNR and texture inside the hole (high-frequency energy relative to the photo's, as bench:quality
// measures sharpness). For each threshold: auto's mean PSNR against the harmonic fill's and its texture (median over
// holes), and the share of holes given patches. The estimates alone, without the model (which, with
// cm-patch64-small-6's plan, keeps about half of the patch fill's texture in small holes: bench/results/inpaint.md).
//
//   node bench/fill-threshold.mjs [--photos 48] [--size 192] [--families object64,strokes] [--out bench/results/fill-threshold.md]
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseFlags, ROOT, round } from './lib/common.mjs';
import { trainingCrops } from './lib/data.mjs';
import { toImg, toTensor } from './lib/estimates.mjs';
import { makeHole } from './lib/holes.mjs';
import { hfEnergyIn, median, psnr } from './lib/metrics.mjs';

const dist = (p) => import(join(ROOT, 'dist', p));
const { Tensor } = await dist('tensor.js');
const { classicalFill } = await dist('editing/inpaint.js');
const { surroundTexture, fillWindows } = await dist('editing/patchmatch.js');

const flags = parseFlags(process.argv.slice(2));
const nPhotos = Number(flags.photos ?? 48);
const size = Number(flags.size ?? 192);
const families = String(flags.families ?? 'object64,strokes').split(',');
const outPath = flags.out ?? join(ROOT, 'bench', 'results', 'fill-threshold.md');

const toT = (img) => toTensor(Tensor, img);
const toI = toImg;

const rows = [];
for await (const { i, gt } of trainingCrops(nPhotos, size)) {
  for (const fam of families) {
    const mask = makeHole(fam, size, size, 200 + i);
    const y = toT(gt);
    const fill = new Tensor(1, 1, size, size, Float32Array.from(mask));
    const windows = fillWindows(fill);
    // one texture figure per hole: the windows' mean (weighted by nothing: most crops have one window)
    const s = windows.reduce((a, r) => a + surroundTexture(y, fill, 0, r), 0) / windows.length;
    const g = Math.max(1e-9, hfEnergyIn(gt, mask));
    const h = toI(classicalFill(y, fill));
    const p = toI(classicalFill(y, fill, { fill: 'patch', seed: 1 }));
    rows.push({ fam, s, hP: psnr(h, gt, mask), pP: psnr(p, gt, mask), hT: hfEnergyIn(h, mask) / g, pT: hfEnergyIn(p, mask) / g });
  }
  process.stderr.write('.');
}
process.stderr.write('\n');
const thresholds = [0, 1e-4, 2e-4, 3e-4, 5e-4, 1e-3, 2e-3, 5e-3, Infinity];
let md = `# --fill auto's threshold (training photos)\n\n${rows.length} holes (${families.join(', ')}) in ${size}x${size} crops of ${rows.length / families.length} training photos; ` +
  `estimates only. Texture: high-frequency energy in the hole relative to the photo's there (median over holes).\n\n`;
md += '| threshold | holes with patches | PSNR (dB) | PSNR - harmonic | texture (median) | texture (mean) |\n|---|---|---|---|---|---|\n';
const meanOf = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const hMean = meanOf(rows.map((r) => r.hP));
for (const t of thresholds) {
  const useP = rows.map((r) => r.s >= t);
  const ps = rows.map((r, k) => (useP[k] ? r.pP : r.hP));
  const ts = rows.map((r, k) => (useP[k] ? r.pT : r.hT));
  const share = useP.filter(Boolean).length / rows.length;
  md += `| ${t === Infinity ? 'never (smooth)' : t === 0 ? 'always (patch)' : t} | ${round(100 * share, 0)}% | ${round(meanOf(ps))} | ${round(meanOf(ps) - hMean)} | ${round(median(ts), 3)} | ${round(meanOf(ts), 3)} |\n`;
}
md += '\nBy the surroundings\' texture (quartiles of surroundTexture): PSNR of patch - harmonic, and patch\'s texture (median)\n\n| surroundings | holes | patch - harmonic (dB) | patch texture | harmonic texture |\n|---|---|---|---|---|\n';
const sorted = [...rows].sort((a, b) => a.s - b.s);
for (let q = 0; q < 4; q++) {
  const part = sorted.slice(Math.floor((q * sorted.length) / 4), Math.floor(((q + 1) * sorted.length) / 4));
  md += `| ${part[0].s.toExponential(1)} .. ${part[part.length - 1].s.toExponential(1)} | ${part.length} | ${round(meanOf(part.map((r) => r.pP - r.hP)))} | ${round(median(part.map((r) => r.pT)), 3)} | ${round(median(part.map((r) => r.hT)), 3)} |\n`;
}
mkdirSync(dirname(outPath), { recursive: true });
writeFileSync(outPath, md);
process.stdout.write(md);
