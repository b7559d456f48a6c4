// Runs a cm ONNX model (class-conditional or not, weights inline or in an external .data file) with
// onnxruntime-node, for the converter's tests and timings (there is no Python onnxruntime here).
// usage: node run_adm_onnx.mjs MODEL N,C,H,W X.bin SIGMA.bin OUT.bin [LABELS.bin|-] [THREADS] [REPEAT]
//   raw little-endian files: x, sigma float32; labels int64 ("-" or absent: no class_labels input).
//   REPEAT > 0 runs that many more timed evaluations after the first and prints JSON timings.
// The session is created from the path, so onnxruntime finds an external data file beside the model.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

process.env.ORT_DISABLE_TELEMETRY = '1';
const [model, shapeArg, xPath, sigmaPath, outPath, labelsPath = '-', threads = '1', repeat = '0'] = process.argv.slice(2);
const require = createRequire(new URL('../../package.json', import.meta.url));
const ort = require('onnxruntime-node');

const bytes = (path) => {
  const b = readFileSync(path);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
};
const shape = shapeArg.split(',').map(Number);
let t = performance.now();
const session = await ort.InferenceSession.create(model, {
  intraOpNumThreads: Number(threads), interOpNumThreads: 1, executionProviders: ['cpu'],
});
const loadMs = performance.now() - t;
const feeds = {
  x: new ort.Tensor('float32', new Float32Array(bytes(xPath)), shape),
  sigma: new ort.Tensor('float32', new Float32Array(bytes(sigmaPath)), [shape[0]]),
};
if (labelsPath !== '-') feeds.class_labels = new ort.Tensor('int64', new BigInt64Array(bytes(labelsPath)), [shape[0]]);
t = performance.now();
let { denoised } = await session.run(feeds);
const firstMs = performance.now() - t;
writeFileSync(outPath, Buffer.from(denoised.data.buffer, denoised.data.byteOffset, denoised.data.byteLength));
const times = [];
for (let i = 0; i < Number(repeat); i++) {
  t = performance.now();
  ({ denoised } = await session.run(feeds));
  times.push(performance.now() - t);
}
if (times.length) {
  const sorted = [...times].sort((a, b) => a - b);
  console.log(JSON.stringify({ model, shape, threads: Number(threads), loadMs: Math.round(loadMs),
    firstMs: Math.round(firstMs), medianMs: Math.round(sorted[sorted.length >> 1]), minMs: Math.round(sorted[0]),
    runsMs: times.map(Math.round) }));
}
await session.release();
