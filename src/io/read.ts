/**
 * Reading an input's bytes, bounded: a regular file by its size (refused up front when over the limit, its header
 * checked before the rest is read), stdin and pipes by a byte limit counted as they are read. Devices, sockets and
 * terminals are refused without being read; a named pipe with no writer is refused at once instead of waiting.
 * stopReading (Ctrl-C, SIGTERM) ends every read in progress at once, even one whose writer never writes.
 */
import { closeSync, constants, fstatSync, openSync, read, readSync, statSync, type Stats } from 'node:fs';
import { Socket } from 'node:net';
import { isatty } from 'node:tty';
import type { Readable } from 'node:stream';
import { InputError } from '../errors.js';

/** sharp's default pixel limit (16383 x 16383), cm's default for --max-pixels. */
export const DEFAULT_MAX_PIXELS = 268402689;
/** The largest --max-pixels (and --max-output-pixels) accepted. */
export const MAX_PIXELS_CEILING = 1_000_000_000;
/** Bytes allowed per pixel of --max-pixels (an uncompressed 8-bit RGBA image), plus room for headers and metadata. */
export const INPUT_BYTES_PER_PIXEL = 4;
export const INPUT_BYTES_SLACK = 16 << 20;
/** How much of a large file is read first, for the header check. */
export const HEADER_BYTES = 64 << 10;

/** The most bytes read from one input: 4 bytes a pixel of --max-pixels, plus 16 MiB. */
export function inputByteLimit(maxPixels = DEFAULT_MAX_PIXELS): number {
  return maxPixels * INPUT_BYTES_PER_PIXEL + INPUT_BYTES_SLACK;
}

export interface ReadOptions {
  /** Refuse more bytes than this (see inputByteLimit). */
  limit: number;
  /**
   * Called with the first HEADER_BYTES of a larger regular file before the rest is read; throws to refuse the file
   * (not an image, too many pixels) without reading it all.
   */
  checkHeader?: (head: Buffer) => Promise<void>;
}

/** Why reading stopped (set by stopReading): every read in progress and every later one rejects with it. */
let stopReason: Error | undefined;
/** The streams being read now (stdin, pipes), destroyed by stopReading. */
const reading = new Set<Readable>();

/**
 * End every read in progress now, and refuse every later one, with `reason` (a signal came). A pipe whose writer
 * stays silent would otherwise keep the read, and the process, waiting for ever.
 */
export function stopReading(reason: Error): void {
  stopReason ??= reason;
  for (const stream of reading) stream.destroy(reason);
  reading.clear();
}

function checkStopped(): void {
  if (stopReason) throw stopReason;
}

/** Read a file (or stdin for "-") into memory, with one-line errors naming it. */
export async function readInputBytes(spec: string, options: ReadOptions): Promise<{ label: string; bytes: Buffer }> {
  checkStopped();
  if (spec === '-') return { label: 'stdin', bytes: await readStdin(options.limit) };
  let fd: number;
  try {
    const s = statSync(spec);
    if (s.isDirectory()) throw new InputError(`${spec}: is a directory, not an image`);
    // Devices are never opened (opening some has side effects, reading /dev/zero never ends).
    if (!s.isFile() && !s.isFIFO()) throw new InputError(`${spec}: is ${kindOf(s)}, not an image file`);
    // Non-blocking: opening a named pipe must not wait for a writer (nor hold up Ctrl-C).
    fd = openSync(spec, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`${spec}: ${fsProblem(e)}`);
  }
  let handedOver = false;
  try {
    const s = fstatSync(fd);
    if (s.isFile()) return { label: spec, bytes: await readRegular(spec, fd, s.size, options) };
    if (!s.isFIFO()) throw new InputError(`${spec}: is ${kindOf(s)}, not an image file`);
    handedOver = true;
    return { label: spec, bytes: await readPipe(spec, fd, options.limit) };
  } catch (e) {
    if (e instanceof InputError || e === stopReason) throw e;
    throw new InputError(`${spec}: ${fsProblem(e)}`);
  } finally {
    if (!handedOver) closeSync(fd);
  }
}

let stdinRead = false;

