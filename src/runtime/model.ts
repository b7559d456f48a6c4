/**
 * Loading a `cm` model: read the file, check the contract, open an onnxruntime-node session on the chosen
 * execution provider, and expose it as a Denoiser. The only module that imports onnxruntime-node.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { ModelError, UsageError } from '../errors.js';
import type { Denoiser } from '../sampler/sample.js';
import { Tensor } from '../tensor.js';
import { parseModelCard, type ModelCard } from './card.js';
import { OnnxParseError, readOnnxMetadata, type ByteReader } from './onnx-metadata.js';

export const DEVICES = ['auto', 'cpu', 'cuda', 'webgpu'] as const;
export type DeviceChoice = (typeof DEVICES)[number];
export type Device = Exclude<DeviceChoice, 'auto'>;

export interface LoadOptions {
  device: DeviceChoice;
  /** Intra-op threads; 0 lets onnxruntime choose. */
  threads: number;
  /** The class every image is generated in, for class-conditional models (checked against cm.num_classes). */
  classLabel?: number;
  /** Let onnxruntime log its warnings and errors on stderr (--debug); otherwise cm says what failed, in one line. */
  debug?: boolean;
}

export interface LoadedModel extends Denoiser {
  readonly path: string;
  readonly card: ModelCard;
  readonly device: Device;
  /** Why devices tried before the chosen one were passed over (for the one stderr line that names the device). */
  readonly skipped: string[];
  dispose(): Promise<void>;
}

/** A model file checked against the contract, before any session is started. */
export interface ModelFile {
  path: string;
  card: ModelCard;
}

/** A reader over a file that reads 64 KiB windows: metadata reading touches only the top-level field headers. */
function fileReader(fd: number, size: number): ByteReader {
  const window = Buffer.alloc(1 << 16);
  let winStart = -1;
  let winLen = 0;
  return {
    size,
    read(pos, len) {
      if (len > window.length) {
        const big = Buffer.alloc(len);
        readSync(fd, big, 0, len, pos);
        return big;
      }
      if (pos < winStart || pos + len > winStart + winLen) {
        winStart = pos;
        winLen = readSync(fd, window, 0, window.length, pos);
      }
      return window.subarray(pos - winStart, pos - winStart + len);
    },
  };
}

