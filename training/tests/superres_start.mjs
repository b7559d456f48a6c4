// The CLI's superres start, P(Lanczos-3(low)), for the Python tests: what the sampler hands the model first.
// usage: node superres_start.mjs N,C,H,W P LOW.json OUT.json   (LOW: the low-res values, [-1, 1]; OUT: the start)
import { readFileSync, writeFileSync } from 'node:fs';

const dist = (p) => import(new URL(`../../dist/${p}`, import.meta.url));
const { Tensor } = await dist('tensor.js');
const { superresOperator, upsampleNearest } = await dist('editing/superres.js');
const [shapeArg, pArg, lowPath, outPath] = process.argv.slice(2);
const [n, c, h, w] = shapeArg.split(',').map(Number);
const p = Number(pArg);
const low = new Tensor(n, c, h / p, w / p);
low.data.set(JSON.parse(readFileSync(lowPath, 'utf8')));
const op = superresOperator(upsampleNearest(low, p), p);
writeFileSync(outPath, JSON.stringify(Array.from(op.project(op.estimate()).data)));
