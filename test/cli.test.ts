/**
 * End to end: the built `cm` binary, spawned on the tiny random-weight test model, on images made here.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CM_BIN, ROOT, TINY_MODEL } from './helpers/paths.js';

let dir: string;
const at = (name: string): string => join(dir, name);

interface Run {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

function cm(args: string[], input?: Buffer): Run {
  const r = spawnSync(process.execPath, [CM_BIN, ...args], { cwd: dir, input, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

/** Run on the tiny model on the CPU, quietly. */
function edit(...args: string[]): Run {
  return cm([...args, '--model', TINY_MODEL, '--device', 'cpu', '-q']);
}

async function rgb(path: string): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

/** A smooth colourful test image, made here (no photos in fixtures). */
async function makeImage(path: string, w: number, h: number): Promise<void> {
  const d = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      d[i] = Math.round(255 * (0.5 + 0.5 * Math.sin(x / 7)));
      d[i + 1] = Math.round((255 * y) / (h - 1));
      d[i + 2] = (x * 13 + y * 7) % 256;
    }
  }
  await sharp(d, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path);
}

/** White square (fill) in the middle of a black mask. */
async function makeMask(path: string, w: number, h: number): Promise<void> {
  const m = Buffer.alloc(w * h);
  for (let y = Math.floor(h / 4); y < Math.floor((3 * h) / 4); y++) for (let x = Math.floor(w / 4); x < Math.floor((3 * w) / 4); x++) m[y * w + x] = 255;
  await sharp(m, { raw: { width: w, height: h, channels: 1 } }).png().toFile(path);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-cli-'));
  await makeImage(at('img.png'), 64, 64);
  await makeImage(at('wide.png'), 80, 48);
  await makeMask(at('mask.png'), 64, 64);
  await makeMask(at('wide-mask.png'), 80, 48);
  await makeMask(at('small-mask.png'), 32, 32);
  await sharp(at('img.png')).greyscale().png().toFile(at('gray.png'));
  for (const s of [8, 16, 32]) await sharp(at('img.png')).resize(s, s).png().toFile(at(`low${s}.png`));
  const png = readFileSync(at('img.png'));
  writeFileSync(at('truncated.png'), png.subarray(0, Math.floor(png.length / 2)));
  writeFileSync(at('text.png'), 'this is not an image\n');
  writeFileSync(at('garbage.onnx'), Buffer.from('not a model at all'));
  mkdirSync(at('no-masks'));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('every subcommand writes an image of the right size', () => {
  test.each([
    ['inpaint', ['inpaint', 'img.png', '--mask', 'mask.png'], 'img.inpaint.png', 64],
    ['colorize', ['colorize', 'gray.png'], 'gray.colorize.png', 64],
    ['superres x2', ['superres', 'low32.png', '-x', '2', '-o', 'sr2.png'], 'sr2.png', 64],
    ['superres x4', ['superres', 'low16.png', '-x', '4'], 'low16.superres.png', 64],
    ['superres x8', ['superres', 'low8.png', '-x', '8', '-o', 'sr8.webp'], 'sr8.webp', 64],
    ['stroke', ['stroke', 'img.png', '--strength', '0.5'], 'img.stroke.png', 64],
    ['denoise', ['denoise', 'img.png', '--noise', '25', '-o', 'dn.jpg'], 'dn.jpg', 64],
  ])('%s', async (_name, args, out, size) => {
    const r = edit(...args);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const img = await rgb(at(out));
    expect([img.width, img.height]).toEqual([size, size]);
  });

  test('generate -n 3 writes three numbered images', async () => {
    const r = edit('generate', '-n', '3', '-o', 'sample-{i}.png', '--seed', '5');
    expect(r.status).toBe(0);
    for (const i of [0, 1, 2]) expect((await rgb(at(`sample-${i}.png`))).width).toBe(64);
    expect(readFileSync(at('sample-0.png')).equals(readFileSync(at('sample-1.png')))).toBe(false);
  });

  test('interpolate --frames 4 writes four frames', async () => {
    const r = edit('interpolate', '--frames', '4', '-o', 'frame-{i}.png', '--seed', '5');
    expect(r.status).toBe(0);
    for (const i of [0, 1, 2, 3]) expect((await rgb(at(`frame-${i}.png`))).height).toBe(64);
  });
});

describe('known data is kept', () => {
  test('inpaint returns every unmasked pixel exactly', async () => {
    expect(edit('inpaint', 'img.png', '--mask', 'mask.png', '-o', 'keep.png', '--steps', '3').status).toBe(0);
    const [src, out] = [await rgb(at('img.png')), await rgb(at('keep.png'))];
    let changedInHole = 0;
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 64; x++) {
        const inHole = y >= 16 && y < 48 && x >= 16 && x < 48;
        for (let c = 0; c < 3; c++) {
          const i = (y * 64 + x) * 3 + c;
          if (!inHole) expect(out.data[i]).toBe(src.data[i]);
          else if (out.data[i] !== src.data[i]) changedInHole++;
        }
      }
    }
    expect(changedInHole).toBeGreaterThan(100);
  });

  test('inpaint at another size than the model keeps unmasked pixels exactly too', async () => {
    const r = cm(['inpaint', 'wide.png', '--mask', 'wide-mask.png', '-o', 'wide-out.png', '--model', TINY_MODEL, '--device', 'cpu']);
    expect(r.status).toBe(0);
    expect(r.stderr).not.toMatch(/resiz/); // edited at its own size: no warning
    const [src, out] = [await rgb(at('wide.png')), await rgb(at('wide-out.png'))];
    expect([out.width, out.height]).toEqual([80, 48]);
    for (let y = 0; y < 48; y++) {
      for (let x = 0; x < 80; x++) {
        if (y >= 12 && y < 36 && x >= 20 && x < 60) continue;
        for (let c = 0; c < 3; c++) expect(out.data[(y * 80 + x) * 3 + c]).toBe(src.data[(y * 80 + x) * 3 + c]);
      }
    }
  });

  test.each([2, 4, 8])('superres x%d keeps every patch mean within 1 grey level', async (p) => {
    const low = `low${64 / p}.png`;
    expect(edit('superres', low, '-x', String(p), '-o', `means${p}.png`).status).toBe(0);
    const [src, out] = [await rgb(at(low)), await rgb(at(`means${p}.png`))];
    const s = 64 / p;
    let worst = 0;
    for (let y = 0; y < s; y++) {
      for (let x = 0; x < s; x++) {
        for (let c = 0; c < 3; c++) {
          let sum = 0;
          for (let dy = 0; dy < p; dy++) for (let dx = 0; dx < p; dx++) sum += out.data[((y * p + dy) * 64 + x * p + dx) * 3 + c];
          worst = Math.max(worst, Math.abs(sum / (p * p) - src.data[(y * s + x) * src.channels + c]));
        }
      }
    }
    expect(worst).toBeLessThanOrEqual(1);
  });

  test('colorize keeps the luminance within 1 grey level and adds colour', async () => {
    expect(edit('colorize', 'gray.png', '-o', 'colour.png', '--seed', '1').status).toBe(0);
    const [src, out] = [await rgb(at('gray.png')), await rgb(at('colour.png'))];
    expect(out.channels).toBe(3);
    let worst = 0;
    let chroma = 0;
    for (let p = 0; p < 64 * 64; p++) {
      const [r, g, b] = [out.data[3 * p], out.data[3 * p + 1], out.data[3 * p + 2]];
      worst = Math.max(worst, Math.abs(0.2989 * r + 0.587 * g + 0.114 * b - src.data[p * src.channels]));
      chroma += Math.abs(r - g) + Math.abs(g - b);
    }
    expect(worst).toBeLessThanOrEqual(1);
    expect(chroma / (64 * 64)).toBeGreaterThan(1);
  });
});

