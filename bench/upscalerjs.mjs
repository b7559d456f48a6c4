#!/usr/bin/env node
// The peer of bench:speed (issue 19): UpscalerJS, x4, in Node with TensorFlow.js on its WebAssembly backend (one
// thread: Node has no cross-origin-isolated SharedArrayBuffer workers for tfjs-wasm), the ESRGAN model a JavaScript
// user would install. Benchmark-only devDependencies: upscaler, @upscalerjs/esrgan-slim, @upscalerjs/esrgan-medium,
// @tensorflow/tfjs, @tensorflow/tfjs-backend-wasm.
//
//   node bench/upscalerjs.mjs slim|medium IN.png OUT.png [--patch 64]
//
// Prints one JSON line: {model, backend, width, height, loadSeconds, upscaleSeconds}. Everything is local: upscaler's
// browser build (its ESM build has directory imports Node cannot load; the UMD one is CommonJS) and the model's
// weights read from its npm package through an IOHandler (the package's default is a CDN fetch).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';

const [which, input, output, ...rest] = process.argv.slice(2);
if (!['slim', 'medium'].includes(which) || !input || !output) {
  process.stderr.write('usage: node bench/upscalerjs.mjs slim|medium IN.png OUT.png [--patch N]\n');
  process.exit(2);
}
const patchAt = rest.indexOf('--patch');
const patchSize = patchAt >= 0 ? Number(rest[patchAt + 1]) : 64;
const require = createRequire(import.meta.url);
const pkgDir = (name) => {
  // The package folder without going through its "exports" map (which hides package.json in some of them).
  const paths = require.resolve.paths(name) ?? [];
  for (const p of paths) {
    try {
      readFileSync(join(p, name, 'package.json'));
      return join(p, name);
    } catch {
      // next
    }
  }
  throw new Error(`${name} is not installed (npm install: it is a devDependency)`);
};

const t0 = performance.now();
// One copy of tfjs for us and for upscaler's UMD build (which requires '@tensorflow/tfjs' itself).
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');
wasm.setWasmPaths(`${join(pkgDir('@tensorflow/tfjs-backend-wasm'), 'dist')}/`);
await tf.setBackend('wasm');
await tf.ready();
const Upscaler = require(join(pkgDir('upscaler'), 'dist', 'browser', 'umd', 'upscaler.min.js'));
const modelPkg = pkgDir(`@upscalerjs/esrgan-${which}`);
const defModule = require(join(modelPkg, 'dist', 'cjs', 'models', `esrgan-${which}`, 'src', 'x4', 'cjs.js'));
const definition = defModule.default ?? defModule;
const modelDir = join(modelPkg, 'models', 'x4');
const handler = {
  async load() {
    const json = JSON.parse(readFileSync(join(modelDir, 'model.json'), 'utf8'));
    const weightSpecs = [];
    const buffers = [];
    for (const group of json.weightsManifest) {
      weightSpecs.push(...group.weights);
      for (const p of group.paths) buffers.push(readFileSync(join(modelDir, p)));
    }
    const all = Buffer.concat(buffers);
    return { modelTopology: json.modelTopology, weightSpecs, weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength), format: json.format };
  },
};
const upscaler = new Upscaler({ model: { ...definition, path: handler } });
await upscaler.getModel();

const sharp = (await import('sharp')).default;
const { data, info } = await sharp(input).removeAlpha().raw().toBuffer({ resolveWithObject: true });
const image = tf.tensor3d(Float32Array.from(data), [info.height, info.width, 3]);
const loadSeconds = (performance.now() - t0) / 1000;
const t1 = performance.now();
const out = await upscaler.execute(image, { output: 'tensor', patchSize, padding: 4 });
const pixels = await out.data();
const upscaleSeconds = (performance.now() - t1) / 1000;
const [h, w] = out.shape;
const bytes = Buffer.alloc(h * w * 3);
for (let i = 0; i < bytes.length; i++) bytes[i] = Math.max(0, Math.min(255, Math.round(pixels[i])));
await sharp(bytes, { raw: { width: w, height: h, channels: 3 } }).png().toFile(output);
process.stdout.write(`${JSON.stringify({ model: `esrgan-${which}`, backend: tf.getBackend(), width: w, height: h, loadSeconds, upscaleSeconds })}\n`);
