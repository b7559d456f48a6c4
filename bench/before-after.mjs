#!/usr/bin/env node
// Seconds per output megapixel of every task, another build's CLI ("before") against this one's ("after"), defaults,
// same inputs, alternating, whole process under /usr/bin/time (wall, CPU, peak RSS). Issue 19's README table.
//
//   node bench/before-after.mjs OTHER/bin/cm.js [--rounds N] [--before-env NAME=VALUE] [--crop-only]
//
// --before-env sets a variable for the "before" runs only: `node bench/before-after.mjs bin/cm.js --before-env
// CM_INFERENCE_PROCESSES=1` measures this build in one inference process against its default. The last outputs of
// the two are compared byte for byte (column "same output").
//
// UpscalerJS's esrgan-slim and -medium (bench/upscalerjs.mjs) run on the crop too, alternating with the two builds.
// --crop-only: that case alone (x4 of the 256x256 crop, the two builds and the peer).
//
// Inputs: Kodak24 image 1 (768x512), its 4x box-down (superres), its gray version (colorize), a centred quarter box
// (inpaint), and its 256x256 centre crop (superres x4 to 1024x1024, the peer's input). Prints JSON and a Markdown table.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseFlags, ROOT } from './lib/common.mjs';
import { photoPaths } from './lib/data.mjs';

const flags = parseFlags(process.argv.slice(2));
const other = flags._?.[0] ?? process.argv[2];
if (!other || other.startsWith('--')) {
  process.stderr.write('usage: node bench/before-after.mjs OTHER/bin/cm.js [--rounds N]\n');
  process.exit(2);
}
const rounds = Number(flags.rounds ?? 1);
const beforeEnv = {};
if (typeof flags['before-env'] === 'string') {
  const [k, ...v] = flags['before-env'].split('=');
  beforeEnv[k] = v.join('=');
}
const sharp = (await import('sharp')).default;
const W = mkdtempSync(join(tmpdir(), 'cm-before-after-'));
const src = photoPaths('kodak24')[0];
const { width: w, height: h } = await sharp(src).metadata();
await sharp(src).png().toFile(join(W, 'kodak.png'));
await sharp(src).greyscale().png().toFile(join(W, 'gray.png'));
await sharp(src).resize(w / 4, h / 4).png().toFile(join(W, 'low.png'));
await sharp(src).extract({ left: Math.floor((w - 256) / 2), top: Math.floor((h - 256) / 2), width: 256, height: 256 }).png().toFile(join(W, 'in256.png'));
const mask = Buffer.alloc(w * h);
for (let y = h / 4; y < (3 * h) / 4; y++) for (let x = w / 4; x < (3 * w) / 4; x++) mask[y * w + x] = 255;
await sharp(mask, { raw: { width: w, height: h, channels: 1 } }).png().toFile(join(W, 'mask.png'));

const run = (args, env = {}) =>
  new Promise((resolve) => {
    const t0 = performance.now();
    const c = spawn('/usr/bin/time', ['-f', 'cm-time %M %U %S', process.execPath, ...args], { env: { ...process.env, ORT_DISABLE_TELEMETRY: '1', ...env } });
    let e = '';
    c.stderr.on('data', (d) => (e += d));
    c.on('close', (code) => {
      const m = /cm-time (\d+) ([\d.]+) ([\d.]+)/.exec(e);
      resolve({ code, wall: (performance.now() - t0) / 1000, cpu: m ? Number(m[2]) + Number(m[3]) : null, rssMB: m ? Number(m[1]) / 1024 : null, error: code ? e.trim().split('\n').pop() : undefined });
    });
  });