describe('seeds, pipes and records', () => {
  test('the same --seed twice gives identical bytes; another seed does not', () => {
    for (const [o, s] of [['s1.png', '7'], ['s2.png', '7'], ['s3.png', '8']]) {
      expect(edit('colorize', 'gray.png', '-o', o, '--seed', s).status).toBe(0);
    }
    expect(readFileSync(at('s1.png')).equals(readFileSync(at('s2.png')))).toBe(true);
    expect(readFileSync(at('s1.png')).equals(readFileSync(at('s3.png')))).toBe(false);
  });

  test('-o - writes a valid PNG to stdout, and - reads stdin', async () => {
    const r = cm(['colorize', '-', '-o', '-', '--model', TINY_MODEL, '--device', 'cpu', '-q'], readFileSync(at('gray.png')));
    expect(r.status).toBe(0);
    const meta = await sharp(r.stdout).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
  });

  test('--json prints one record per output on stdout and nothing else', () => {
    const r = edit('generate', '-n', '2', '-o', 'j-{i}.png', '--json', '--seed', '3', '--steps', '2');
    expect(r.status).toBe(0);
    const records = r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l));
    expect(records.map((x) => x.output)).toEqual(['j-0.png', 'j-1.png']);
    expect(records[0]).toMatchObject({ task: 'generate', status: 'ok', evaluations: 2, ts: [0, 22, 39], seed: 3, device: 'cpu' });
  });

  test('--json reports a failure as a record with status error', () => {
    const r = edit('colorize', 'missing.png', '--json');
    expect(r.status).toBe(3);
    expect(JSON.parse(r.stdout.toString())).toMatchObject({ status: 'error', input: 'missing.png', error: 'missing.png: no such file' });
  });
});

