/**
 * The pure pieces behind the failure modes: the GIF structure check, the native-log filter, the argument and message
 * rewriting of cli.ts, the image signature sniff, and the bounded reader's header check and byte limit.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { prepareArgs, usageLine } from '../src/cli.js';
import { DASH, stdio } from '../src/commands/common.js';
import { InputError, ModelError } from '../src/errors.js';
import { gifProblem } from '../src/io/gif.js';
import { hasImageSignature } from '../src/io/image.js';
import { HEADER_BYTES, inputByteLimit, readInputBytes } from '../src/io/read.js';
import { loadModel, readModelFile } from '../src/runtime/model.js';
import { Tensor } from '../src/tensor.js';
import { ROOT } from './helpers/paths.js';

let dir: string;
let gif: Buffer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-units-'));
  const frames = Buffer.alloc(16 * 48 * 3);
  for (let i = 0; i < frames.length; i++) frames[i] = (i * 29 + Math.floor(i / 768) * 85) % 256;
  gif = await sharp(frames, { raw: { width: 16, height: 48, channels: 3, pageHeight: 16 } }).gif().toBuffer();
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('gifProblem', () => {
  test('a whole GIF (animated or not) has none; other formats are not its business', async () => {
    expect(gifProblem(gif)).toBeUndefined();
    const single = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#123456' } }).gif().toBuffer();
    expect(gifProblem(single)).toBeUndefined();
    expect(gifProblem(await sharp(single).png().toBuffer())).toBeUndefined();
  });

  test('every cut of the file, at any byte, is found', () => {
    for (let n = 6; n < gif.length; n++) expect(gifProblem(gif.subarray(0, n)), `cut at ${n} of ${gif.length}`).toMatch(/^truncated GIF: /);
  });

  test('a block that is not a GIF block is corrupt', () => {
    const bad = Buffer.from(gif);
    bad[bad.length - 1] = 0x99; // where the trailer was
    expect(gifProblem(bad)).toMatch(/^corrupt GIF: unknown block 0x99 after 3 frames$/);
  });
});

describe('arguments and usage messages (cli.ts)', () => {
  test('-- ends the options: what follows is taken as it is', () => {
    const args = prepareArgs(['colorize', '-o', 'out.png', '-', '--', '-dash.png', '--force', '-']);
    expect(args.slice(0, 4)).toEqual(['colorize', '-o', 'out.png', DASH]);
    expect(args.slice(4).map(stdio)).toEqual(['-dash.png', '--force', '-']);
    expect(args.slice(4).every((a) => !a.startsWith('-'))).toBe(true);
  });

  test("yargs' multi-line choice errors become one line each, in our wording", () => {
    expect(usageLine('Invalid values:\n  Argument: scale, Given: 3, Choices: 2, 4, 8')).toBe('Expected one of 2, 4, 8 for --scale but received 3');
    expect(usageLine('Invalid values:\n  Argument: format, Given: "bmp", Choices: "png", "jpg", "webp"\n  Argument: scale, Given: 3, Choices: 2, 4, 8')).toBe(
      'Expected one of png, jpg, webp for --format but received bmp; Expected one of 2, 4, 8 for --scale but received 3',
    );
    expect(usageLine('Not enough non-option arguments: got 0, need at least 1', ['superres', '-x', '2'])).toBe(
      'superres: name at least one input (an image file, a folder, or - for stdin)',
    );
    expect(usageLine('first\n  second\n')).toBe('first second');
  });
});

describe('hasImageSignature', () => {
  test.each(['png', 'jpeg', 'webp', 'gif', 'tiff', 'avif'] as const)('%s', async (format) => {
    const bytes = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } }).toFormat(format).toBuffer();
    expect(hasImageSignature(bytes)).toBe(true);
  });

  test('SVG text, and not text or zeros', () => {
    expect(hasImageSignature(Buffer.from('\ufeff  <svg xmlns="http://www.w3.org/2000/svg"/>'))).toBe(true);
    expect(hasImageSignature(Buffer.from('this is not an image'))).toBe(false);
    expect(hasImageSignature(Buffer.alloc(1000))).toBe(false);
  });
});

describe('readInputBytes', () => {
  test('the byte limit is 4 bytes a pixel plus 16 MiB', () => {
    expect(inputByteLimit(1000)).toBe(4000 + (16 << 20));
    expect(inputByteLimit()).toBe(4 * 268402689 + (16 << 20));
  });

  test('a large file: only its header is read before the check, and a refusal stops the reading', async () => {
    const path = join(dir, 'big.bin');
    writeFileSync(path, Buffer.alloc(HEADER_BYTES * 5, 7));
    const seen: number[] = [];
    const refuse = async (head: Buffer): Promise<void> => {
      seen.push(head.length);
      throw new InputError('refused by the header');
    };
    await expect(readInputBytes(path, { limit: 1 << 30, checkHeader: refuse })).rejects.toThrow('refused by the header');
    expect(seen).toEqual([HEADER_BYTES]);
    const { bytes } = await readInputBytes(path, { limit: 1 << 30, checkHeader: async () => undefined });
    expect(bytes.length).toBe(HEADER_BYTES * 5);
    await expect(readInputBytes(path, { limit: HEADER_BYTES })).rejects.toThrow(`${path}: is 327680 bytes, over the input limit of 65536 bytes`);
  });

  test('a small file is read whole, its header not checked separately', async () => {
    const path = join(dir, 'small.bin');
    writeFileSync(path, 'tiny');
    let called = false;
    const { bytes } = await readInputBytes(path, { limit: 100, checkHeader: async () => void (called = true) });
    expect([bytes.toString(), called]).toEqual(['tiny', false]);
  });
});

describe('model outputs are checked to be finite', () => {
  test('the NaN model: f(x, sigma_min) = x holds, any other sigma is a ModelError', async () => {
    const path = join(ROOT, 'fixtures', 'bad', 'nan.onnx');
    const model = await loadModel(await readModelFile(path), { device: 'cpu', threads: 1 });
    try {
      const x = new Tensor(2, 3, 8, 8).map((_, i) => Math.sin(i) / 2);
      const same = await model.denoise(x, new Float32Array([0.002, 0.002]));
      expect(Array.from(same.data)).toEqual(Array.from(x.data));
      await expect(model.denoise(x, new Float32Array([0.002, 1]))).rejects.toThrow(ModelError);
      await expect(model.denoise(x, new Float32Array([0.002, 1]))).rejects.toThrow(
        `${path}: output "denoised" is not finite (NaN at sigma 1, image 2 of 2): the model is broken`,
      );
    } finally {
      await model.dispose();
    }
  });
});
