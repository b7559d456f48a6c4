/**
 * onnxruntime-node sessions, in the process that runs them (the inference worker, worker.ts; or the CLI's own process
 * with CM_INFERENCE=inline): start a model on the first device that can run it (each tried alone), check a GPU's
 * outputs against a CPU run once per load, and run batches, split when the accelerator runs out of memory.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { ModelError } from '../errors.js';
import type { ModelCard } from './card.js';
import {
  candidates,
  checkInput,
  compareOutputs,
  providerOption,
  runSplitting,
  type Device,
  type DeviceChoice,
  type OutputCheck,
  type StartFailure,
} from './device.js';

export interface SessionRequest {
  path: string;
  card: Pick<ModelCard, 'channels' | 'resolution' | 'numClasses' | 'grid'>;
  device: DeviceChoice;
  gpuId?: number;
  /** Intra-op threads; 0 lets onnxruntime choose. */
  threads: number;
  /** Fed as class_labels to class-conditional models (already checked against cm.num_classes). */
  classLabel?: number;
  /** Let onnxruntime log its warnings and errors (--debug); otherwise only cm's own one-line errors are said. */
  debug?: boolean;
  /** The file the CPU runs instead of `path` (an int8 variant, precision.ts); GPUs and the GPU check run `path`. */
  cpuPath?: string;
}

/** A device passed over: it could not start, or its outputs did not match the CPU's. */
export interface Skip {
  device: Device;
  failure?: StartFailure;
  check?: OutputCheck;
}

/** Thrown when the one device asked for cannot be used (its Skip says why); the caller words the error. */
export class DeviceUnavailable extends Error {
  constructor(readonly skip: Skip) {
    super(`${skip.device} unavailable`);
  }
}

export interface StartedSession {
  device: Device;
  skipped: Skip[];
  /** The check of a GPU's outputs against the CPU's (null on the CPU). */
  check: OutputCheck | null;
  run(x: Float32Array, shape: [number, number, number, number], sigma: Float32Array): Promise<Float32Array>;
  release(): Promise<void>;
}

type Ort = typeof import('onnxruntime-node');

let ortModule: Ort | undefined;

async function loadOrt(debug = false): Promise<Ort> {
  if (ortModule) return ortModule;
  process.env.ORT_DISABLE_TELEMETRY ??= '1';
  ortModule = await import('onnxruntime-node');
  // A provider that cannot load, or a model that fails at run time, is reported by us in one line; onnxruntime's own
  // (coloured, multi-line) log goes to the worker's stderr, which the CLI shows only with --debug.
  ortModule.env.logLevel = debug ? 'warning' : 'fatal';
  return ortModule;
}

/** Whether onnxruntime's CUDA provider library sits next to onnxruntime (installed by ONNXRUNTIME_NODE_INSTALL=cuda12). */
export function cudaProviderInstalled(): boolean {
  try {
    const index = createRequire(import.meta.url).resolve('onnxruntime-node');
    const bin = join(dirname(index), '..', 'bin', 'napi-v6', process.platform, process.arch);
    return ['libonnxruntime_providers_cuda.so', 'onnxruntime_providers_cuda.dll'].some((f) => existsSync(join(bin, f)));
  } catch {
    return false;
  }
}

