#!/usr/bin/env node
// A contact sheet of superres on one whole photo, as a user would try it: the photo box-averaged by p (rounded to 8
// bits), then enlarged back by the CLI (`cm superres -x p`, the model's defaults), next to Lanczos-3 and, with
// --compare, another build's CLI (e.g. main's). Two sheets: 256 x 256 around each region at 100%, and each region's
// 128 x 128 at 3x (nearest neighbour, so the patch grid shows if it is there). Columns: the photo, Lanczos-3, the
// compared build, this build.
// Prints each output's PSNR and blockiness (whole photo, relative to the photo's). The sheet shows an evaluation
// photo: it is written under bench/results/ (git-ignored), never committed.
//
//   node bench/superres-sheet.mjs [--photo PATH] [--scale 4] [--regions x,y;x,y] [--compare OTHER/bin/cm.js]
//                                 [--model PATH] [--threads 1] [--out bench/results/superres-sheet-x4.png]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseFlags, ROOT } from './lib/common.mjs';
import { EVAL_DIR } from './lib/data.mjs';
import { boxDown, contactSheet, crop, load, quantize, savePng } from './lib/images.mjs';
import { blockinessRatio, psnr } from './lib/metrics.mjs';
import { toImg, toTensor } from './lib/estimates.mjs';

const flags = parseFlags(process.argv.slice(2));
const photoPath = flags.photo ?? join(EVAL_DIR, 'kodak24', 'kodim23.png');
const p = Number(flags.scale ?? 4);
// kodim23: the red parrot's eye and beak, the blue-and-yellow one's eye and beak (128 x 128 each, top left corners).
const regions = String(flags.regions ?? '440,110;100,170').split(';').map((s) => s.split(',').map(Number));
const out = flags.out ?? join(ROOT, 'bench', 'results', `superres-sheet-x${p}.png`);
const threads = String(flags.threads ?? 1);
const { Tensor } = await import(join(ROOT, 'dist', 'tensor.js'));
const { resample } = await import(join(ROOT, 'dist', 'editing', 'resample.js'));

const photo = await load(photoPath);
const gt = crop(photo, 0, 0, photo.w - (photo.w % p), photo.h - (photo.h % p));
const low = quantize(boxDown(gt, p));
const dir = mkdtempSync(join(tmpdir(), 'cm-sheet-'));
await savePng(low, join(dir, 'low.png'));
const run = async (cli, name) => {
  const args = [cli, 'superres', join(dir, 'low.png'), '-x', String(p), '-o', join(dir, `${name}.png`), '--threads', threads, '-q'];
  if (flags.model) args.push('--model', flags.model);
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cli}: ${r.stderr}`);
  return load(join(dir, `${name}.png`));
};
const columns = [
  ['photo', gt],
  ['Lanczos-3', toImg(resample(toTensor(Tensor, low), gt.w, gt.h, 'lanczos3'))],
  ...(typeof flags.compare === 'string' ? [[String(flags['compare-label'] ?? 'compared'), await run(flags.compare, 'other')]] : []),
  ['this build', await run(join(ROOT, 'bin', 'cm.js'), 'this')],
];
rmSync(dir, { recursive: true, force: true });
const clip = (im) => ({ ...im, data: im.data.map((v) => Math.min(255, Math.max(0, v))) });
for (const [name, img] of columns) {
  console.log(`${name.padEnd(12)} PSNR ${psnr(clip(img), gt).toFixed(2)} dB, blockiness ${blockinessRatio(clip(img), gt, p).toFixed(2)}`);
}
// 100%: 256 x 256 around each region; 3x: the region's 128 x 128 (nearest neighbour, so a patch grid would show).
const at100 = regions.map(([x, y]) => columns.map(([, img]) => crop(clip(img), Math.max(0, x - 64), Math.max(0, y - 64), 256, 256)));
const at3 = regions.map(([x, y]) => columns.map(([, img]) => crop(clip(img), x, y, 128, 128)));
await contactSheet(at100, 256, out.replace(/\.png$/, '-100.png'));
await contactSheet(at3, 384, out.replace(/\.png$/, '-3x.png'));
console.log(`wrote ${out.replace(/\.png$/, '-{100,3x}.png')}: columns ${columns.map(([n]) => n).join(', ')}; a row per region`);
