/**
 * Pixels in and out: the only module that imports sharp. Images become [1,3,H,W] tensors in [-1, 1] (EXIF orientation
 * applied, alpha split off); tensors become PNG/JPEG/WebP bytes.
 */
import { readFile, stat } from 'node:fs/promises';
import type sharpType from 'sharp';
import { InputError } from '../errors.js';
import { Tensor } from '../tensor.js';

let sharpModule: typeof sharpType | undefined;

/** sharp, loaded on first use: commands that touch no pixels (--help, --version, models) start faster. */
async function sharpLib(): Promise<typeof sharpType> {
  if (!sharpModule) {
    sharpModule = (await import('sharp')).default;
    sharpModule.cache(false);
  }
  return sharpModule;
}

/** Load sharp now (while the model's worker process starts, for instance) rather than at the first image. */
export async function preloadImageCodec(): Promise<void> {
  await sharpLib();
}

export const FORMATS = ['png', 'jpg', 'webp'] as const;
export type ImageFormat = (typeof FORMATS)[number];

/** A decoded image: RGB in [-1, 1] and, when the file had one, its alpha channel (0-255, one byte a pixel). */
export interface Picture {
  /** Where it came from: the path, or "stdin". */
  label: string;
  rgb: Tensor;
  alpha?: Uint8Array;
  width: number;
  height: number;
  /** The file's bytes, kept when its metadata (EXIF, ICC, XMP) is to be copied to the output. */
  source?: Buffer;
}

export interface DecodeOptions {
  /** sharp's limitInputPixels: larger images are refused before decoding. */
  maxPixels?: number;
  /** Keep the file's bytes on the Picture, for --keep-metadata. */
  keepSource?: boolean;
}

/** Read a file (or stdin for "-") into memory, with one-line errors naming it. */
export async function readInputBytes(spec: string): Promise<{ label: string; bytes: Buffer }> {
  if (spec === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    const bytes = Buffer.concat(chunks);
    if (bytes.length === 0) throw new InputError('stdin: no image data');
    return { label: 'stdin', bytes };
  }
  try {
    const s = await stat(spec);
    if (s.isDirectory()) throw new InputError(`${spec}: is a directory, not an image`);
    const bytes = await readFile(spec);
    if (bytes.length === 0) throw new InputError(`${spec}: empty file`);
    return { label: spec, bytes };
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`${spec}: ${fsProblem(e)}`);
  }
}

/** Decode image bytes; any decoder complaint (truncated, corrupt, not an image, too large) is an InputError. */
async function decodeRaw(
  label: string,
  bytes: Buffer,
  options: DecodeOptions,
): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  try {
    const sharp = await sharpLib();
    const { data, info } = await sharp(bytes, {
      failOn: 'warning',
      limitInputPixels: options.maxPixels ?? true,
      autoOrient: true,
    })
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height, channels: info.channels };
  } catch (e) {
    throw new InputError(`${label}: cannot decode image (${decoderProblem(e)})`);
  }
}

export async function decodePicture(label: string, bytes: Buffer, options: DecodeOptions = {}): Promise<Picture> {
  const { data, width, height, channels } = await decodeRaw(label, bytes, options);
  const plane = width * height;
  const rgb = new Tensor(1, 3, height, width);
  const hasAlpha = channels === 2 || channels === 4;
  const colours = hasAlpha ? channels - 1 : channels;
  const alpha = hasAlpha ? new Uint8Array(plane) : undefined;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const v = data[p * channels + (colours === 1 ? 0 : c)];
      rgb.data[c * plane + p] = v / 127.5 - 1;
    }
    if (alpha) alpha[p] = data[p * channels + channels - 1];
  }
  return { label, rgb, alpha, width, height, source: options.keepSource ? bytes : undefined };
}

export async function readPicture(spec: string, options: DecodeOptions = {}): Promise<Picture> {
  const { label, bytes } = await readInputBytes(spec);
  return decodePicture(label, bytes, options);
}

/**
 * A mask image as a [1,1,H,W] tensor, 1 = fill (white), 0 = keep. Gray, RGB and alpha masks work: a pixel fills when
 * its luminance times its opacity is at least half.
 */
