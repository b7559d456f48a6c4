#!/usr/bin/env node
// Whether a patch fill shrunk toward the harmonic fill pays (issue 17's inpainting targets: texture in the hole 0.5 to
// 1.5 of the photo's, PSNR at most 1.5 dB under the harmonic fill), measured on TRAINING photos only (never Kodak24 or
// Set5), the estimates alone (no model): per hole, alpha * patch + (1 - alpha) * harmonic for a few alphas, PSNR
// inside the hole against the harmonic fill's and texture (high-frequency energy relative to the photo's, as
// bench:quality measures sharpness). A measurement for a design choice, not a default of the CLI.
// --shading: the patch fill's shading Gaussian (pixels; patchmatch.ts SHADING by default), a row per value
// (bench/results/fill-shading.md: --shading 2,3,4,6 --alphas 1,0.9).
//
//   node bench/fill-blend.mjs [--photos 40] [--size 192] [--families object64,strokes,box] [--shading 4]
//                             [--alphas 1,0.9,0.8,0.7,0.6,0.5,0] [--out bench/results/fill-blend.md]
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
const { patchFill, SHADING } = await dist('editing/patchmatch.js');

const flags = parseFlags(process.argv.slice(2));
const nPhotos = Number(flags.photos ?? 40);
const size = Number(flags.size ?? 192);
const families = String(flags.families ?? 'object64,strokes,box').split(',');
const outPath = flags.out ?? join(ROOT, 'bench', 'results', 'fill-blend.md');
const ALPHAS = String(flags.alphas ?? '1,0.9,0.8,0.7,0.6,0.5,0').split(',').map(Number);
const SHADINGS = String(flags.shading ?? SHADING).split(',').map(Number);
const rowsOf = (fam) => SHADINGS.map((s) => ({ label: SHADINGS.length > 1 ? `${fam}, shading ${s}` : fam, s }));

const byRow = new Map(families.flatMap((f) => rowsOf(f).map((r) => [r.label, []])));
let photos = 0;
for await (const { i, gt } of trainingCrops(nPhotos, size)) {
  photos++;
  for (const fam of families) {
    const mask = makeHole(fam, size, size, 200 + i);
    const y = toTensor(Tensor, gt);
    const fill = new Tensor(1, 1, size, size, Float32Array.from(mask));
    const harmonic = classicalFill(y, fill);
    const h = toImg(harmonic);
    const g = Math.max(1e-9, hfEnergyIn(gt, mask));
    const hP = psnr(h, gt, mask);
    for (const { label, s } of rowsOf(fam)) {
      // what classicalFill(y, fill, { fill: 'patch', seed: 1 }) makes, with this shading
      const p = toImg(patchFill(y, fill, 1, { base: harmonic, shading: s }));
      byRow.get(label).push(ALPHAS.map((a) => {
        const b = { w: h.w, h: h.h, data: h.data.map((v, k) => Math.round(a * p.data[k] + (1 - a) * v)) };
        return { dP: psnr(b, gt, mask) - hP, t: hfEnergyIn(b, mask) / g };
      }));
    }
  }
  process.stderr.write('.');
}
process.stderr.write('\n');
const meanOf = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
let md = `# A patch fill shrunk toward the harmonic fill (training photos, estimates only)\n\n${photos} training photos, a ` +
  `${size}x${size} crop each, holes ${families.join(', ')} (bench/lib/holes.mjs). alpha * patch + (1 - alpha) * harmonic; ` +
  `PSNR inside the hole minus the harmonic fill's (mean over holes, dB) / texture in the hole relative to the photo's ` +
  `(median). alpha 1 is \`--fill patch\`, 0 the harmonic fill. Issue 17's targets: PSNR at most 1.5 dB under, texture 0.5 to 1.5.\n\n`;
md += `| holes | ${ALPHAS.map((a) => `alpha ${a}`).join(' | ')} |\n|---|${ALPHAS.map(() => '---|').join('')}\n`;
for (const [label, rows] of byRow) {
  md += `| ${label} (${rows.length}) | ${ALPHAS.map((_, k) => `${round(meanOf(rows.map((r) => r[k].dP)))} / ${round(median(rows.map((r) => r[k].t)), 3)}`).join(' | ')} |\n`;
}
mkdirSync(dirname(outPath), { recursive: true });
writeFileSync(outPath, md);
process.stdout.write(md);