describe('failing well', () => {
  const noNewFiles = (before: string[]): void => expect(readdirSync(dir).sort()).toEqual(before);

  test.each([
    ['a missing file', ['colorize', 'missing.png', '-o', 'f1.png'], 3, /^cm: missing\.png: no such file\n$/],
    ['a truncated PNG', ['colorize', 'truncated.png', '-o', 'f2.png'], 3, /^cm: truncated\.png: cannot decode image \(.+\)\n$/],
    ['a text file named .png', ['colorize', 'text.png', '-o', 'f3.png'], 3, /^cm: text\.png: cannot decode image \(not a supported image format\)\n$/],
    ['a mask of the wrong size', ['inpaint', 'img.png', '--mask', 'small-mask.png', '-o', 'f4.png'], 3, /^cm: small-mask\.png: 32x32 does not match image img\.png 64x64 \(use --resize-mask\)\n$/],
    ['a mask folder without a mask for the image', ['inpaint', 'img.png', '--mask', 'no-masks', '-o', 'f5.png'], 3, /^cm: img\.png: no mask named img\.\* in no-masks\n$/],
    ['an output folder that does not exist', ['colorize', 'gray.png', '-o', 'nope/out.png'], 3, /^cm: nope\/out\.png: folder nope does not exist\n$/],
    ['a bad --ts', ['colorize', 'gray.png', '--ts', '0,50', '-o', 'f6.png'], 2, /^cm: Expected integers between 0 and 39 for --ts but received "0,50"\n$/],
    ['an unknown output format', ['colorize', 'gray.png', '-o', 'f7.tif'], 2, /^cm: f7\.tif: unknown output format "\.tif"/],
  ])('%s: one-line error, its exit code, no output file', (_what, args, code, message) => {
    const before = readdirSync(dir).sort();
    const r = edit(...args);
    expect(r.status).toBe(code);
    expect(r.stderr).toMatch(message);
    expect(r.stdout.length).toBe(0);
    noNewFiles(before);
  });

  test('an unknown flag is a usage error (exit 2)', () => {
    const r = cm(['colorize', 'gray.png', '--bogus']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^cm: Unknown argument: bogus\n$/);
  });

  test.each([
    ['a garbage .onnx file', 'garbage.onnx', /^cm: garbage\.onnx: not an ONNX model \(.+\)\n$/],
    ['a missing model', 'none.onnx', /^cm: none\.onnx: no such file\n$/],
    ['an unknown model name', 'nosuchmodel', /^cm: nosuchmodel: no installed model of that name/],
  ])('%s: exit 4', (_what, model, message) => {
    const before = readdirSync(dir).sort();
    const r = cm(['colorize', 'gray.png', '-o', 'm.png', '--model', model]);
    expect(r.status).toBe(4);
    expect(r.stderr).toMatch(message);
    noNewFiles(before);
  });

  test('an existing output is never overwritten without --force', () => {
    writeFileSync(at('exists.png'), 'precious');
    const r = edit('colorize', 'gray.png', '-o', 'exists.png');
    expect(r.status).toBe(3);
    expect(r.stderr).toBe('cm: exists.png: already exists (use --force to overwrite)\n');
    expect(readFileSync(at('exists.png'), 'utf8')).toBe('precious');
    expect(edit('colorize', 'gray.png', '-o', 'exists.png', '--force').status).toBe(0);
    expect(readFileSync(at('exists.png')).subarray(1, 4).toString()).toBe('PNG');
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('class-conditional models', () => {
  // class-toy.onnx returns class/10 everywhere, so the output's gray level shows which class reached the network.
  const TOY = TINY_MODEL.replace('tiny-random.onnx', 'class-toy.onnx');

  test('--class N is fed to the model as class_labels', async () => {
    for (const [cls, grey] of [[3, 166], [7, 217]]) {
      const r = cm(['generate', '-n', '2', '-o', `toy${cls}-{i}.png`, '--model', TOY, '--class', String(cls), '--device', 'cpu', '-q']);
      expect(r.status).toBe(0);
      const img = await rgb(at(`toy${cls}-1.png`));
      expect([img.width, img.data[0], img.data[img.data.length - 1]]).toEqual([16, grey, grey]);
    }
  });

  test('a missing or out-of-range --class is a usage error; unconditional models refuse one', () => {
    expect(cm(['generate', '-o', 'c.png', '--model', TOY]).stderr).toMatch(/is class-conditional: pass --class N \(0 to 9\)/);
    const out = cm(['generate', '-o', 'c.png', '--model', TOY, '--class', '10']);
    expect([out.status, out.stderr]).toEqual([2, 'cm: Expected an integer between 0 and 9 for --class but received 10\n']);
    expect(cm(['generate', '-o', 'c.png', '--model', TINY_MODEL, '--class', '1']).status).toBe(2);
    expect(existsSync(at('c.png'))).toBe(false);
  });

  test('cm models info shows the class count', () => {
    expect(cm(['models', 'info', TOY]).stdout.toString()).toMatch(/classes: +10/);
  });
});

describe('models', () => {
  test('cm models lists the installed models with the default marked', () => {
    const r = cm(['models']);
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toMatch(/^\* (default|tiny-random) +64x64/m);
    expect(r.stdout.toString().match(/^\* /gm)).toHaveLength(1);
  });

  test('cm models info shows resolution, plans and licence; --json too', () => {
    const r = cm(['models', 'info', TINY_MODEL]);
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toMatch(/resolution: +64x64/);
    expect(r.stdout.toString()).toMatch(/plans: +1: 0,39; 2: 0,22,39/);
    expect(r.stdout.toString()).toMatch(/license: +MIT/);
    const j = JSON.parse(cm(['models', 'info', 'tiny-random', '--json']).stdout.toString());
    expect(j).toMatchObject({ resolution: 64, grid: 40, classes: 0, license: 'MIT' });
  });

  test('cm models info on a file that is not a model exits 4', () => {
    const r = cm(['models', 'info', 'garbage.onnx']);
    expect(r.status).toBe(4);
    expect(existsSync(at('garbage.onnx'))).toBe(true);
  });
});

describe("the README's demo", () => {
  test('inpaint fixtures/demo.png with the default model: every unmasked pixel kept, the blob filled from the estimate it starts from (--fill auto)', async () => {
    const demo = join(ROOT, 'fixtures', 'demo.png');
    const r = cm(['inpaint', demo, '--mask', join(ROOT, 'fixtures', 'demo-mask.png'), '-o', 'demo.inpaint.png', '--force', '--seed', '0', '-q']);
    expect(r.status, r.stderr).toBe(0);
    const [src, out] = [await rgb(demo), await rgb(at('demo.inpaint.png'))];
    const mask = await sharp(join(ROOT, 'fixtures', 'demo-mask.png')).greyscale().raw().toBuffer();
    const plane = src.width * src.height;
    // The classical fill it starts from (--fill auto: patches from the textured hill, the harmonic fill's shading):
    // the model refines it, it does not paint something else.
    const { classicalFill } = await import('../src/editing/inpaint.js');
    const { Tensor } = await import('../src/tensor.js');
    const y = new Tensor(1, 3, src.height, src.width);
    for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) y.data[c * plane + p] = src.data[p * src.channels + c] / 127.5 - 1;
    const fill = new Tensor(1, 1, src.height, src.width, Float32Array.from(mask, (v) => (v > 127 ? 1 : 0)));
    const smooth = classicalFill(y, fill, { fill: 'auto', seed: 0 });
    let diff = 0;
    let n = 0;
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) {
        const o = out.data[p * out.channels + c];
        if (mask[p] <= 127) expect(o).toBe(src.data[p * src.channels + c]);
        else {
          diff += Math.abs(o - (smooth.data[c * plane + p] + 1) * 127.5);
          n++;
        }
      }
    }
    expect(n).toBeGreaterThan(0);
    expect(diff / n).toBeLessThan(20); // grey levels, on average over the hole
  });
});