export async function readMask(spec: string, options: DecodeOptions = {}): Promise<{ label: string; mask: Tensor }> {
  const { label, bytes } = await readInputBytes(spec);
  const { data, width, height, channels } = await decodeRaw(label, bytes, options);
  const hasAlpha = channels === 2 || channels === 4;
  const mask = new Tensor(1, 1, height, width);
  for (let p = 0; p < width * height; p++) {
    const px = p * channels;
    const lum = channels >= 3 ? 0.2989 * data[px] + 0.587 * data[px + 1] + 0.114 * data[px + 2] : data[px];
    const opacity = hasAlpha ? data[px + channels - 1] / 255 : 1;
    mask.data[p] = lum * opacity >= 127.5 ? 1 : 0;
  }
  return { label, mask };
}

/** [-1, 1] -> 0..255, rounded and clamped. */
export function toByte(v: number): number {
  const b = Math.round((v + 1) * 127.5);
  return b < 0 ? 0 : b > 255 ? 255 : b;
}

/** Interleaved bytes (HWC) of image i of a [N,C,H,W] tensor, with an alpha plane appended when given. */
function interleave(t: Tensor, i: number, alpha?: Uint8Array): { data: Buffer; channels: 1 | 2 | 3 | 4 } {
  const plane = t.h * t.w;
  const channels = (t.c + (alpha ? 1 : 0)) as 1 | 2 | 3 | 4;
  const data = Buffer.alloc(plane * channels);
  const base = i * t.imageSize;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < t.c; c++) data[p * channels + c] = toByte(t.data[base + c * plane + p]);
    if (alpha) data[p * channels + t.c] = alpha[p];
  }
  return { data, channels };
}

export interface EncodeOptions {
  alpha?: Uint8Array;
  /** An encoded image whose metadata (EXIF, ICC profile, XMP, IPTC) the output keeps (--keep-metadata). */
  metadataFrom?: Buffer;
}

/** Encode image i of a batch (RGB in [-1, 1], optional alpha) as PNG, JPEG or WebP. */
export async function encodePicture(t: Tensor, i: number, format: ImageFormat, options: EncodeOptions = {}): Promise<Buffer> {
  const { data, channels } = interleave(t, i, options.alpha);
  const raw = { width: t.w, height: t.h, channels };
  const sharp = await sharpLib();
  // Metadata travels only within one sharp pipeline: start from the original (oriented as decoded, resized to the
  // output size) and replace every pixel with ours.
  const img = options.metadataFrom
    ? sharp(options.metadataFrom, { autoOrient: true, limitInputPixels: false })
        .resize(t.w, t.h, { fit: 'fill' })
        .composite([{ input: data, raw, blend: 'source' }])
        .keepMetadata()
    : sharp(data, { raw });
  switch (format) {
    case 'png':
      return img.png().toBuffer();
    case 'jpg':
      return img.jpeg({ quality: 92 }).toBuffer();
    case 'webp':
      return img.webp({ quality: 92 }).toBuffer();
  }
}

export type ResizeKernel = 'nearest' | 'cubic' | 'lanczos3';

/** Resize every image of a batch (1 or 3 channels, [-1, 1] values, through 8 bits) with sharp. */
export async function resizeTensor(t: Tensor, width: number, height: number, kernel: ResizeKernel): Promise<Tensor> {
  const out = new Tensor(t.n, t.c, height, width);
  const plane = width * height;
  const sharp = await sharpLib();
  for (let i = 0; i < t.n; i++) {
    const { data, channels } = interleave(t, i);
    const resized = await sharp(data, { raw: { width: t.w, height: t.h, channels } })
      .resize(width, height, { kernel, fit: 'fill' })
      .raw()
      .toBuffer();
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < t.c; c++) out.data[i * out.imageSize + c * plane + p] = resized[p * t.c + c] / 127.5 - 1;
    }
  }
  return out;
}

/** Resize an alpha plane (bytes) with sharp. */
export async function resizeAlpha(alpha: Uint8Array, w: number, h: number, width: number, height: number): Promise<Uint8Array> {
  const sharp = await sharpLib();
  const resized = await sharp(Buffer.from(alpha), { raw: { width: w, height: h, channels: 1 } })
    .resize(width, height, { kernel: 'cubic', fit: 'fill' })
    .raw()
    .toBuffer();
  return new Uint8Array(resized);
}

function fsProblem(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory, not an image';
  return e instanceof Error ? e.message : String(e);
}

function decoderProblem(e: unknown): string {
  const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0].trim();
  if (/unsupported image format/i.test(msg)) return 'not a supported image format';
  if (/pixel limit/i.test(msg)) return 'larger than the pixel limit';
  return msg.replace(/^Input (buffer|file) /i, '').replace(/^Vips\w*: /, '') || 'unknown decoder error';
}
