// Runs a cm ONNX model with onnxruntime-node for the Python tests (there is no Python onnxruntime here).
// usage: node run_onnx.mjs MODEL N,C,H,W X.bin SIGMA.bin OUT.bin   (raw float32 little-endian files)
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

process.env.ORT_DISABLE_TELEMETRY = '1';
const [model, shapeArg, xPath, sigmaPath, outPath] = process.argv.slice(2);
// Resolve onnxruntime-node from the repository's node_modules, wherever this script is run from.
const require = createRequire(new URL('../../package.json', import.meta.url));
const ort = require('onnxruntime-node');

const f32 = (path) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const shape = shapeArg.split(',').map(Number);
const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
const feeds = {
  x: new ort.Tensor('float32', f32(xPath), shape),
  sigma: new ort.Tensor('float32', f32(sigmaPath), [shape[0]]),
};
const { denoised } = await session.run(feeds);
writeFileSync(outPath, Buffer.from(denoised.data.buffer, denoised.data.byteOffset, denoised.data.byteLength));
await session.release();