const tasks = [
  ['superres x4, 256x256 crop to 1024x1024', ['superres', '-x', '4', join(W, 'in256.png')], 1024 * 1024],
  ['superres x4', ['superres', '-x', '4', join(W, 'low.png')], w * h],
  ['superres x2', ['superres', '-x', '2', join(W, 'low.png')], (w / 2) * (h / 2)],
  ['inpaint (box, a quarter)', ['inpaint', join(W, 'kodak.png'), '--mask', join(W, 'mask.png')], w * h],
  ['colorize', ['colorize', join(W, 'gray.png')], w * h],
  ['denoise 25', ['denoise', join(W, 'kodak.png'), '--noise', '25'], w * h],
  ['stroke', ['stroke', join(W, 'kodak.png')], w * h],
];
if (flags['crop-only']) tasks.splice(1);
const builds = [['before', other], ['after', join(ROOT, 'bin', 'cm.js')]];
const out = {};
// The peer (bench/upscalerjs.mjs) on the crop, alternating with the two builds: the ratios of one run.
const peer = {};
for (const [name, args, pixels] of tasks) {
  for (let r = 0; r < rounds; r++) {
    for (const [who, cli] of builds) {
      const x = await run([cli, ...args, '-o', join(W, `out-${who}.png`), '--force', '-q', '--seed', '0', '--device', 'cpu'], who === 'before' ? beforeEnv : {});
      ((out[name] ??= {})[who] ??= []).push({ ...x, secondsPerMP: x.wall / (pixels / 1e6) });
    }
    const [b, a] = ['before', 'after'].map((who) => (existsSync(join(W, `out-${who}.png`)) ? readFileSync(join(W, `out-${who}.png`)) : null));
    out[name].same = b !== null && a !== null && b.equals(a);
    if (name === tasks[0][0]) {
      for (const which of ['slim', 'medium']) {
        const x = await run([join(ROOT, 'bench', 'upscalerjs.mjs'), which, join(W, 'in256.png'), join(W, 'peer.png')]);
        (peer[`UpscalerJS esrgan-${which}`] ??= []).push({ ...x, secondsPerMP: x.wall / (pixels / 1e6) });
      }
    }
  }
}
rmSync(W, { recursive: true, force: true });
const med = (a) => [...a].sort((p, q) => p - q)[Math.floor((a.length - 1) / 2)];
process.stdout.write(`${JSON.stringify({ ...out, peer })}\n\n| task | before s / MP | after s / MP | before CPU s | after CPU s | after / before (wall) | same output |\n|---|---|---|---|---|---|---|\n`);
for (const [n, v] of Object.entries(out)) {
  const [b, a] = [v.before, v.after];
  if (b.some((x) => x.code) || a.some((x) => x.code)) {
    process.stdout.write(`| ${n} | failed: ${[...b, ...a].find((x) => x.code).error} | | | | | |\n`);
    continue;
  }
  const [bs, as] = [med(b.map((x) => x.secondsPerMP)), med(a.map((x) => x.secondsPerMP))];
  process.stdout.write(`| ${n} | ${bs.toFixed(1)} | ${as.toFixed(1)} | ${med(b.map((x) => x.cpu)).toFixed(1)} | ${med(a.map((x) => x.cpu)).toFixed(1)} | ${(as / bs).toFixed(2)} | ${v.same ? 'yes' : 'no'} |\n`);
}
const crop = out[tasks[0][0]];
const wallOf = (xs) => med(xs.map((x) => x.wall));
process.stdout.write(`\n| x4 of the 256x256 crop to 1024x1024 | wall s | s / MP | CPU s | before / peer | after / peer |\n|---|---|---|---|---|---|\n`);
for (const [n, xs] of Object.entries(peer)) {
  if (xs.some((x) => x.code)) {
    process.stdout.write(`| ${n} | failed: ${xs.find((x) => x.code).error} | | | | |\n`);
    continue;
  }
  const w = wallOf(xs);
  process.stdout.write(`| ${n} | ${w.toFixed(2)} | ${(w / 1.048576).toFixed(2)} | ${med(xs.map((x) => x.cpu)).toFixed(1)} | ${(wallOf(crop.before) / w).toFixed(2)}x | ${(wallOf(crop.after) / w).toFixed(2)}x |\n`);
}
