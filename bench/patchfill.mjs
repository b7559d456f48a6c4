#!/usr/bin/env node
// The patch fill's cost (src/editing/patchmatch.ts; `cm inpaint --fill patch`): how its run time grows with the
// hole's area (square holes in a 1024x1024 training photo: it should be linear, the work being a window a few times
// the hole), and a 100x100 hole in a 12 MP photo (a training photo enlarged to 4000x3000): the estimate alone in this
// process, and the CLI's wall time with --fill patch against --fill smooth (the harmonic fill), the same model calls.
// Target (issue 17): at most 2 s for the patch fill on top of the model's calls. Medians of --repeat runs.
//
//   node bench/patchfill.mjs [--repeat 3] [--photo PATH] [--model PATH] [--no-cli] [--out bench/results/patchfill.md] [--smoke]
// --smoke: three small holes, a 400x300 image instead of 12 MP, no CLI, one run each (for a test).
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import { chooseModel, codeVersion, machine, parseFlags, records, RESULTS, ROOT, round, runCli } from './lib/common.mjs';
import { median } from './lib/metrics.mjs';

const flags = parseFlags(process.argv.slice(2));
const smoke = flags.smoke === true;
const repeat = Number(flags.repeat ?? (smoke ? 1 : 3));
const outPath = flags.out ?? join(smoke ? join(tmpdir(), 'cm-bench-smoke') : RESULTS, 'patchfill.md');
const TRAIN_DIR = process.env.CM_TRAIN_DIR ?? join(ROOT, '..', 'shared', 'data', 'train');
const photo = flags.photo ?? join(TRAIN_DIR, 'unsplash', readdirSync(join(TRAIN_DIR, 'unsplash')).filter((f) => /\.jpe?g$/i.test(f)).sort()[0]);
const dist = (p) => import(join(ROOT, 'dist', p));
const { Tensor } = await dist('tensor.js');
const { harmonicFill } = await dist('editing/harmonic.js');
const { patchFill } = await dist('editing/patchmatch.js');
const { classicalFill } = await dist('editing/inpaint.js');
const log = (msg) => process.stderr.write(`${msg}\n`);

async function tensorOf(input, w, h) {
  const { data } = await sharp(input).removeAlpha().resize(w, h, { fit: 'fill', kernel: 'lanczos3' }).raw().toBuffer({ resolveWithObject: true });
  const t = new Tensor(1, 3, h, w);
  const plane = w * h;
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) t.data[c * plane + p] = data[p * 3 + c] / 127.5 - 1;
  return t;
}
const square = (w, h, side, cx = w / 2, cy = h / 2) => {
  const m = new Tensor(1, 1, h, w);
  const x0 = Math.round(cx - side / 2);
  const y0 = Math.round(cy - side / 2);
  for (let y = y0; y < y0 + side; y++) for (let x = x0; x < x0 + side; x++) m.data[y * w + x] = 1;
  return m;
};
const timed = (f) => {
  const times = [];
  for (let k = 0; k < repeat; k++) {
    const t0 = performance.now();
    f();
    times.push(performance.now() - t0);
  }
  return median(times);
};

// ---- run time against the hole's area ---------------------------------------------------------------------------
const img = await tensorOf(photo, 1024, 1024);
const sides = smoke ? [16, 32, 48] : [16, 24, 32, 48, 64, 96, 128, 160];
const growth = [];
for (const s of sides) {
  const fill = square(1024, 1024, s);
  const base = harmonicFill(img, fill);
  const ms = timed(() => patchFill(img, fill, 0, { base }));
  growth.push({ side: s, area: s * s, ms: round(ms, 1), usPerPixel: round((1000 * ms) / (s * s), 2) });
  log(`hole ${s}x${s}: ${round(ms, 1)} ms`);
}
// least-squares line ms = a + b area, and how far the points stray from it
const n = growth.length;
const mx = growth.reduce((s, g) => s + g.area, 0) / n;
const my = growth.reduce((s, g) => s + g.ms, 0) / n;
const b = growth.reduce((s, g) => s + (g.area - mx) * (g.ms - my), 0) / growth.reduce((s, g) => s + (g.area - mx) ** 2, 0);
const a = my - b * mx;
const r2 = 1 - growth.reduce((s, g) => s + (g.ms - (a + b * g.area)) ** 2, 0) / growth.reduce((s, g) => s + (g.ms - my) ** 2, 0);

