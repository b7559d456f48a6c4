#!/usr/bin/env node
// A contact sheet at 100% of the patch fill before and after a change (issue 17): TRAINING photos with grass,
// water, wall-like textures, each enlarged or shrunk to cover 768x512, with the quarter box (a 384x256 hole) and an
// object100 hole. Rows: photo x hole; columns: the input with the hole in gray | the harmonic fill | the patch fill of
// the code in --before (another checkout's built dist/) | the patch fill of this tree's dist/ | the photo. The
// estimates alone (the default plan refines them at sigma 0.004; it changes little). The cell is the hole's box and
// 8 pixels around it, at most 400x272. Writes a PNG (git-ignored under bench/results/) and prints each cell's
// PSNR in the hole / texture relative to the photo's there.
//
//   node bench/inpaint-sheet.mjs --before /path/to/other/checkout [--photos a.jpg,b.jpg] [--seed 0] [--out bench/results/inpaint-sheet.png]
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { parseFlags, RESULTS, ROOT } from './lib/common.mjs';
import { maskPlane, withHole } from './lib/data.mjs';
import { toImg, toTensor } from './lib/estimates.mjs';
import { makeHole } from './lib/holes.mjs';
import { savePng } from './lib/images.mjs';
import { hfEnergyIn, psnr } from './lib/metrics.mjs';

const flags = parseFlags(process.argv.slice(2));
if (typeof flags.before !== 'string') throw new Error('--before: a checkout whose dist/ holds the code to compare with');
const TRAIN_DIR = process.env.CM_TRAIN_DIR ?? join(ROOT, '..', 'shared', 'data', 'train');
const photos = typeof flags.photos === 'string'
  ? flags.photos.split(',')
  : ['wallpapers/elementary_mountains_and_forest.jpg', 'wallpapers/elementary_edoardo_brogiolo_vieste_coast.jpg', 'wallpapers/elementary_brown_architecture.jpg', 'wallpapers/elementary_living_stones.jpg'];
const seed = Number(flags.seed ?? 0);
const out = flags.out ?? join(RESULTS, 'inpaint-sheet.png');
const [W, H] = [768, 512];

const codeOf = async (root) => ({
  Tensor: (await import(pathToFileURL(join(root, 'dist', 'tensor.js')).href)).Tensor,
  classicalFill: (await import(pathToFileURL(join(root, 'dist', 'editing', 'inpaint.js')).href)).classicalFill,
});
const before = await codeOf(flags.before);
const after = await codeOf(ROOT);
const fillWith = (code, img, mask, fill) =>
  toImg(code.classicalFill(toTensor(code.Tensor, img), new code.Tensor(1, 1, img.h, img.w, Float32Array.from(mask)), fill ? { fill, seed } : undefined));

const rows = [];
for (const p of photos) {
  const { data } = await sharp(join(TRAIN_DIR, p)).removeAlpha().resize(W, H, { fit: 'cover' }).raw().toBuffer({ resolveWithObject: true });
  const gt = { w: W, h: H, data: Float32Array.from(data) };
  for (const fam of ['box', 'object100']) {
    const mask = makeHole(fam, W, H, 7000);
    const cells = [withHole(gt, mask), fillWith(after, gt, mask, undefined), fillWith(before, gt, mask, 'patch'), fillWith(after, gt, mask, 'patch'), gt];
    const g = hfEnergyIn(gt, mask);
    const figures = cells.slice(1, 4).map((c) => `${psnr(c, gt, mask).toFixed(2)} dB / ${(hfEnergyIn(c, mask) / g).toFixed(2)}`);
    process.stdout.write(`${p} ${fam}: harmonic ${figures[0]}; before ${figures[1]}; after ${figures[2]}\n`);
    rows.push({ cells, mask });
  }
}

// The sheet: each row the hole's box and 8 pixels around it, at most 400x272, at 100%.
const [CW, CH, GAP] = [400, 272, 4];
const sheet = { w: 5 * (CW + GAP) + GAP, h: rows.length * (CH + GAP) + GAP, data: new Float32Array((5 * (CW + GAP) + GAP) * (rows.length * (CH + GAP) + GAP) * 3).fill(255) };
rows.forEach(({ cells, mask }, r) => {
  let [x0, y0, x1, y1] = [W, H, 0, 0];
  maskPlane(mask).forEach((v, i) => {
    if (!v) return;
    const x = i % W;
    const y = (i - x) / W;
    [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
  });
  const cx = Math.max(0, Math.min(W - CW, Math.round((x0 + x1) / 2 - CW / 2)));
  const cy = Math.max(0, Math.min(H - CH, Math.round((y0 + y1) / 2 - CH / 2)));
  cells.forEach((img, c) => {
    for (let y = 0; y < CH; y++) {
      for (let x = 0; x < CW; x++) {
        const s = ((cy + y) * W + cx + x) * 3;
        const d = ((GAP + r * (CH + GAP) + y) * sheet.w + GAP + c * (CW + GAP) + x) * 3;
        sheet.data.set(img.data.subarray(s, s + 3), d);
      }
    }
  });
});
await savePng(sheet, out);
process.stdout.write(`${out}\n`);
