#!/usr/bin/env node
// bench:flat (issue 19): tiles with nothing left to change (--flat-below). x4 super-resolution of the 4x box-down of
// a few images with flat areas, through the CLI, at --flat-below 0 (every tile at every step) and the given levels,
// alternating, medians: model tiles run and skipped, wall seconds per output megapixel, PSNR against the ground truth
// and against the --flat-below 0 output.
//
//   node bench/flat.mjs [--levels 1,2,4,8] [--rounds 3] [--model PATH] [--out DIR] [--smoke]
//
// Images: a synthetic one (flat colour with a textured corner), the training photo with the most flat 32x32 blocks
// among the first 300 training photos (sky), and Kodak24's kodim21 (sky and sea; evaluation only). Writes flat.json
// and flat.md into --out (default bench/results).
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chooseModel, machine, parseFlags, records, RESULTS, round, runCli } from './lib/common.mjs';
import { EVAL_DIR, cropToMultiple, loadPhoto } from './lib/data.mjs';
import { boxDown, load, savePng } from './lib/images.mjs';
import { median, psnr } from './lib/metrics.mjs';

const flags = parseFlags(process.argv.slice(2));
const smoke = flags.smoke === true;
const outDir = typeof flags.out === 'string' ? flags.out : smoke ? join(tmpdir(), 'cm-bench-smoke') : RESULTS;
const levels = String(flags.levels ?? (smoke ? '1' : '1,2,4,8')).split(',').map(Number);
const rounds = Number(flags.rounds ?? (smoke ? 1 : 3));
const model = await chooseModel(flags.model);
const work = mkdtempSync(join(tmpdir(), 'cm-bench-flat-'));
mkdirSync(outDir, { recursive: true });
const log = (m) => process.stderr.write(`${m}\n`);

/** 384x256: flat colour, a gentle gradient, a textured quarter. */
function synthetic() {
  const w = smoke ? 128 : 384;
  const h = smoke ? 128 : 256;
  const data = new Float32Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const tex = x > (3 * w) / 4 && y > h / 2;
      data[i] = tex ? (x * 37 + y * 11) % 255 : 110;
      data[i + 1] = tex ? (x * 7 + y * 29) % 255 : 150 + (40 * y) / h;
      data[i + 2] = tex ? ((x ^ y) * 5) % 255 : 205;
    }
  }
  return { w, h, data };
}

const images = [['synthetic flat (textured quarter)', synthetic()]];
const trainSky = '/work/shared/data/train/coco/coco_000000208901.jpg';
if (!smoke && existsSync(trainSky)) images.push(['training photo coco 208901 (sky)', cropToMultiple(await load(trainSky), 4)]);
const kodim21 = join(EVAL_DIR, 'kodak24', 'kodim21.png');
if (!smoke && existsSync(kodim21)) images.push(['Kodak24 kodim21 (sky, sea)', cropToMultiple(await loadPhoto(kodim21), 4)]);

const result = { measuredAt: new Date().toISOString(), machine: machine(), model, rounds, images: {} };
for (const [name, gt] of images) {
  const input = join(work, 'in.png');
  await savePng(boxDown(gt, 4), input);
  const runs = {};
  for (let r = 0; r < rounds; r++) {
    for (const level of [0, ...levels]) {
      const out = join(work, `out-${level}.png`);
      const run = await runCli(['superres', '-x', '4', input, '-o', out, '--model', model, '--seed', '0', '--device', 'cpu', '-q', '--json', '--force', '--flat-below', String(level)]);
      const rec = records(run, `${name} --flat-below ${level}`)[0];
      const img = await load(out);
      (runs[level] ??= { seconds: [], tiles: rec.tiles, evaluations: rec.evaluations, img }).seconds.push(run.seconds);
    }
  }
  const mp = (gt.w * gt.h) / 1e6;
  const base = runs[0];
  const rows = {};
  for (const [level, v] of Object.entries(runs)) {
    const s = median(v.seconds);
    rows[level] = {
      tilesRun: v.tiles?.run ?? null,
      tilesSkipped: v.tiles?.skipped ?? null,
      seconds: round(s, 2),
      secondsPerMP: round(s / mp, 2),
      vsEvery: round(s / median(base.seconds), 3),
      psnr: round(psnr(v.img, gt), 3),
      psnrVsEvery: level === '0' ? null : round(psnr(v.img, base.img), 2),
    };
  }
  result.images[name] = { size: `${gt.w}x${gt.h}`, rows };
  log(`${name}: ${JSON.stringify(rows)}`);
}
result.loadavgAfter = machine().loadavg;
writeFileSync(join(outDir, 'flat.json'), JSON.stringify(result, null, 1) + '\n');
let md = `## Skipping tiles with nothing left to change (--flat-below), x4 superres\n\nMeasured ${result.measuredAt}; ${result.machine.cores} x ${result.machine.cpu}, load average ${result.machine.loadavg.join(' / ')} at the start, ${result.loadavgAfter.join(' / ')} at the end; model \`${model}\`; default plan, whole process, medians of ${rounds} (alternating).\n`;
for (const [name, v] of Object.entries(result.images)) {
  md += `\n### ${name}, ${v.size} output\n\n| --flat-below | tiles run | tiles skipped | wall s | s per output MP | vs 0 | PSNR dB | PSNR vs the 0 output |\n|---|---|---|---|---|---|---|---|\n`;
  for (const [level, r] of Object.entries(v.rows)) md += `| ${level} | ${r.tilesRun} | ${r.tilesSkipped} | ${r.seconds} | ${r.secondsPerMP} | ${r.vsEvery} | ${r.psnr} | ${r.psnrVsEvery ?? '-'} |\n`;
}
writeFileSync(join(outDir, 'flat.md'), md);
log(`wrote ${join(outDir, 'flat.md')}`);
