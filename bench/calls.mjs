#!/usr/bin/env node
// One model call (4 tiles of 128x128, noise levels 0.05 / 0.2 / 0.8 / 3) of several models side by side, each as
// shipped (float) and as its int8 variant where one lies beside it (NAME-int8.onnx), in onnxruntime-node with the
// CLI's session options, 1 and 2 intra-op threads. Sessions are created first, then the models are timed in turn
// (round robin, 2 warm-up calls each), so that a change in the machine's speed hits all of them alike.
//
//   node bench/calls.mjs A.onnx B.onnx ... [--calls 9] [--threads 1,2]
//
// Prints JSON and a Markdown table: median milliseconds per call, and the ratio to the first model's.
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { callInputs, machine, parseFlags, round, sessionOptions } from './lib/common.mjs';

const flags = parseFlags(process.argv.slice(2));
const files = process.argv.slice(2).filter((a) => a.endsWith('.onnx'));
if (files.length === 0) {
  process.stderr.write('usage: node bench/calls.mjs A.onnx [B.onnx ...] [--calls 9] [--threads 1,2]\n');
  process.exit(2);
}
const calls = Number(flags.calls ?? 9);
const threadList = String(flags.threads ?? '1,2').split(',').map(Number);
const ort = (await import('onnxruntime-node')).default;

const { x, sigma } = callInputs(ort, 4);

const variants = files.flatMap((f) => {
  const int8 = f.replace(/\.onnx$/, '-int8.onnx');
  return [{ model: f, precision: 'float', file: f }, ...(existsSync(int8) ? [{ model: f, precision: 'int8', file: int8 }] : [])];
});
const rows = [];
for (const threads of threadList) {
  const runs = [];
  for (const v of variants) {
    const session = await ort.InferenceSession.create(v.file, sessionOptions({ threads }));
    for (let i = 0; i < 2; i++) await session.run({ x, sigma });
    runs.push({ ...v, session, ms: [] });
  }
  for (let i = 0; i < calls; i++) {
    for (const r of runs) {
      const t = performance.now();
      await r.session.run({ x, sigma });
      r.ms.push(performance.now() - t);
    }
  }
  for (const r of runs) r.median = [...r.ms].sort((a, b) => a - b)[Math.floor(r.ms.length / 2)];
  for (const r of runs) {
    const base = runs.find((b) => b.model === files[0] && b.precision === r.precision);
    rows.push({ model: r.model, precision: r.precision, threads, ms: round(r.median, 1), ratio: base ? round(r.median / base.median, 3) : null });
    await r.session.release();
  }
}
const result = { date: new Date().toISOString(), machine: machine(), calls, rows };
process.stdout.write(`${JSON.stringify(result)}\n\n`);
process.stdout.write(`| model | precision | threads | ms per call (4 tiles of 128) | vs ${basename(files[0])} |\n|---|---|---|---|---|\n`);
for (const r of rows) process.stdout.write(`| ${basename(r.model)} | ${r.precision} | ${r.threads} | ${r.ms} | ${r.ratio} |\n`);
