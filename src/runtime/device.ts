/**
 * Execution providers, as data: which devices `--device` tries and in what order, the provider options onnxruntime
 * gets for each, what a failure to start one means in one line, the check of a GPU's outputs against the CPU's, and
 * splitting a batch that does not fit in the accelerator's memory. Pure: no onnxruntime, no files, no console.
 */

export const DEVICES = ['auto', 'cpu', 'cuda', 'webgpu'] as const;
export type DeviceChoice = (typeof DEVICES)[number];
export type Device = Exclude<DeviceChoice, 'auto'>;

/**
 * The devices to try, one at a time (onnxruntime does not fall back by itself, and a list with a provider that cannot
 * load fails as a whole). `auto` is CUDA, then the CPU. It never picks WebGPU: on a machine without a GPU the Vulkan
 * loader finds only a software driver (lavapipe), which is about 40 times slower than the CPU provider.
 */
export function candidates(choice: DeviceChoice): Device[] {
  return choice === 'auto' ? ['cuda', 'cpu'] : [choice];
}

export type ProviderOption = string | { name: 'cuda'; deviceId: number };

/**
 * The executionProviders entry for a device. onnxruntime-node's WebGPU provider takes no adapter index (Dawn picks the
 * adapter; a `deviceId` is refused as an unknown option), so --gpu-id is for CUDA only (checked in `checkGpuId`).
 */
export function providerOption(device: Device, gpuId: number | undefined): ProviderOption {
  if (device === 'cuda') return { name: 'cuda', deviceId: gpuId ?? 0 };
  return device;
}

/** --gpu-id's problem with --device, or undefined when they go together. */
export function gpuIdProblem(choice: DeviceChoice, gpuId: number | undefined): string | undefined {
  if (gpuId === undefined) return undefined;
  if (!Number.isInteger(gpuId) || gpuId < 0 || gpuId > 1023) {
    return `Expected an integer between 0 and 1023 for --gpu-id but received ${gpuId}`;
  }
  if (choice === 'cpu') return '--gpu-id chooses a CUDA device: it needs --device cuda or auto, not cpu';
  if (choice === 'webgpu') {
    return '--gpu-id chooses a CUDA device; onnxruntime\'s WebGPU provider picks its adapter itself (choose the Vulkan driver with VK_ICD_FILENAMES)';
  }
  return undefined;
}

/** What the session layer knows about a failure to start a provider. */
export interface StartFailure {
  device: Device;
  /** onnxruntime's message (first line). */
  message: string;
  /** Whether onnxruntime's CUDA provider library is installed next to onnxruntime (CUDA only). */
  cudaProviderInstalled?: boolean;
  /** Lines the provider's drivers printed on stderr while it started (Dawn's adapter refusals), already filtered. */
  diagnostics?: string[];
}

export const CUDA_INSTALL = 'ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node';
/** The start of the reason CUDA was passed over when its provider was never installed (a machine set up for the CPU). */
export const CUDA_NOT_INSTALLED = "onnxruntime's CUDA provider is not installed";

/** One line saying why a device cannot run, and what would fix it. */
export function explainStartFailure(f: StartFailure): string {
  if (f.device === 'cuda') {
    if (f.cudaProviderInstalled === false) {
      return `${CUDA_NOT_INSTALLED} (with CUDA 12 and cuDNN 9 present: ${CUDA_INSTALL})`;
    }
    if (/Failed to load shared library|cannot open shared object|libcu|cudnn/i.test(f.message)) {
      return `the CUDA provider could not load its libraries (it needs CUDA 12 and cuDNN 9 on the library path): ${f.message}`;
    }
    if (/no CUDA-capable device|CUDA driver version is insufficient|cudaErrorNoDevice|invalid device ordinal/i.test(f.message)) {
      return `no usable CUDA device: ${f.message}`;
    }
    return f.message;
  }
  if (f.device === 'webgpu') {
    const reasons = (f.diagnostics ?? []).filter((l) => l.length > 0);
    if (/adapter/i.test(f.message) || /vulkan/i.test(f.message)) {
      const why = reasons.length > 0 ? reasons.join('; ') : 'no Vulkan driver offers one (libvulkan1 and a driver such as mesa-vulkan-drivers are needed)';
      return `no usable WebGPU adapter: ${why}`;
    }
    return f.message;
  }
  return f.message;
}

/**
 * The lines of a provider's stderr worth a user's eyes when it fails to start: Dawn's and the Vulkan loader's reasons
 * for refusing an adapter or a driver, without their "Warning:" prefix, source locations and noise.
 */