/** Read and check a model file's metadata without starting a session (and without reading its weights). */
export async function readModelFile(path: string): Promise<ModelFile> {
  let fd: number;
  try {
    // Only regular files are opened: opening a named pipe would wait for a writer forever (and Ctrl-C with it).
    const s = statSync(path);
    if (s.isDirectory()) throw new ModelError(`${path}: is a directory, not a model file`);
    if (!s.isFile()) {
      const kind = s.isFIFO() ? 'a named pipe' : s.isCharacterDevice() ? 'a character device' : s.isSocket() ? 'a socket' : 'a device';
      throw new ModelError(`${path}: is ${kind}, not a model file`);
    }
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    if (e instanceof ModelError) throw e;
    throw new ModelError(`${path}: ${fileProblem(e)}`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new ModelError(`${path}: is not a file`);
    const props = readOnnxMetadata(fileReader(fd, stat.size));
    return { path, card: parseModelCard(props, path) };
  } catch (e) {
    if (e instanceof OnnxParseError) throw new ModelError(`${path}: not an ONNX model (${e.message})`);
    if (e instanceof ModelError) throw e;
    throw new ModelError(`${path}: ${fileProblem(e)}`);
  } finally {
    closeSync(fd);
  }
}

export async function loadModel(file: ModelFile, options: LoadOptions): Promise<LoadedModel> {
  const { path, card } = file;
  const classLabel = checkClass(card, options.classLabel, path);
  process.env.ORT_DISABLE_TELEMETRY ??= '1';
  const ort = await import('onnxruntime-node');
  // A provider that cannot load, or a model that fails at run time, is reported by us in one line; onnxruntime's own
  // (coloured, multi-line) log is for --debug.
  ort.env.logLevel = options.debug ? 'warning' : 'fatal';
  const logSeverityLevel = options.debug ? 2 : 4;
  const candidates: Device[] = options.device === 'auto' ? ['cuda', 'cpu'] : [options.device];
  const skipped: string[] = [];
  // onnxruntime does not fall back by itself, and a list with an unloadable provider fails as a whole: try one at a time.
  for (const device of candidates) {
    let session: import('onnxruntime-node').InferenceSession;
    try {
      // From the path, not bytes: onnxruntime then finds external weight files beside it (models over 2 GB).
      session = await ort.InferenceSession.create(path, {
        executionProviders: [device],
        graphOptimizationLevel: 'all',
        intraOpNumThreads: options.threads,
        interOpNumThreads: 1,
        logSeverityLevel,
      });
    } catch (e) {
      const reason = firstLine(e);
      if (options.device === 'auto' && device !== 'cpu') {
        skipped.push(`${device} unavailable: ${reason.replace(/^\w+: /, '')}`);
        continue;
      }
      throw new ModelError(`${path}: cannot start the model on ${device}: ${reason}`);
    }
    checkSignature(session, card, path);
    return makeModel(ort, session, path, card, device, skipped, classLabel, logSeverityLevel);
  }
  throw new ModelError(`${path}: no execution provider could run the model`);
}

/** The class label to feed: required by class-conditional models, refused by the others. */
function checkClass(card: ModelCard, label: number | undefined, path: string): number | undefined {
  if (card.numClasses === 0) {
    if (label !== undefined) throw new UsageError(`--class: ${path} is unconditional (it has no classes)`);
    return undefined;
  }
  if (label === undefined) throw new UsageError(`${path} is class-conditional: pass --class N (0 to ${card.numClasses - 1})`);
  if (!Number.isInteger(label) || label < 0 || label >= card.numClasses) {
    throw new UsageError(`Expected an integer between 0 and ${card.numClasses - 1} for --class but received ${label}`);
  }
  return label;
}

function checkSignature(session: import('onnxruntime-node').InferenceSession, card: ModelCard, path: string): void {
  const need = card.numClasses > 0 ? ['x', 'sigma', 'class_labels'] : ['x', 'sigma'];
  for (const name of need) {
    if (!session.inputNames.includes(name)) {
      throw new ModelError(`${path}: model has no input "${name}" (inputs: ${session.inputNames.join(', ')})`);
    }
  }
  if (!session.outputNames.includes('denoised')) {
    throw new ModelError(`${path}: model has no output "denoised" (outputs: ${session.outputNames.join(', ')})`);
  }
}

function makeModel(
  ort: typeof import('onnxruntime-node'),
  session: import('onnxruntime-node').InferenceSession,
  path: string,
  card: ModelCard,
  device: Device,
  skipped: string[],
  classLabel: number | undefined,
  logSeverityLevel: 0 | 1 | 2 | 3 | 4,
): LoadedModel {
  return {
    path,
    card,
    device,
    skipped,
    async denoise(x: Tensor, sigma: Float32Array): Promise<Tensor> {
      if (sigma.length !== x.n) throw new RangeError(`denoise: ${sigma.length} noise levels for a batch of ${x.n}`);
      if (x.c !== card.channels) throw new RangeError(`denoise: ${x.c} channels for a ${card.channels}-channel model`);
      const feeds: Record<string, import('onnxruntime-node').Tensor> = {
        x: new ort.Tensor('float32', x.data, [x.n, x.c, x.h, x.w]),
        sigma: new ort.Tensor('float32', sigma, [x.n]),
      };
      if (classLabel !== undefined) {
        feeds.class_labels = new ort.Tensor('int64', new BigInt64Array(x.n).fill(BigInt(classLabel)), [x.n]);
      }
      let out;
      try {
        const result = await session.run(feeds, { logSeverityLevel });
        out = result.denoised;
      } catch (e) {
        throw new ModelError(`${path}: inference failed on ${device}: ${firstLine(e)}`);
      }
      const dims = out.dims.join(',');
      if (dims !== [x.n, x.c, x.h, x.w].join(',') || out.type !== 'float32') {
        throw new ModelError(`${path}: output "denoised" is ${out.type} [${dims}], expected float32 [${x.shape}]`);
      }
      const data = Float32Array.from(out.data as Float32Array);
      const bad = firstNonFinite(data);
      if (bad !== undefined) {
        const at = Math.floor(bad / x.imageSize);
        throw new ModelError(
          `${path}: output "denoised" is not finite (${data[bad]} at sigma ${sigma[at]}${x.n > 1 ? `, image ${at + 1} of ${x.n}` : ''}): the model is broken`,
        );
      }
      return new Tensor(x.n, x.c, x.h, x.w, data);
    },
    async dispose() {
      await session.release();
    },
  };
}

/** Where a value is NaN or infinite (a broken model), or undefined. */
function firstNonFinite(data: Float32Array): number | undefined {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return i;
  return undefined;
}

/** The first line of an error, without onnxruntime's source locations and assertion text. */
function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const line = msg.split('\n').find((l) => l.trim() !== '')?.trim() ?? 'unknown error';
  return line.replace(/\/onnxruntime_src\/\S+ .*? was false\. /g, '').replace(/\/onnxruntime_src\/\S+ /g, '');
}

function fileProblem(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EISDIR') return 'is a directory, not a model file';
  if (code === 'EACCES') return 'permission denied';
  return firstLine(e);
}
