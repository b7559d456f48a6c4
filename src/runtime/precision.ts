/**
 * Which precision runs a model on the CPU: its float file, or an int8 variant beside it (`NAME-int8.onnx`, made by
 * training/cmtrain/quantize.py). Pure: the caller reads /proc/cpuinfo and the variant's metadata.
 *
 * onnxruntime's int8 convolutions (QLinearConv, u8s8) pay on CPUs with VNNI (AVX512-VNNI, AVX-VNNI) or AMX; elsewhere
 * (plain AVX2) the u8s8 kernels and the quantize/dequantize nodes around them may lose to float, so `auto` picks int8
 * only where one of those flags is present, and only a variant that is made from this very float file and whose
 * recorded difference from it is within INT8_TOLERANCE.
 */

export const PRECISIONS = ['auto', 'int8', 'float'] as const;
export type PrecisionChoice = (typeof PRECISIONS)[number];

/**
 * The most an int8 variant may differ from its float model on the fixed check inputs (cm.int8_check: validation crops
 * with noise at sigma 0.01 to 80), in grey levels (0-255) of the clamped output: the largest difference of any pixel,
 * and the mean. The shipped default's variant: max 24 (at sigma 80, where the output is a blur), mean 0.72.
 */
export const INT8_TOLERANCE = { max: 32, mean: 1.0 };

/** The CPU flags that make int8 pay, as /proc/cpuinfo names them. */
export const INT8_CPU_FLAGS = ['amx_int8', 'avx512_vnni', 'avx_vnni'] as const;

/** The int8 flags of the first processor in a /proc/cpuinfo text ([] when none or unknown). */
export function int8CpuFlags(cpuinfo: string): string[] {
  const line = cpuinfo.split('\n').find((l) => /^flags\s*:/.test(l));
  if (!line) return [];
  const flags = new Set(line.slice(line.indexOf(':') + 1).trim().split(/\s+/));
  return INT8_CPU_FLAGS.filter((f) => flags.has(f));
}

/** What is known of an int8 variant found beside a model. */
export interface Int8Variant {
  path: string;
  /** cm.precision of the variant file. */
  precision?: string;
  /** cm.quantized_from matches the SHA-256 of the float file beside it. */
  matchesSource: boolean;
  /** cm.int8_check: its measured difference from the float model (grey levels), if recorded and readable. */
  check?: { max: number; mean: number };
}

export interface PrecisionDecision {
  precision: 'int8' | 'float';
  /** The int8 file to run on the CPU (precision int8 only). */
  path?: string;
  /** Why, in a few words (for --debug). */
  reason: string;
  /** Set when `int8` was asked for explicitly and cannot be honoured (the caller refuses with this). */
  error?: string;
}

/** Why a variant cannot be used, or undefined when it can. */
export function variantProblem(v: Int8Variant, tolerance = INT8_TOLERANCE): string | undefined {
  if (v.precision !== 'int8') return `${v.path} is not an int8 variant (cm.precision ${v.precision ?? 'missing'})`;
  if (!v.matchesSource) return `${v.path} was made from another version of the float model (cm.quantized_from differs)`;
  if (!v.check) return `${v.path} records no check against the float model (cm.int8_check)`;
  if (!(v.check.max <= tolerance.max && v.check.mean <= tolerance.mean)) {
    return `${v.path} differs from the float model by up to ${v.check.max} grey levels (mean ${v.check.mean}), over the tolerance (${tolerance.max}, mean ${tolerance.mean})`;
  }
  return undefined;
}

/**
 * The precision for a model on the CPU: `float` always float; `int8` the variant when usable (else an error);
 * `auto` the variant when usable and the CPU has an int8 flag, else float. On a GPU the caller runs the float file.
 */
export function choosePrecision(choice: PrecisionChoice, variant: Int8Variant | undefined, cpuFlags: string[], tolerance = INT8_TOLERANCE): PrecisionDecision {
  if (choice === 'float') return { precision: 'float', reason: '--precision float' };
  const problem = variant ? variantProblem(variant, tolerance) : 'no int8 variant beside the model';
  if (choice === 'int8') {
    return problem ? { precision: 'float', reason: problem, error: problem } : { precision: 'int8', path: variant!.path, reason: '--precision int8' };
  }
  if (problem) return { precision: 'float', reason: problem };
  if (cpuFlags.length === 0) return { precision: 'float', reason: 'this CPU has no VNNI or AMX (int8 may be slower than float here)' };
  return { precision: 'int8', path: variant!.path, reason: `this CPU has ${cpuFlags.join(', ')}` };
}

/** The int8 variant's file name beside a model file: `x/NAME.onnx` -> `x/NAME-int8.onnx`. */
export function int8PathOf(path: string): string {
  return path.replace(/(\.onnx)?$/i, '-int8.onnx');
}