// ---- a 100x100 hole in a 12 MP photo ----------------------------------------------------------------------------
const W = smoke ? 400 : 4000;
const H = smoke ? 300 : 3000;
const big = await tensorOf(photo, W, H);
const holes = [
  ['one 100x100 hole', [square(W, H, 100, 0.325 * W, 0.367 * H)]],
  ['three 100x100 holes', [square(W, H, 100, 0.15 * W, 0.233 * H), square(W, H, 100, 0.525 * W, 0.5 * H), square(W, H, 100, 0.875 * W, 0.867 * H)]],
];
const twelve = [];
for (const [label, parts] of holes) {
  const fill = parts.reduce((m, p) => m.map((v, i) => Math.max(v, p.data[i])));
  const smoothMs = timed(() => classicalFill(big, fill));
  const patchMs = timed(() => classicalFill(big, fill, { fill: 'patch', seed: 0 }));
  twelve.push({ label, harmonicMs: round(smoothMs, 0), patchMs: round(patchMs, 0) });
  log(`12 MP, ${label}: --fill smooth's estimate ${round(smoothMs, 0)} ms, --fill patch's ${round(patchMs, 0)} ms`);
}

// ---- the CLI on the 12 MP photo: --fill patch against --fill smooth -----------------------------------------------
let cli = null;
if (!flags['no-cli'] && !smoke) {
  const model = await chooseModel(flags.model);
  const work = mkdtempSync(join(tmpdir(), 'cm-bench-patchfill-'));
  const bytes = Buffer.alloc(W * H * 3);
  for (let p = 0; p < W * H; p++) for (let c = 0; c < 3; c++) bytes[p * 3 + c] = Math.round((big.data[c * W * H + p] + 1) * 127.5);
  await sharp(bytes, { raw: { width: W, height: H, channels: 3 } }).png({ compressionLevel: 1 }).toFile(join(work, 'photo.png'));
  const m = Buffer.alloc(W * H);
  const fill = holes[0][1][0];
  for (let p = 0; p < W * H; p++) m[p] = fill.data[p] ? 255 : 0;
  await sharp(m, { raw: { width: W, height: H, channels: 1 } }).png().toFile(join(work, 'mask.png'));
  const runs = {};
  for (let k = 0; k < repeat; k++) {
    for (const f of ['smooth', 'patch']) {
      const r = await runCli(['inpaint', join(work, 'photo.png'), '--mask', join(work, 'mask.png'), '--fill', f, '-o', join(work, `out-${f}.png`), '--force', '--model', model, '--device', 'cpu', '--threads', '1', '--seed', '0', '-q', '--json']);
      records(r, `12 MP --fill ${f}`);
      (runs[f] ??= []).push(r.seconds);
    }
  }
  cli = { smooth: round(median(runs.smooth), 2), patch: round(median(runs.patch), 2) };
  log(`CLI 12 MP: --fill smooth ${cli.smooth} s, --fill patch ${cli.patch} s`);
  rmSync(work, { recursive: true, force: true });
}

const meta = { date: new Date().toISOString(), photo: photo.replace(TRAIN_DIR, 'train'), repeat, machine: machine(), code: codeVersion() };
let md = `## The patch fill's cost (bench:patchfill)\n\n${meta.date}; ${meta.machine.cpu}, ${meta.machine.cores} cores (load ${meta.machine.loadavg.join(' ')}), ` +
  `code ${meta.code.commit}${meta.code.srcChanged.length ? ` + changes in ${meta.code.srcChanged.join(', ')}` : ''}; photo ${meta.photo}; medians of ${repeat} runs.\n\n`;
md += `Square holes in the photo at 1024x1024, patchFill alone (the window around the hole, the search, the shading):\n\n| hole | pixels | ms | us per hole pixel |\n|---|---|---|---|\n`;
for (const g of growth) md += `| ${g.side}x${g.side} | ${g.area} | ${g.ms} | ${g.usPerPixel} |\n`;
md += `\nA line ms = ${round(a, 1)} + ${round(b * 1000, 2)} x (hole pixels / 1000) fits with R^2 = ${round(r2, 3)}.\n\n`;
md += `The photo enlarged to ${W}x${H} (${round((W * H) / 1e6, 1)} MP), the whole estimate in this process (classicalFill on the whole photo, as --strategy tile makes it; ` +
  `--fill smooth: the harmonic fill over the box spanning the holes; --fill patch: the harmonic fill and the patch fill in each hole's window):\n\n| holes | --fill smooth (ms) | --fill patch (ms) |\n|---|---|---|\n`;
for (const t of twelve) md += `| ${t.label} | ${t.harmonicMs} | ${t.patchMs} |\n`;
if (cli) md += `\nThe CLI on that 12 MP photo with one 100x100 hole (decode, crop window, model, encode; --threads 1): --fill smooth ${cli.smooth} s, --fill patch ${cli.patch} s (the patch fill adds ${round(cli.patch - cli.smooth, 2)} s).\n`;
mkdirSync(dirname(outPath), { recursive: true });
writeFileSync(outPath, md);
writeFileSync(outPath.replace(/\.md$/, '.json'), JSON.stringify({ meta, growth, fit: { a, b, r2 }, twelve, cli }, null, 1));
process.stdout.write(md);