async function readStdin(limit: number): Promise<Buffer> {
  // `cm inpaint - --mask -`: the second reader would find stdin empty and blame the data.
  if (stdinRead) throw new InputError('stdin: already read for another input or the mask (- can stand for only one image)');
  stdinRead = true;
  if (isatty(0)) throw new InputError('stdin: is a terminal, not an image (pipe or redirect one into cm)');
  const s = fstatSync(0);
  if (s.isFile() && s.size > limit) throw tooLarge('stdin', `is ${mib(s.size)}, over`, limit);
  // A pipe, a file or a device (< /dev/zero): read as a stream, counting.
  return readStream('stdin', process.stdin, limit);
}

/** A regular file: refused by its size before reading, its header checked, then no more than its size read. */
async function readRegular(label: string, fd: number, size: number, options: ReadOptions): Promise<Buffer> {
  if (size === 0) throw new InputError(`${label}: empty file`);
  if (size > options.limit) throw tooLarge(label, `is ${mib(size)}, over`, options.limit);
  const head = Buffer.allocUnsafe(Math.min(size, HEADER_BYTES));
  const got = await readInto(fd, head, 0);
  if (got < head.length) return head.subarray(0, got); // it shrank meanwhile: the decoder calls it truncated
  if (got === size) return head;
  await options.checkHeader?.(head);
  const bytes = Buffer.allocUnsafe(size);
  head.copy(bytes);
  return bytes.subarray(0, got + (await readInto(fd, bytes, got)));
}

/** Fill buf from file position `at` on; the number of bytes read (fewer at the end of the file). */
async function readInto(fd: number, buf: Buffer, at: number): Promise<number> {
  let done = 0;
  while (at + done < buf.length) {
    checkStopped();
    const n = await readAt(fd, buf, at + done, buf.length - at - done, at + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function readAt(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, offset, length, position, (e, n) => (e ? reject(e) : resolve(n))));
}

/**
 * A pipe opened without blocking: a first read tells a pipe with no writer (end of file at once) from one whose
 * writer has not written yet (EAGAIN); the rest is read as a stream, which takes the descriptor over.
 */
async function readPipe(label: string, fd: number, limit: number): Promise<Buffer> {
  const first = Buffer.alloc(HEADER_BYTES);
  let n = -1;
  try {
    n = readSync(fd, first, 0, first.length, null);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') {
      closeSync(fd);
      throw new InputError(`${label}: ${fsProblem(e)}`);
    }
  }
  if (n === 0) {
    closeSync(fd);
    throw new InputError(`${label}: a named pipe with no writer (nothing to read)`);
  }
  return readStream(label, new Socket({ fd, readable: true, writable: false }), limit, n > 0 ? first.subarray(0, n) : undefined);
}

async function readStream(label: string, stream: Readable, limit: number, head?: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = head ? [head] : [];
  let total = head?.length ?? 0;
  if (stopReason) {
    stream.destroy();
    throw stopReason;
  }
  reading.add(stream);
  try {
    for await (const chunk of stream) {
      total += (chunk as Buffer).length;
      if (total > limit) throw tooLarge(label, 'more data than', limit);
      chunks.push(chunk as Buffer);
    }
  } catch (e) {
    stream.destroy();
    if (e instanceof InputError) throw e;
    checkStopped();
    throw new InputError(`${label}: ${fsProblem(e)}`);
  } finally {
    reading.delete(stream);
  }
  checkStopped(); // destroyed by a signal as the data ended
  if (stream !== process.stdin) stream.destroy();
  if (total === 0) throw new InputError(`${label}: no image data`);
  return Buffer.concat(chunks, total);
}

function tooLarge(label: string, what: string, limit: number): InputError {
  return new InputError(`${label}: ${what} the input limit of ${mib(limit)} (4 bytes a pixel of --max-pixels, plus 16 MiB; raise --max-pixels to allow more)`);
}

function mib(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${bytes} bytes`;
}

function kindOf(s: Stats): string {
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  if (s.isSocket()) return 'a socket';
  if (s.isFIFO()) return 'a named pipe';
  return 'not a regular file';
}

export function fsProblem(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory, not an image';
  if (code === 'ENOTDIR') return 'no such file (a part of the path is not a folder)';
  if (code === 'ELOOP') return 'too many levels of symbolic links';
  if (code === 'EIO') return 'input/output error';
  return e instanceof Error ? e.message : String(e);
}
