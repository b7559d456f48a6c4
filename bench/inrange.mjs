#!/usr/bin/env node
// Superres's last step (projectInRange), as the CLI runs it against the same alternating projections computed on
// the whole image (x <- P(clamp(x)) up to 8 rounds, then the per-patch step): time and largest difference.
// Input: a photo's p x p box-down as the known means; x = P(1.15 y + small noise), an image with the means and about
// 0.1-0.5% of its values out of range, as the sampler's last step has (measured on the CLI: 3-4 thousand of 3.1 M).
//
//   node bench/inrange.mjs [--photos kodak24] [--count 3] [--factors 2,4,8] [--rounds 5]
//
// Prints JSON and a Markdown table (median milliseconds).
import { machine, parseFlags, round } from './lib/common.mjs';
import { photoPaths } from './lib/data.mjs';

const flags = parseFlags(process.argv.slice(2));
const count = Number(flags.count ?? 3);
const factors = String(flags.factors ?? '2,4,8').split(',').map(Number);
const rounds = Number(flags.rounds ?? 5);
const sharp = (await import('sharp')).default;
const { superresOperator } = await import('../dist/editing/superres.js');
const { Tensor, maxAbsDiff } = await import('../dist/tensor.js');

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const outOfRange = (t) => t.data.some((v) => v < -1 || v > 1);

/** The alternating projections on the whole image, then the last step alone (the orthogonal operator's). */
function dense(y, p, x) {
  const op = superresOperator(y, p);
  let r = x.clone();
  for (let k = 0; k < 8 && outOfRange(r); k++) r = op.project(r.map((v) => Math.min(1, Math.max(-1, v))));
  return superresOperator(y, p, 'orthogonal').projectInRange(r);
}

const rows = [];
for (const file of photoPaths(flags.photos ?? 'kodak24').slice(0, count)) {
  for (const p of factors) {
    const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const W = info.width - (info.width % (8 * p));
    const H = info.height - (info.height % (8 * p));
    const y = new Tensor(1, 3, H, W);
    for (let c = 0; c < 3; c++) for (let i = 0; i < H; i++) for (let u = 0; u < W; u++) y.data[(c * H + i) * W + u] = data[(i * info.width + u) * 3 + c] / 127.5 - 1;
    let seed = 3;
    const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const op = superresOperator(y, p);
    const x = op.project(y.map((v) => v * 1.15 + (rnd() - 0.5) * 0.1));
    let outside = 0;
    for (const v of x.data) if (v < -1 || v > 1) outside++;
    const t = { dense: [], cli: [] };
    let a;
    let b;
    for (let r = 0; r < rounds; r++) {
      let s = performance.now();
      a = dense(y, p, x);
      t.dense.push(performance.now() - s);
      s = performance.now();
      b = op.projectInRange(x);
      t.cli.push(performance.now() - s);
    }
    let bytes = 0;
    for (let i = 0; i < a.data.length; i++) if (Math.round((a.data[i] + 1) * 127.5) !== Math.round((b.data[i] + 1) * 127.5)) bytes++;
    rows.push({
      photo: file.split('/').pop(), factor: p, size: `${W}x${H}`, outside: round((100 * outside) / x.data.length, 3),
      dense_ms: round(median(t.dense), 1), cli_ms: round(median(t.cli), 1), ratio: round(median(t.cli) / median(t.dense), 2),
      max_diff: maxAbsDiff(a, b), bytes_differing: bytes,
    });
  }
}
process.stdout.write(`${JSON.stringify({ date: new Date().toISOString(), machine: machine(), rows })}\n\n`);
process.stdout.write('| photo | x | output | values out of range % | whole-image rounds ms | CLI ms | ratio | largest difference | 8-bit values differing |\n|---|---|---|---|---|---|---|---|---|\n');
for (const r of rows) process.stdout.write(`| ${r.photo} | ${r.factor} | ${r.size} | ${r.outside} | ${r.dense_ms} | ${r.cli_ms} | ${r.ratio} | ${r.max_diff.toExponential(1)} | ${r.bytes_differing} |\n`);
