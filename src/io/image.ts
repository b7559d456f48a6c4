/**
 * Pixels in and out: the only module that imports sharp. Images become [1,3,H,W] tensors in [-1, 1] (EXIF orientation
 * applied, alpha split off); tensors become PNG/JPEG/WebP bytes.
 */
import type sharpType from 'sharp';
import type { Metadata } from 'sharp';
import { InputError } from '../errors.js';
import { resample } from '../editing/resample.js';
import { Tensor } from '../tensor.js';
import { gifProblem } from './gif.js';
import { DEFAULT_MAX_PIXELS, inputByteLimit, readInputBytes } from './read.js';

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

/** Alpha values: 0-255 for 8-bit images, 0-65535 for 16-bit ones. */
export type AlphaPlane = Uint8Array | Uint16Array;

/** A decoded image: RGB in [-1, 1] and, when the file had one, its alpha channel at the file's depth. */
export interface Picture {
  /** Where it came from: the path, or "stdin". */
  label: string;
  rgb: Tensor;
  alpha?: AlphaPlane;
  /** Bits per sample of the file: 16 for 16-bit PNG (and TIFF), else 8. */
  depth: 8 | 16;
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
  /**
   * Called with the image's size (from its header) and the file's bytes before its pixels are decoded; throws to
   * refuse it (the memory it would need).
   */
  beforeDecode?: (info: { label: string; width: number; height: number; bytes: number }) => void;
}

/**
 * An input's bytes, bounded (see read.ts): at most inputByteLimit(maxPixels) bytes, and a large file's header is
 * checked (a supported format, no more pixels than the limit) before the rest of it is read.
 */
async function readImageBytes(spec: string, options: DecodeOptions): Promise<{ label: string; bytes: Buffer }> {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  return readInputBytes(spec, {
    limit: inputByteLimit(maxPixels),
    checkHeader: async (head) => {
      let meta: Metadata;
      try {
        meta = await (await sharpLib())(head, { limitInputPixels: false }).metadata();
      } catch {
        if (!hasImageSignature(head)) throw new InputError(`${spec}: cannot decode image (not a supported image format)`);
        return; // the header lies beyond the first bytes (a TIFF's directory can sit at the end): decode decides
      }
      if (meta.width && meta.height && meta.width * meta.height > maxPixels) {
        throw new InputError(`${spec}: cannot decode image (larger than the pixel limit)`);
      }
    },
  });
}

/**
 * Whether bytes start like a format sharp decodes: PNG, JPEG, GIF, WebP, TIFF (and BigTIFF), HEIF/AVIF, or SVG
 * (text starting with "<"). A large file whose first bytes sharp cannot read and that starts like none of these is
 * refused before it is read in full.
 */