function createSession(ort: Ort, req: SessionRequest, device: Device): Promise<InferenceSession> {
  // From the path, not bytes: onnxruntime then finds external weight files beside it (models over 2 GB).
  return ort.InferenceSession.create(device === 'cpu' && req.cpuPath ? req.cpuPath : req.path, {
    executionProviders: [providerOption(device, req.gpuId) as never],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: req.threads,
    interOpNumThreads: 1,
    logSeverityLevel: severity(req),
    // No busy-waiting between parallel sections: on a 2-core machine shared with other work (issue 19, bench:peer),
    // spinning intra-op threads took 26-33% more wall time and 30-40% more CPU per call of 4 x 128x128 tiles.
    ...(device === 'cpu' ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
  });
}

/** onnxruntime's log severity: warnings and errors with --debug, else fatal only. */
const severity = (req: SessionRequest): 2 | 4 => (req.debug ? 2 : 4);

export async function openSession(req: SessionRequest): Promise<StartedSession> {
  const ort = await loadOrt(req.debug);
  const auto = req.device === 'auto';
  const skipped: Skip[] = [];
  for (const device of candidates(req.device)) {
    let session: InferenceSession;
    try {
      session = await createSession(ort, req, device);
    } catch (e) {
      const failure: StartFailure = { device, message: firstLine(e) };
      if (device === 'cuda') failure.cudaProviderInstalled = cudaProviderInstalled();
      if (device === 'cpu') throw new ModelError(`${req.path}: cannot start the model on cpu: ${failure.message}`);
      if (!auto) throw new DeviceUnavailable({ device, failure });
      skipped.push({ device, failure });
      continue;
    }
    try {
      checkSignature(session, req);
      let check: OutputCheck | null = null;
      if (device !== 'cpu') {
        check = await checkAgainstCpu(ort, session, req, device);
        if (!check.ok) {
          if (!auto) throw new DeviceUnavailable({ device, check });
          skipped.push({ device, check });
          await session.release();
          continue;
        }
      }
      return started(ort, session, req, device, skipped, check);
    } catch (e) {
      await session.release().catch(() => undefined);
      throw e;
    }
  }
  throw new ModelError(`${req.path}: no execution provider could run the model`);
}

function checkSignature(session: InferenceSession, req: SessionRequest): void {
  const need = req.card.numClasses > 0 ? ['x', 'sigma', 'class_labels'] : ['x', 'sigma'];
  for (const name of need) {
    if (!session.inputNames.includes(name)) {
      throw new ModelError(`${req.path}: model has no input "${name}" (inputs: ${session.inputNames.join(', ')})`);
    }
  }
  if (!session.outputNames.includes('denoised')) {
    throw new ModelError(`${req.path}: model has no output "denoised" (outputs: ${session.outputNames.join(', ')})`);
  }
}

/** The model's output on the check input on this GPU and on a CPU session started for the purpose (then released). */
async function checkAgainstCpu(ort: Ort, session: InferenceSession, req: SessionRequest, device: Device): Promise<OutputCheck> {
  const meta = session.inputMetadata.find((m) => m.name === 'x');
  const dims = meta && meta.isTensor ? meta.shape : [];
  const anySize = typeof dims[2] !== 'number' && typeof dims[3] !== 'number';
  const { x, shape } = checkInput(req.card.channels, req.card.resolution, anySize);
  const { sigmaMin, sigmaMax } = req.card.grid;
  const sigma = new Float32Array([Math.min(sigmaMax, Math.max(sigmaMin, 1))]);
  const onGpu = await runOnce(ort, session, req, device, x, shape, sigma);
  const cpu = await createSession(ort, { ...req, gpuId: undefined, cpuPath: undefined }, 'cpu').catch((e: unknown) => {
    throw new ModelError(`${req.path}: cannot start the CPU session that checks ${device}'s outputs: ${firstLine(e)}`);
  });
  try {
    return compareOutputs(onGpu, await runOnce(ort, cpu, req, 'cpu', x, shape, sigma), shape);
  } finally {
    await cpu.release();
  }
}

async function runOnce(
  ort: Ort,
  session: InferenceSession,
  req: SessionRequest,
  device: Device,
  x: Float32Array,
  shape: [number, number, number, number],
  sigma: Float32Array,
): Promise<Float32Array> {
  const n = shape[0];
  const feeds: Record<string, OrtTensor> = {
    x: new ort.Tensor('float32', x, shape),
    sigma: new ort.Tensor('float32', sigma, [n]),
  };
  if (req.card.numClasses > 0) {
    feeds.class_labels = new ort.Tensor('int64', new BigInt64Array(n).fill(BigInt(req.classLabel ?? 0)), [n]);
  }
  let out: OrtTensor;
  try {
    out = (await session.run(feeds, { logSeverityLevel: severity(req) })).denoised;
  } catch (e) {
    throw new ModelError(`${req.path}: inference failed on ${device}: ${firstLine(e)}`);
  }
  const dims = out.dims.join(',');
  if (dims !== shape.join(',') || out.type !== 'float32') {
    throw new ModelError(`${req.path}: output "denoised" is ${out.type} [${dims}], expected float32 [${shape.join(',')}]`);
  }
  const data = Float32Array.from(out.data as Float32Array);
  const bad = firstNonFinite(data);
  if (bad !== undefined) {
    const size = shape[1] * shape[2] * shape[3];
    const at = Math.floor(bad / size);
    throw new ModelError(
      `${req.path}: output "denoised" is not finite (${data[bad]} at sigma ${sigma[at]}${n > 1 ? `, image ${at + 1} of ${n}` : ''}): the model is broken`,
    );
  }
  return data;
}

/** Where a value is NaN or infinite (a broken model), or undefined. */
function firstNonFinite(data: Float32Array): number | undefined {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return i;
  return undefined;
}

function started(ort: Ort, session: InferenceSession, req: SessionRequest, device: Device, skipped: Skip[], check: OutputCheck | null): StartedSession {
  // Images per call on an accelerator: no limit until a call runs out of memory (then halved, and kept).
  const limit = { max: Number.POSITIVE_INFINITY };
  return {
    device,
    skipped,
    check,
    run(x, shape, sigma) {
      const once = (xs: Float32Array, s: [number, number, number, number], sg: Float32Array): Promise<Float32Array> =>
        runOnce(ort, session, req, device, xs, s, sg);
      // Out-of-memory splitting only on an accelerator: the CPU's arena grows into host memory instead.
      return device === 'cpu' ? once(x, shape, sigma) : runSplitting(once, x, shape, sigma, limit);
    },
    release: () => session.release(),
  };
}

/** The first line of an error, without onnxruntime's source locations and assertion text. */
export function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const line = msg.split('\n').find((l) => l.trim() !== '')?.trim() ?? 'unknown error';
  return line.replace(/\/onnxruntime_src\/\S+ .*? was false\. /g, '').replace(/\/onnxruntime_src\/\S+ /g, '');
}
