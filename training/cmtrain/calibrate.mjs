// Activation ranges for cmtrain.quantize: runs a cm ONNX model whose graph lists extra outputs (the tensors to be
// quantized) with onnxruntime-node (there is no Python onnxruntime here) and writes, per extra output, its min, max and
// low/high quantiles over every batch.
// usage: node calibrate.mjs MODEL N,C,H,W X.bin SIGMA.bin BATCH OUT.json   (raw float32 little-endian files)
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

process.env.ORT_DISABLE_TELEMETRY = '1';
const [model, shapeArg, xPath, sigmaPath, batchArg, outPath] = process.argv.slice(2);
const require = createRequire(new URL('../../package.json', import.meta.url));
const ort = require('onnxruntime-node');

const f32 = (path) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const [n, c, h, w] = shapeArg.split(',').map(Number);
const batch = Number(batchArg);
const x = f32(xPath);
const sigma = f32(sigmaPath);
const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, graphOptimizationLevel: 'basic' });
const names = session.outputNames.filter((o) => o !== 'denoised');
// Per tensor: min, max, and an evenly strided sample of about SAMPLE values over all batches for the quantiles.
const SAMPLE = 400000;
const perBatch = Math.max(1, Math.floor(SAMPLE / Math.ceil(n / batch)));
const stats = Object.fromEntries(names.map((k) => [k, { min: Infinity, max: -Infinity, sample: [] }]));
// (plain arrays of at most ~SAMPLE numbers per tensor: 100 tensors stay under 400 MB)
const per = c * h * w;
for (let i = 0; i < n; i += batch) {
  const b = Math.min(batch, n - i);
  const feeds = {
    x: new ort.Tensor('float32', x.subarray(i * per, (i + b) * per), [b, c, h, w]),
    sigma: new ort.Tensor('float32', sigma.subarray(i, i + b), [b]),
  };
  const out = await session.run(feeds);
  for (const k of names) {
    const d = out[k].data;
    const s = stats[k];
    const stride = Math.max(1, Math.floor(d.length / perBatch));
    for (let j = 0; j < d.length; j++) {
      const v = d[j];
      if (v < s.min) s.min = v;
      if (v > s.max) s.max = v;
      if (j % stride === 0) s.sample.push(v);
    }
  }
}
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))];
const result = {};
for (const k of names) {
  const sorted = Float32Array.from(stats[k].sample).sort();
  result[k] = {
    min: stats[k].min,
    max: stats[k].max,
    q0001: quantile(sorted, 0.0001),
    q9999: quantile(sorted, 0.9999),
    q001: quantile(sorted, 0.001),
    q999: quantile(sorted, 0.999),
  };
}
writeFileSync(outPath, JSON.stringify(result));
await session.release();