export function hasImageSignature(head: Uint8Array): boolean {
  const b = Buffer.from(head.buffer, head.byteOffset, Math.min(head.length, 512));
  const at = (offset: number, ...bytes: number[]): boolean => bytes.every((v, i) => b[offset + i] === v);
  return (
    at(0, 0x89, 0x50, 0x4e, 0x47) ||
    at(0, 0xff, 0xd8, 0xff) ||
    b.subarray(0, 4).toString('latin1') === 'GIF8' ||
    (b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP') ||
    at(0, 0x49, 0x49, 0x2a, 0x00) ||
    at(0, 0x4d, 0x4d, 0x00, 0x2a) ||
    at(0, 0x49, 0x49, 0x2b, 0x00) ||
    at(0, 0x4d, 0x4d, 0x00, 0x2b) ||
    b.subarray(4, 8).toString('latin1') === 'ftyp' ||
    /^(\ufeff|\xef\xbb\xbf)?\s*</.test(b.toString('latin1'))
  );
}

/**
 * Decode image bytes at their depth (16-bit files as 16-bit samples, everything else as 8-bit); any decoder complaint
 * (truncated, corrupt, not an image, too large) is an InputError.
 */
async function decodeRaw(
  label: string,
  bytes: Buffer,
  options: DecodeOptions,
): Promise<{ data: Uint8Array | Uint16Array; max: number; width: number; height: number; channels: number }> {
  // libvips decodes a GIF cut short without a warning: check its structure first.
  const gif = gifProblem(bytes);
  if (gif !== undefined) throw new InputError(`${label}: cannot decode image (${gif})`);
  const sharp = await sharpLib();
  const open = () => sharp(bytes, { failOn: 'warning', limitInputPixels: options.maxPixels ?? true, autoOrient: true });
  let meta: Metadata;
  try {
    meta = await open().metadata();
  } catch (e) {
    throw new InputError(`${label}: cannot decode image (${decoderProblem(e)})`);
  }
  if (meta.width && meta.height) options.beforeDecode?.({ label, width: meta.width, height: meta.height, bytes: bytes.length });
  try {
    const deep = meta.depth === 'ushort';
    const { data, info } = await open()
      .toColourspace(deep ? 'rgb16' : 'srgb')
      .raw(deep ? { depth: 'ushort' } : {})
      .toBuffer({ resolveWithObject: true });
    const samples = deep ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2) : data;
    return { data: samples, max: deep ? 65535 : 255, width: info.width, height: info.height, channels: info.channels };
  } catch (e) {
    throw new InputError(`${label}: cannot decode image (${decoderProblem(e)})`);
  }
}

export async function decodePicture(label: string, bytes: Buffer, options: DecodeOptions = {}): Promise<Picture> {
  const { data, max, width, height, channels } = await decodeRaw(label, bytes, options);
  const plane = width * height;
  const rgb = new Tensor(1, 3, height, width);
  const hasAlpha = channels === 2 || channels === 4;
  const colours = hasAlpha ? channels - 1 : channels;
  const alpha = hasAlpha ? (max === 255 ? new Uint8Array(plane) : new Uint16Array(plane)) : undefined;
  const half = max / 2;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const v = data[p * channels + (colours === 1 ? 0 : c)];
      rgb.data[c * plane + p] = v / half - 1;
    }
    if (alpha) alpha[p] = data[p * channels + channels - 1];
  }
  return { label, rgb, alpha, depth: max === 255 ? 8 : 16, width, height, source: options.keepSource ? bytes : undefined };
}

export async function readPicture(spec: string, options: DecodeOptions = {}): Promise<Picture> {
  const { label, bytes } = await readImageBytes(spec, options);
  return decodePicture(label, bytes, options);
}

/**
 * A mask image as a [1,1,H,W] tensor, 1 = fill (white), 0 = keep. Gray, RGB and alpha masks work: a pixel fills when
 * its luminance times its opacity is at least half.
 */
export async function readMask(spec: string, options: DecodeOptions = {}): Promise<{ label: string; mask: Tensor }> {
  const { label, bytes } = await readImageBytes(spec, options);
  return decodeMask(label, bytes, options);
}

/** readMask's decoding, of bytes already read (an upload). */
export async function decodeMask(label: string, bytes: Buffer, options: DecodeOptions = {}): Promise<{ label: string; mask: Tensor }> {
  const { data, max, width, height, channels } = await decodeRaw(label, bytes, options);
  const hasAlpha = channels === 2 || channels === 4;
  const mask = new Tensor(1, 1, height, width);
  for (let p = 0; p < width * height; p++) {
    const px = p * channels;
    const lum = channels >= 3 ? 0.2989 * data[px] + 0.587 * data[px + 1] + 0.114 * data[px + 2] : data[px];
    const opacity = hasAlpha ? data[px + channels - 1] / max : 1;
    mask.data[p] = lum * opacity >= max / 2 ? 1 : 0;
  }
  return { label, mask };
}

/** [-1, 1] -> 0..255, rounded and clamped. */
export function toByte(v: number): number {
  const b = Math.round((v + 1) * 127.5);
  return b < 0 ? 0 : b > 255 ? 255 : b;
}

