#!/usr/bin/env node
// The peer of bench:speed (issue 19): UpscalerJS, x4, in Node with TensorFlow.js on its WebAssembly backend (one
// thread: Node has no cross-origin-isolated SharedArrayBuffer workers for tfjs-wasm), the ESRGAN model a JavaScript
// user would install. Benchmark-only devDependencies: upscaler, @upscalerjs/esrgan-slim, @upscalerjs/esrgan-medium,
// @tensorflow/tfjs, @tensorflow/tfjs-backend-wasm.
//
//   node bench/upscalerjs.mjs slim|medium IN.png OUT.png [--patch 64] [--scale 2|3|4|8]
//   node bench/upscalerjs.mjs slim|medium IN_DIR OUT_DIR [--patch 64] [--scale 2|3|4|8]   (every .png of IN_DIR)
//
// Prints one JSON line: {model, scale, backend, width, height, loadSeconds, upscaleSeconds} (a folder: the last
// image's size, images, and the upscaling seconds of all). The packages ship x2, x3, x4 and x8 models; default x4. Everything is local: upscaler's
// browser build (its ESM build has directory imports Node cannot load; the UMD one is CommonJS) and the model's
// weights read from its npm package through an IOHandler (the package's default is a CDN fetch).
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
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
const scaleAt = rest.indexOf('--scale');
const scale = scaleAt >= 0 ? Number(rest[scaleAt + 1]) : 4;
if (![2, 3, 4, 8].includes(scale)) {
  process.stderr.write(`upscalerjs.mjs: the models come in x2, x3, x4 and x8, not x${rest[scaleAt + 1]}\n`);
  process.exit(2);
}
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
const defModule = require(join(modelPkg, 'dist', 'cjs', 'models', `esrgan-${which}`, 'src', `x${scale}`, 'cjs.js'));
const definition = defModule.default ?? defModule;
const modelDir = join(modelPkg, 'models', `x${scale}`);
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
const folder = statSync(input).isDirectory();
const pairs = folder ? readdirSync(input).filter((f) => f.endsWith('.png')).sort().map((f) => [join(input, f), join(output, f)]) : [[input, output]];
if (folder) mkdirSync(output, { recursive: true });
const loadSeconds = (performance.now() - t0) / 1000;
let upscaleSeconds = 0;
let [w, h] = [0, 0];
for (const [src, dst] of pairs) {
  const { data, info } = await sharp(src).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const image = tf.tensor3d(Float32Array.from(data), [info.height, info.width, 3]);
  const t1 = performance.now();
  const out = await upscaler.execute(image, { output: 'tensor', patchSize, padding: 4 });
  const pixels = await out.data();
  upscaleSeconds += (performance.now() - t1) / 1000;
  [h, w] = out.shape;
  image.dispose();
  out.dispose();
  const bytes = Buffer.alloc(h * w * 3);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.max(0, Math.min(255, Math.round(pixels[i])));
  await sharp(bytes, { raw: { width: w, height: h, channels: 3 } }).png().toFile(dst);
}
process.stdout.write(`${JSON.stringify({ model: `esrgan-${which}`, scale, backend: tf.getBackend(), width: w, height: h, ...(folder ? { images: pairs.length } : {}), loadSeconds, upscaleSeconds })}\n`);
