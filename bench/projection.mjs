#!/usr/bin/env node
// The superres projection alone: the smooth correction (the default, src/editing/superres.ts) against the orthogonal
// one (a constant per patch, the old default), same images, same run, alternating call by call. Not part of CI.
//
//   node bench/projection.mjs [--repeats N] [--out DIR] [--compare OTHER_CHECKOUT] [--smoke]
//
// Sizes are the outputs: 2048x2048 at x2, x4 and x8 and 4000x3000 at x2 (bench:speed's full-resolution sizes), three
// channels, a random image projected onto the patch means of another. Reports the median seconds per call of
// project() and of projectInRange(project()) (what the sampler does at its last step), and their ratio. The old
// projection is this code's 'orthogonal' one, or with --compare another checkout's default (its built dist/, e.g.
// main's, whose default is orthogonal).
// Writes projection.json and projection.md into --out (default bench/results; with --smoke a temporary folder).
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { codeVersion, machine, parseFlags, RESULTS, ROOT, round } from './lib/common.mjs';
import { median } from './lib/metrics.mjs';

const flags = parseFlags(process.argv.slice(2));
const smoke = flags.smoke === true;
const outDir = typeof flags.out === 'string' ? flags.out : smoke ? join(tmpdir(), 'cm-bench-smoke') : RESULTS;
const repeats = Number(flags.repeats ?? (smoke ? 2 : 7));
const { superresOperator, patchMeans } = await import(join(ROOT, 'dist', 'editing', 'superres.js'));
const { Tensor, maxAbsDiff } = await import(join(ROOT, 'dist', 'tensor.js'));
const { Rng } = await import(join(ROOT, 'dist', 'rng.js'));
const other = typeof flags.compare === 'string' ? await import(join(flags.compare, 'dist', 'editing', 'superres.js')) : null;

const CASES = smoke ? [{ w: 256, h: 192, p: 4 }] : [{ w: 2048, h: 2048, p: 2 }, { w: 2048, h: 2048, p: 4 }, { w: 2048, h: 2048, p: 8 }, { w: 4000, h: 3000, p: 2 }];
const startedAt = new Date().toISOString();
const loadStart = machine().loadavg;
const rows = [];
for (const { w, h, p } of CASES) {
  const rng = new Rng(7);
  const random = () => new Tensor(1, 3, h, w).map(() => rng.uniform() * 1.6 - 0.8);
  const y = random();
  const x = random();
  const ops = { orthogonal: other ? other.superresOperator(y, p) : superresOperator(y, p, 'orthogonal'), smooth: superresOperator(y, p) };
  const times = { orthogonal: [], smooth: [], orthogonalLast: [], smoothLast: [] };
  let err = {};
  for (let r = 0; r < repeats; r++) {
    for (const [name, op] of Object.entries(ops)) {
      let t0 = performance.now();
      const px = op.project(x);
      times[name].push((performance.now() - t0) / 1000);
      t0 = performance.now();
      op.projectInRange(px);
      times[`${name}Last`].push((performance.now() - t0) / 1000 + times[name].at(-1));
      if (r === 0) err[name] = maxAbsDiff(patchMeans(px, p), patchMeans(y, p));
    }
  }
  const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  rows.push({
    size: `${w}x${h}`,
    factor: p,
    orthogonalSeconds: round(m.orthogonal, 3),
    smoothSeconds: round(m.smooth, 3),
    ratio: round(m.smooth / m.orthogonal, 2),
    lastStepOrthogonalSeconds: round(m.orthogonalLast, 3),
    lastStepSmoothSeconds: round(m.smoothLast, 3),
    meanErrorOrthogonal: err.orthogonal,
    meanErrorSmooth: err.smooth,
  });
  process.stderr.write(`${w}x${h} x${p}: orthogonal ${m.orthogonal.toFixed(3)} s, smooth ${m.smooth.toFixed(3)} s (${(m.smooth / m.orthogonal).toFixed(2)}x)\n`);
}
const meta = { startedAt, repeats, smoke, old: other ? `the default of ${flags.compare}` : "this code's orthogonal correction", machine: { ...machine(), loadavgAtStart: loadStart }, code: codeVersion() };
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'projection.json'), JSON.stringify({ meta, rows }, null, 1) + '\n');
const l = meta.machine;
const md =
  `## The superres projection alone\n\nMeasured ${startedAt}${smoke ? ' (**smoke run**)' : ''}: \`node bench/projection.mjs\`, median of ${repeats} calls each, ` +
  `alternating; code ${meta.code.commit}; old: ${meta.old}; ${l.cores} x ${l.cpu}, Node ${l.node}; load average ${l.loadavgAtStart.join(' / ')} at the start, ` +
  `${l.loadavg.join(' / ')} at the end. One RGB image, float32. "last step": project then projectInRange, as the sampler ends.\n\n` +
  '| output | factor | orthogonal (old) s | smooth (new) s | smooth / orthogonal | last step, old s | last step, new s | max patch-mean error old / new |\n|---|---|---|---|---|---|---|---|\n' +
  rows.map((r) => `| ${r.size} | x${r.factor} | ${r.orthogonalSeconds} | ${r.smoothSeconds} | ${r.ratio} | ${r.lastStepOrthogonalSeconds} | ${r.lastStepSmoothSeconds} | ${r.meanErrorOrthogonal.toExponential(1)} / ${r.meanErrorSmooth.toExponential(1)} |`).join('\n') +
  '\n';
writeFileSync(join(outDir, 'projection.md'), md);
process.stdout.write(md);
