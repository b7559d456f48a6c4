#!/usr/bin/env node
// One model call's throughput in one inference process against two running at once (src/runtime/processes.ts):
// 4 tiles of 128x128 per round, as one call in one process or as two calls of 2 tiles in two processes together,
// each process with the intra-op threads given; the model's int8 variant where it is the CPU's choice. Medians of
// --calls calls (after 2 warm-up calls) per process. Also checks that the processes' outputs are the same bits.
//
//   node bench/processes.mjs [--model PATH] [--calls 9]
//
// Prints JSON and a Markdown table (milliseconds per 4 tiles; lower is better).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { callInputs, chooseModel, machine, parseFlags, ROOT, round, sessionOptions } from './lib/common.mjs';

const flags = parseFlags(process.argv.slice(2));
const calls = Number(flags.calls ?? 9);

if (flags.child) {
  // One process: open the model, run `calls` calls of `n` tiles, print the median and a hash of the last output.
  const { createHash } = await import('node:crypto');
  const ort = (await import('onnxruntime-node')).default;
  const n = Number(flags.n);
  const session = await ort.InferenceSession.create(flags.child, sessionOptions({ threads: Number(flags.threads) }));
  const { x, sigma } = callInputs(ort, n);
  // Start together: wait for the parent's go (a line on stdin) once warm.
  let out;
  for (let i = 0; i < 2; i++) out = (await session.run({ x, sigma })).denoised.data;
  process.stdout.write('ready\n');
  await new Promise((r) => process.stdin.once('data', r));
  const ms = [];
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    out = (await session.run({ x, sigma })).denoised.data;
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  const hash = createHash('sha256').update(Buffer.from(out.buffer, out.byteOffset, out.byteLength)).digest('hex').slice(0, 16);
  process.stdout.write(`${JSON.stringify({ median: ms[Math.floor(ms.length / 2)], hash })}\n`);
  process.exit(0);
}

const model = await chooseModel(flags.model);
const int8 = model.replace(/\.onnx$/, '-int8.onnx');
const file = existsSync(int8) ? int8 : model;

/** Start one child per entry of `threads` (each with `n` tiles a call), start them together, collect their medians. */
async function together(threads, n) {
  const kids = threads.map((t) => {
    const c = spawn(process.execPath, [new URL(import.meta.url).pathname, '--child', file, '--threads', String(t), '--n', String(n), '--calls', String(calls)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    let text = '';
    const ready = new Promise((r) => c.stdout.on('data', (d) => ((text += d), text.includes('ready') && r())));
    const done = new Promise((r) => c.on('close', () => r(JSON.parse(text.split('\n').filter((l) => l.startsWith('{'))[0]))));
    return { c, ready, done };
  });
  await Promise.all(kids.map((k) => k.ready));
  for (const k of kids) k.c.stdin.write('go\n');
  return Promise.all(kids.map((k) => k.done));
}

const configs = [
  ['one process, 2 threads, 4 tiles a call', [2], 4],
  ['one process, 1 thread, 4 tiles a call', [1], 4],
  ['two processes of 1 thread, 2 tiles a call each', [1, 1], 2],
  ['two processes of 2 and 1 threads (the CLI on 2 cores), 2 tiles a call each', [2, 1], 2],
  ['two processes of 2 threads, 2 tiles a call each', [2, 2], 2],
];
const rows = [];
const hashes = new Set();
for (const [name, threads, n] of configs) {
  const r = await together(threads, n);
  // Throughput: tiles per ms summed over the processes, as ms per 4 tiles.
  const perFour = 4 / r.reduce((s, p) => s + n / p.median, 0);
  if (n === 2) for (const p of r) hashes.add(p.hash);
  rows.push({ name, threads, tilesPerCall: n, medians: r.map((p) => round(p.median, 1)), msPerFourTiles: round(perFour, 1) });
  process.stderr.write(`${name}: ${round(perFour, 1)} ms per 4 tiles\n`);
}
const base = rows[0].msPerFourTiles;
const result = { meta: { date: new Date().toISOString(), machine: machine(), file, calls }, sameBits: hashes.size === 1, rows };
process.stdout.write(`${JSON.stringify(result)}\n\n| configuration | ms per call (each process) | ms per 4 tiles | vs one process of 2 threads |\n|---|---|---|---|\n`);
for (const r of rows) process.stdout.write(`| ${r.name} | ${r.medians.join(', ')} | ${r.msPerFourTiles} | ${round(r.msPerFourTiles / base, 2)} |\n`);
process.stdout.write(`\nOutputs of every two-process configuration the same bits: ${result.sameBits ? 'yes' : 'NO'}.\n`);
