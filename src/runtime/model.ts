/**
 * Loading a `cm` model: read the file, check the contract, and start it on the chosen execution provider behind the
 * Denoiser interface. The session itself runs in an inference worker process (worker.ts, session.ts), or in this
 * process when `inline` is set (benchmarks). src/runtime is the only place that imports onnxruntime-node.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { CmError, InputError, ModelError, OptionError, UsageError } from '../errors.js';
import type { Denoiser } from '../sampler/sample.js';
import { Tensor } from '../tensor.js';
import { parseModelCard, type ModelCard } from './card.js';
import { adapterDiagnostics, describeCheck, explainStartFailure, type Device, type DeviceChoice, type OutputCheck } from './device.js';
import { OnnxParseError, readOnnxMetadata, type ByteReader } from './onnx-metadata.js';
import { choosePrecision, int8CpuFlags, int8PathOf, type Int8Variant, type PrecisionChoice, type PrecisionDecision } from './precision.js';
// (the int8 variant's lookup: its file beside the model, and the model's SHA-256)
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import type { SessionRequest, Skip, StartedSession } from './session.js';
import { planProcesses, type ProcessPlan } from './processes.js';
import { spawnWorker, takeWorker, type WorkerProcess } from './worker-process.js';
import type { Shape, WireError, WorkerReply, WorkerRequest } from './worker-protocol.js';

export { DEVICES, type Device, type DeviceChoice } from './device.js';

export interface LoadOptions {
  device: DeviceChoice;
  /** The CUDA device (--gpu-id). */
  gpuId?: number;
  /** Intra-op threads; 0 lets onnxruntime choose. */
  threads: number;
  /** The class every image is generated in, for class-conditional models (checked against cm.num_classes). */
  classLabel?: number;
  /** Run the session in this process instead of a worker (benchmarks; the event loop then blocks during calls). */
  inline?: boolean;
  /** Copy the worker's stderr (onnxruntime's and the GPU drivers' own messages) to ours (--debug). */
  debug?: boolean;
  /** On the CPU: the float file, its int8 variant beside it, or auto (precision.ts); default auto. */
  precision?: PrecisionChoice;
}

export interface LoadedModel extends Denoiser {
  readonly path: string;
  readonly card: ModelCard;
  readonly device: Device;
  /** Why devices tried before the chosen one were passed over (for the one stderr line that names the device). */
  readonly skipped: string[];
  /** The check of a GPU's outputs against the CPU's at load (null on the CPU). */
  readonly check: OutputCheck | null;
  /** The precision that runs (int8 only on the CPU) and why (for --debug). */
  readonly precision: { used: 'int8' | 'float'; reason: string };
  /** Calls it works on at once: its inference processes (processes.ts; 1 on a GPU and inline). */
  readonly parallel: number;
  /** Intra-op threads of the first process (0: onnxruntime's choice) and of each other one. */
  readonly threads: { first: number; others: number };
  /** Stop now: the call in progress, and any later one, rejects with `reason` (Ctrl-C). */
  abort(reason: Error): void;
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
  // A model file that is itself an int8 variant (--model default-int8) runs as it is, and says so.
  const decision: PrecisionDecision =
    card.metadata['cm.precision'] === 'int8'
      ? { precision: 'float', reason: 'the model file itself is an int8 variant (cm.precision)' }
      : await decidePrecision(path, options);
  const req: SessionRequest = {
    path,
    card: { channels: card.channels, resolution: card.resolution, numClasses: card.numClasses, grid: card.grid },
    device: options.device,
    gpuId: options.gpuId,
    threads: options.threads,
    classLabel: checkClass(card, options.classLabel, path),
    debug: options.debug,
    cpuPath: decision.path,
  };
  const model = await (options.inline
    ? loadInline(file, req)
    : loadInWorkers(file, req, options.debug ?? false, planProcesses(options.threads, availableParallelism(), process.env.CM_INFERENCE_PROCESSES)));
  const used: 'int8' | 'float' = card.metadata['cm.precision'] === 'int8' || (model.device === 'cpu' && decision.precision === 'int8') ? 'int8' : 'float';
  const reason = model.device !== 'cpu' && decision.precision === 'int8' ? `float on ${model.device}` : decision.reason;
  return Object.assign(model, { precision: { used, reason } });
}