export function adapterDiagnostics(stderr: string): string[] {
  const out: string[] = [];
  for (const raw of stderr.split('\n')) {
    const line = raw.trim().replace(/^(Warning|Error|MESA|WARNING): */i, '');
    if (line === '' || line.startsWith('at ') || /artificially reduced/.test(line)) continue;
    if (/Vulkan .*required|Insufficient Vulkan|Found no drivers|vkCreateInstance|No supported adapters|not supported/i.test(line)) {
      const short = line.replace(/\s*\(\/\S+:\d+\)\s*$/, '');
      if (!out.includes(short)) out.push(short);
    }
  }
  return out.slice(0, 3);
}

/**
 * The largest difference allowed between a GPU's output and the CPU's on the check input, in the model's output units
 * ([-1, 1], where one 8-bit grey level is 2/255 = 0.0078). fp32 providers agree to about 1e-6 (lavapipe's WebGPU:
 * measured in test/gpu.test.ts); TF32 convolutions (CUDA's default on recent GPUs) and fp16 arithmetic drift by about
 * 1e-3; a broken kernel or driver is off by 0.1 or more. 0.02 (2.5 grey levels) separates the two.
 */
export const CHECK_TOLERANCE = 0.02;

export interface OutputCheck {
  /** The reference device. */
  against: 'cpu';
  /** Largest absolute difference (NaN when either output has a non-finite value). */
  maxAbsDiff: number;
  tolerance: number;
  /** The check input's shape. */
  shape: number[];
  ok: boolean;
}

export function compareOutputs(gpu: Float32Array, cpu: Float32Array, shape: number[], tolerance = CHECK_TOLERANCE): OutputCheck {
  let worst = gpu.length === cpu.length ? 0 : Number.NaN;
  for (let i = 0; i < gpu.length && i < cpu.length; i++) {
    const d = Math.abs(gpu[i] - cpu[i]);
    if (!Number.isFinite(d)) {
      worst = Number.NaN;
      break;
    }
    if (d > worst) worst = d;
  }
  return { against: 'cpu', maxAbsDiff: worst, tolerance, shape, ok: Number.isFinite(worst) && worst <= tolerance };
}

/** The check's result, for the device line ("outputs match the CPU's within 3e-7") or the mismatch error. */
export function describeCheck(device: Device, c: OutputCheck): string {
  const d = c.maxAbsDiff;
  const diff = !Number.isFinite(d) ? 'a non-finite value' : d !== 0 && d < 1e-3 ? d.toExponential(1) : String(Number(d.toPrecision(2)));
  if (c.ok) return `outputs match the CPU's within ${diff}`;
  return `${device}'s outputs differ from the CPU's by ${diff} (max abs, tolerance ${c.tolerance}, on a [${c.shape.join(',')}] check input): not used`;
}

/**
 * The check input: a batch of one at the model's size, or at 64x64 when the model takes any size and is larger (a
 * 256x256 model takes ~30 s per call on a CPU; 64x64 costs a sixteenth), values in [-1, 1] from a fixed stream.
 */
export function checkInput(channels: number, resolution: number, anySize: boolean): { x: Float32Array; shape: [number, number, number, number] } {
  const side = anySize ? Math.min(resolution, 64) : resolution;
  const shape: [number, number, number, number] = [1, channels, side, side];
  const x = new Float32Array(channels * side * side);
  let s = 0x9e3779b9;
  for (let i = 0; i < x.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = (s / 2 ** 32) * 2 - 1;
  }
  return { x, shape };
}

/** Whether an inference error is the accelerator running out of memory (CUDA's arena, cuDNN, Dawn). */
export function isOutOfMemory(message: string): boolean {
  return /out of memory|Failed to allocate|allocation fail|CUDNN_STATUS_ALLOC_FAILED|OOM/i.test(message);
}

export type BatchRunner = (x: Float32Array, shape: [number, number, number, number], sigma: Float32Array) => Promise<Float32Array>;

/**
 * Run a batch in chunks of at most `limit.max` images; when a chunk runs out of memory, halve it and retry, and keep
 * the smaller size for later calls. Outputs are concatenated in order, so the caller sees one call.
 */
export async function runSplitting(
  run: BatchRunner,
  x: Float32Array,
  shape: [number, number, number, number],
  sigma: Float32Array,
  limit: { max: number },
): Promise<Float32Array> {
  const [n, c, h, w] = shape;
  const per = c * h * w;
  const out = new Float32Array(n * per);
  let i = 0;
  while (i < n) {
    const k = Math.min(limit.max, n - i);
    try {
      const whole = i === 0 && k === n;
      const part = whole ? await run(x, shape, sigma) : await run(x.slice(i * per, (i + k) * per), [k, c, h, w], sigma.slice(i, i + k));
      out.set(part, i * per);
      i += k;
    } catch (e) {
      if (k > 1 && isOutOfMemory(e instanceof Error ? e.message : String(e))) {
        limit.max = Math.ceil(k / 2);
        continue;
      }
      throw e;
    }
  }
  return out;
}
