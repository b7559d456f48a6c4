#!/usr/bin/env node
// Colorize at 100%: windows of gray stone, sky, skin and foliage cut from whole Kodak24 photos coloured through the
// CLI (its defaults: coarse to fine, the luminance kept), to look at casts on neutral surfaces. Not part of CI.
//
//   node bench/colorize-sheet.mjs [--model PATH] [--out DIR] [--compare OTHER/bin/cm.js [--compare-label NAME]]
//
// Rows: the surfaces below; columns: the gray input | the compared build's cm (with --compare) | cm | the photo.
// Writes sheet-colorize-surfaces.png (git-ignored: crops of the evaluation photos are never committed) and prints,
// per window, the mean chroma magnitude (RGB distance to the gray of the same luminance, 0-255) of each column.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chooseModel, parseFlags, records, RESULTS, runCli } from './lib/common.mjs';
import { loadPhoto, photoPaths } from './lib/data.mjs';
import { contactSheet, crop, grayOf, load, quantize, saveGrayPng } from './lib/images.mjs';

const flags = parseFlags(process.argv.slice(2));
const outDir = typeof flags.out === 'string' ? flags.out : RESULTS;
const model = await chooseModel(flags.model);
const SIDE = 160;
// Windows (top-left corner, 100%) on surfaces a user knows the colour of.
const WINDOWS = [
  { surface: 'gray stone (wall)', photo: 'kodim01', x: 300, y: 180 },
  { surface: 'gray stone (statue)', photo: 'kodim17', x: 120, y: 460 },
  { surface: 'sky', photo: 'kodim16', x: 80, y: 20 },
  { surface: 'sky', photo: 'kodim21', x: 60, y: 10 },
  { surface: 'skin', photo: 'kodim04', x: 190, y: 270 },
  { surface: 'skin', photo: 'kodim15', x: 400, y: 200 },
  { surface: 'foliage', photo: 'kodim13', x: 30, y: 130 },
  { surface: 'foliage', photo: 'kodim07', x: 600, y: 280 },
];
const builds = [
  ...(typeof flags.compare === 'string' ? [{ name: flags['compare-label'] ?? 'compared build', cli: flags.compare }] : []),
  { name: 'cm', cli: undefined },
];

const work = mkdtempSync(join(tmpdir(), 'cm-colorize-sheet-'));
const inDir = join(work, 'in');
mkdirSync(inDir);
const photos = new Map();
for (const path of photoPaths('kodak24')) {
  const stem = path.split('/').pop().replace(/\.png$/, '');
  if (!WINDOWS.some((w) => w.photo === stem)) continue;
  const img = await loadPhoto(path);
  const gray = quantize(grayOf(img));
  photos.set(stem, { img, gray });
  await saveGrayPng(Float32Array.from({ length: img.w * img.h }, (_, p) => gray.data[p * 3]), img.w, img.h, join(inDir, `${stem}.png`));
}
const outputs = [];
for (const b of builds) {
  const dir = join(work, `out-${outputs.length}`);
  const r = await runCli(['colorize', inDir, '--out-dir', dir, '--name', '{stem}.{ext}', '--model', model, '--device', 'cpu', '--seed', '0', '-q', '--json'], { cli: b.cli });
  records(r, `colorize (${b.name})`);
  const imgs = new Map();
  for (const stem of photos.keys()) imgs.set(stem, await load(join(dir, `${stem}.png`)));
  outputs.push(imgs);
  process.stderr.write(`${b.name}: ${r.seconds.toFixed(0)} s\n`);
}
// Mean distance (0-255) of each pixel to the gray of its own luminance.
const chroma = (img) => {
  let s = 0;
  for (let p = 0; p < img.w * img.h; p++) {
    const [r, g, b] = [img.data[p * 3], img.data[p * 3 + 1], img.data[p * 3 + 2]];
    const l = (0.2989 * r + 0.587 * g + 0.114 * b) / 0.9999;
    s += Math.hypot(r - l, g - l, b - l);
  }
  return s / (img.w * img.h);
};
const rows = [];
const header = ['surface', 'photo', 'gray input', ...builds.map((b) => b.name), 'photo (truth)'];
const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---|').join('')}`];
for (const w of WINDOWS) {
  const { img, gray } = photos.get(w.photo);
  const cut = (im) => crop(im, w.x, w.y, SIDE, SIDE);
  const row = [cut(gray), ...outputs.map((o) => cut(o.get(w.photo))), cut(img)];
  rows.push(row);
  lines.push(`| ${w.surface} | ${w.photo} (${w.x}, ${w.y}) | ${row.map((im) => chroma(im).toFixed(1)).join(' | ')} |`);
}
mkdirSync(outDir, { recursive: true });
const file = join(outDir, 'sheet-colorize-surfaces.png');
await contactSheet(rows, SIDE, file);
rmSync(work, { recursive: true, force: true });
process.stdout.write(`${file}\nMean chroma (distance to the gray of the same luminance, 0-255) per ${SIDE}x${SIDE} window:\n\n${lines.join('\n')}\n`);