/** The int8 variant beside a model file, if any: its metadata, and whether it was made from this very file. */
export async function findInt8Variant(path: string): Promise<Int8Variant | undefined> {
  const variantPath = int8PathOf(path);
  if (variantPath === path || !existsSync(variantPath)) return undefined;
  const { metadata } = (await readModelFile(variantPath)).card;
  const sha = createHash('sha256').update(readFileSync(path)).digest('hex');
  let check: { max: number; mean: number } | undefined;
  try {
    const c = JSON.parse(metadata['cm.int8_check'] ?? 'null') as { max?: unknown; mean?: unknown } | null;
    if (c && typeof c.max === 'number' && typeof c.mean === 'number') check = { max: c.max, mean: c.mean };
  } catch {
    check = undefined;
  }
  return { path: variantPath, precision: metadata['cm.precision'], matchesSource: metadata['cm.quantized_from'] === sha, check };
}

/** The CPU's int8 flags (precision.ts), from /proc/cpuinfo ([] where it cannot be read: not Linux). */
export function cpuInt8Flags(): string[] {
  try {
    return int8CpuFlags(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return [];
  }
}

async function decidePrecision(path: string, options: LoadOptions): Promise<PrecisionDecision> {
  const choice = options.precision ?? 'auto';
  // A GPU asked for runs the float file; so does a model that is itself an int8 variant.
  if (choice === 'float' || options.device === 'cuda' || options.device === 'webgpu') return { precision: 'float', reason: choice === 'float' ? '--precision float' : `float on ${options.device}` };
  const variant = await findInt8Variant(path);
  const decision = choosePrecision(choice, variant, cpuInt8Flags());
  if (decision.error) throw new UsageError(`${path}: --precision int8: ${decision.error}`);
  return decision;
}

/** The one-line reason a device was passed over, for the device line. */
function skipReason(s: Skip): string {
  if (s.check) return `${s.device}: ${describeCheck(s.device, s.check)}`;
  return `${s.device}: ${s.failure ? explainStartFailure(s.failure) : 'unavailable'}`;
}

/** The error for the one device asked for, when it cannot be used. */
function unavailableError(path: string, s: Skip): ModelError {
  if (s.check) return new ModelError(`${path}: ${describeCheck(s.device, s.check)}`);
  return new ModelError(`${path}: cannot start the model on ${s.device}: ${s.failure ? explainStartFailure(s.failure) : 'unavailable'}`);
}

function checkShapes(card: ModelCard, x: Tensor, sigma: Float32Array): void {
  if (sigma.length !== x.n) throw new RangeError(`denoise: ${sigma.length} noise levels for a batch of ${x.n}`);
  if (x.c !== card.channels) throw new RangeError(`denoise: ${x.c} channels for a ${card.channels}-channel model`);
}

async function loadInline(file: ModelFile, req: SessionRequest): Promise<Omit<LoadedModel, 'precision'>> {
  const { openSession, DeviceUnavailable } = await import('./session.js');
  let session: StartedSession;
  try {
    session = await openSession(req);
  } catch (e) {
    if (e instanceof DeviceUnavailable) throw unavailableError(file.path, e.skip);
    throw e;
  }
  let aborted: Error | undefined;
  return {
    path: file.path,
    card: file.card,
    device: session.device,
    skipped: session.skipped.map(skipReason),
    check: session.check,
    parallel: 1,
    threads: { first: req.threads, others: 0 },
    async denoise(x, sigma) {
      if (aborted) throw aborted;
      checkShapes(file.card, x, sigma);
      const out = await session.run(x.data, x.shape, sigma);
      if (aborted) throw aborted;
      return new Tensor(x.n, x.c, x.h, x.w, out);
    },
    abort(reason) {
      aborted ??= reason;
    },
    dispose: () => session.release(),
  };
}

function fromWire(e: WireError): Error {
  if (e.name === 'UsageError') return new UsageError(e.message);
  if (e.name === 'InputError') return new InputError(e.message);
  if (e.name === 'ModelError') return new ModelError(e.message);
  if (e.exitCode !== undefined) return new CmError(e.message, e.exitCode);
  return new Error(e.message);
}

/** One inference process with its session open: its device, and calls to it. */
interface WorkerHandle {
  device: Device;
  skipped: Skip[];
  check: OutputCheck | null;
  /** Calls sent and not yet answered. */
  readonly pending: number;
  run(x: Tensor, sigma: Float32Array): Promise<Float32Array>;
  /** Fail every call from now on with `reason` and kill the process. */
  abort(reason: Error): void;
  dispose(): Promise<void>;
}

/** Open the model in the worker process `worker` (worker.ts), or fail with the reason in one line (and kill it). */
async function openWorker(file: ModelFile, req: SessionRequest, debug: boolean, worker: WorkerProcess): Promise<WorkerHandle> {
  const { path } = file;
  const { child, tail, release } = worker;
  if (debug) tail.echoToStderr();

  let failure: Error | undefined;
  let closing = false;
  let nextId = 1;
  const pending = new Map<number, { resolve: (r: WorkerReply) => void; reject: (e: Error) => void }>();
  let opened: ((r: WorkerReply) => void) | undefined;
  let openFailed: ((e: Error) => void) | undefined;

  const idle = (): void => {
    // The worker keeps this process alive only while a call is pending: its channel for the reply, its process
    // handle for the 'exit' event that fails the call if it dies (the channel may close first).
    if (pending.size === 0 && !opened) {
      child.channel?.unref();
      child.unref();
    }
  };
  const failAll = (e: Error): void => {
    failure ??= e;
    for (const p of pending.values()) p.reject(failure);
    pending.clear();
    openFailed?.(failure);
    opened = openFailed = undefined;
  };
  const stop = (): void => {
    release();
    child.kill('SIGKILL');
  };
  child.on('message', (r: WorkerReply) => {
    if (r.op === 'opened' || (r.op === 'failed' && r.id === null)) {
      opened?.(r);
      opened = openFailed = undefined;
    } else {
      const p = pending.get(r.id ?? -1);
      if (!p) return;
      pending.delete(r.id ?? -1);
      p.resolve(r);
    }
    idle();
  });
  child.on('error', (e) => {
    // A process that never started fails here; a message that cannot reach a dying one (EPIPE) waits for 'exit',
    // which says why it died.
    if (child.pid === undefined) failAll(new ModelError(`${path}: cannot start the inference process: ${e.message}`));
  });
  child.on('exit', (code, signal) => {
    if (closing) return failAll(new ModelError(`${path}: the model was closed`));
    const last = tail.last();
    failAll(new ModelError(`${path}: the inference process stopped (${signal ?? `exit code ${code}`})${last ? `: ${last}` : ''}`));
  });
  // Killed before it answered (abort(), or a pool closing while this process still opens): the 'exit' above fails the
  // open with the reason.
  if (child.exitCode !== null || child.signalCode !== null) failAll(new ModelError(`${path}: the inference process stopped before it started`));

  const request = (msg: WorkerRequest): void => {
    child.ref();
    child.channel?.ref();
    child.send(msg);
  };

  const reply = await new Promise<WorkerReply>((resolve, reject) => {
    if (failure) return reject(failure);
    opened = resolve;
    openFailed = reject;
    request({ op: 'open', req });
  }).catch((e: Error) => {
    stop();
    throw e;
  });
  if (reply.op === 'failed') {
    await tail.mark(1000);
    stop();
    const { error } = reply;
    if (error.unavailable) {
      const skip = error.unavailable;
      if (skip.failure?.device === 'webgpu') skip.failure.diagnostics = adapterDiagnostics(tail.text());
      throw unavailableError(path, skip);
    }
    throw fromWire(error);
  }
  if (reply.op !== 'opened') throw new Error(`unexpected reply ${reply.op} to open`);
  idle();

  return {
    device: reply.device,
    skipped: reply.skipped,
    check: reply.check,
    get pending() {
      return pending.size;
    },
    async run(x, sigma) {
      if (failure) throw failure;
      const id = nextId++;
      const r = await new Promise<WorkerReply>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        request({ op: 'run', id, x: x.data, shape: x.shape as Shape, sigma });
      });
      if (r.op === 'failed') throw fromWire(r.error);
      if (r.op !== 'result') throw new Error(`unexpected reply ${r.op} to run`);
      return r.data;
    },
    abort(reason) {
      if (failure) return;
      failAll(reason);
      closing = true;
      stop();
    },
    async dispose() {
      if (closing || child.exitCode !== null || child.signalCode !== null) return;
      closing = true;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      request({ op: 'close' });
      // A worker that does not leave within 5 s of being asked (a driver stuck in its teardown) is killed.
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * The model in inference processes (processes.ts): the first on the device asked for; on the CPU, up to
 * `plan.processes - 1` more, each started the first time a call could use it (calls overlap, or one call holds
 * several images: an image of one tile never starts one), joining once its session is open. A call goes to the open
 * process with the fewest calls waiting; a call of several images, while more than one process is idle, is split
 * between them.
 */
async function loadInWorkers(file: ModelFile, req: SessionRequest, debug: boolean, plan: ProcessPlan): Promise<Omit<LoadedModel, 'precision'>> {
  const first = await openWorker(file, { ...req, threads: plan.threads }, debug, takeWorker());
  const open: WorkerHandle[] = [first];
  const parallel = first.device === 'cpu' ? plan.processes : 1;
  const starting = new Set<WorkerProcess>();
  const openings: Promise<void>[] = [];
  let stopped: Error | undefined;

  const startAnother = (): void => {
    const worker = spawnWorker();
    starting.add(worker);
    const opening = openWorker(file, { ...req, device: 'cpu', threads: plan.helperThreads }, debug, worker).then(
      (h) => {
        starting.delete(worker);
        if (stopped) h.abort(stopped);
        else open.push(h);
      },
      // One that cannot start (out of memory, killed at close) leaves the work to those that did; none replaces it.
      () => {
        starting.delete(worker);
      },
    );
    openings.push(opening);
  };
  const killStarting = (): void => {
    for (const worker of starting) {
      worker.release();
      worker.child.kill('SIGKILL');
    }
  };

  return {
    path: file.path,
    card: file.card,
    device: first.device,
    skipped: first.skipped.map(skipReason),
    check: first.check,
    parallel,
    threads: { first: plan.threads, others: plan.helperThreads },
    async denoise(x: Tensor, sigma: Float32Array): Promise<Tensor> {
      checkShapes(file.card, x, sigma);
      if (stopped) throw stopped;
      const w = open.reduce((a, b) => (b.pending < a.pending ? b : a));
      if ((w.pending > 0 || x.n > 1) && 1 + openings.length < parallel) startAnother();
      // Several images while more than one process waits: split between them (the same bits: onnxruntime gives each
      // image the same output whatever else its call holds).
      const idle = open.filter((h) => h.pending === 0);
      if (x.n > 1 && idle.length > 1) {
        const k = Math.min(idle.length, x.n);
        const size = x.imageSize;
        const bounds = Array.from({ length: k + 1 }, (_, i) => Math.round((i * x.n) / k));
        const parts = await Promise.all(
          idle.slice(0, k).map((h, i) => {
            const [a, b] = [bounds[i], bounds[i + 1]];
            return h.run(new Tensor(b - a, x.c, x.h, x.w, x.data.slice(a * size, b * size)), sigma.slice(a, b));
          }),
        );
        const out = new Tensor(x.n, x.c, x.h, x.w);
        parts.forEach((d, i) => out.data.set(d, bounds[i] * size));
        return out;
      }
      return new Tensor(x.n, x.c, x.h, x.w, await w.run(x, sigma));
    },
    abort(reason: Error) {
      if (stopped) return;
      stopped = reason;
      killStarting();
      for (const w of open) w.abort(reason);
    },
    async dispose() {
      // Processes still opening have nothing to finish: killed, not waited for.
      killStarting();
      await Promise.all(openings);
      await Promise.all(open.map((w) => w.dispose()));
    },
  };
}

/** The class label to feed: required by class-conditional models, refused by the others. */
function checkClass(card: ModelCard, label: number | undefined, path: string): number | undefined {
  if (card.numClasses === 0) {
    if (label !== undefined) throw new OptionError('class', (flag) => `${flag}: ${path} is unconditional (it has no classes)`);
    return undefined;
  }
  if (label === undefined) throw new OptionError('class', (flag) => `${path} is class-conditional: pass ${flag} N (0 to ${card.numClasses - 1})`);
  if (!Number.isInteger(label) || label < 0 || label >= card.numClasses) {
    throw new OptionError('class', (flag) => `Expected an integer between 0 and ${card.numClasses - 1} for ${flag} but received ${label}`);
  }
  return label;
}

/** The first line of an error. */
function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n').find((l) => l.trim() !== '')?.trim() ?? 'unknown error';
}

function fileProblem(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EISDIR') return 'is a directory, not a model file';
  if (code === 'EACCES') return 'permission denied';
  return firstLine(e);
}