/** [-1, 1] -> 0..65535, rounded and clamped. */
export function toWord(v: number): number {
  const b = Math.round((v + 1) * 32767.5);
  return b < 0 ? 0 : b > 65535 ? 65535 : b;
}

/**
 * Interleaved samples (HWC) of image i of a [N,C,H,W] tensor, with an alpha plane appended when given: bytes, or
 * 16-bit words when `deep` (an 8-bit alpha is widened).
 */
function interleave(t: Tensor, i: number, alpha?: AlphaPlane, deep = false): { data: Uint8Array | Uint16Array; channels: 1 | 2 | 3 | 4 } {
  const plane = t.h * t.w;
  const channels = (t.c + (alpha ? 1 : 0)) as 1 | 2 | 3 | 4;
  const data = deep ? new Uint16Array(plane * channels) : Buffer.alloc(plane * channels);
  const to = deep ? toWord : toByte;
  const alphaScale = alpha ? (deep ? (alpha instanceof Uint16Array ? 1 : 257) : alpha instanceof Uint16Array ? 1 / 257 : 1) : 1;
  const base = i * t.imageSize;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < t.c; c++) data[p * channels + c] = to(t.data[base + c * plane + p]);
    if (alpha) data[p * channels + t.c] = Math.round(alpha[p] * alphaScale);
  }
  return { data, channels };
}

export interface EncodeOptions {
  alpha?: AlphaPlane;
  /** An encoded image whose metadata (EXIF, ICC profile, XMP, IPTC) the output keeps (--keep-metadata). */
  metadataFrom?: Buffer;
  /** 16: write a 16-bit PNG (other formats are 8-bit). */
  depth?: 8 | 16;
}

/**
 * Encode image i of a batch (RGB in [-1, 1], optional alpha) as PNG, JPEG or WebP; a 16-bit PNG when asked for. With
 * metadataFrom the output is 8-bit: sharp carries metadata only through a composite onto the original, which is 8-bit.
 */
export async function encodePicture(t: Tensor, i: number, format: ImageFormat, options: EncodeOptions = {}): Promise<Buffer> {
  const deep = options.depth === 16 && format === 'png' && !options.metadataFrom;
  const { data, channels } = interleave(t, i, options.alpha, deep);
  const raw = { width: t.w, height: t.h, channels };
  const sharp = await sharpLib();
  if (deep) return sharp(data, { raw }).toColourspace('rgb16').png().toBuffer();
  // Metadata travels only within one sharp pipeline: start from the original (oriented as decoded, resized to the
  // output size) and replace every pixel with ours.
  const img = options.metadataFrom
    ? sharp(options.metadataFrom, { autoOrient: true, limitInputPixels: false })
        .resize(t.w, t.h, { fit: 'fill' })
        .composite([{ input: Buffer.from(data.buffer, data.byteOffset, data.byteLength), raw, blend: 'source' }])
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

/** Resize an alpha plane (bicubic, PIL's convention), keeping its depth. */
export function resizeAlpha(alpha: AlphaPlane, w: number, h: number, width: number, height: number): AlphaPlane {
  const max = alpha instanceof Uint16Array ? 65535 : 255;
  const t = new Tensor(1, 1, h, w, Float32Array.from(alpha));
  const r = resample(t, width, height, 'bicubic');
  const out = max === 255 ? new Uint8Array(width * height) : new Uint16Array(width * height);
  for (let p = 0; p < out.length; p++) out[p] = Math.min(max, Math.max(0, Math.round(r.data[p])));
  return out;
}

function decoderProblem(e: unknown): string {
  const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0].trim();
  if (/unsupported image format/i.test(msg)) return 'not a supported image format';
  if (/pixel limit/i.test(msg)) return 'larger than the pixel limit';
  return msg.replace(/^Input (buffer|file) /i, '').replace(/^Vips\w*: /, '') || 'unknown decoder error';
}
