/**
 * What every editing command shares: its flags, and turning them into a model, a plan, a seed and a reporter.
 */
import { randomInt } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { Argv } from 'yargs';
import { UsageError, ModelError } from '../errors.js';
import { MAX_SEED } from '../rng.js';
import { MAX_SAMPLES } from '../runtime/card.js';
import { FORMATS, type ImageFormat } from '../io/image.js';
import { DEFAULT_MAX_PIXELS, MAX_PIXELS_CEILING } from '../io/read.js';
import { DEVICES, readModelFile, type DeviceChoice, type ModelFile } from '../runtime/model.js';
import { gpuIdProblem } from '../runtime/device.js';
import { PRECISIONS, type PrecisionChoice } from '../runtime/precision.js';
import { resolveModel } from '../runtime/registry.js';
import { START_KINDS, type StartKind } from '../sampler/sample.js';
import { checkKnobs, CPU_BATCH, GPU_BATCH, QUALITIES, type Quality } from '../pipeline/policy.js';

/**
 * Marks an argument that yargs must take as it is (see cli.ts): a lone "-" (which yargs would turn into ""), and
 * every argument after "--". `stdio` takes the mark off again.
 */
export const VERBATIM = '\u0000';
export const DASH = `${VERBATIM}-`;
export const stdio = (v: string): string => (typeof v === 'string' && v.startsWith(VERBATIM) ? v.slice(1) : v);

export interface InputArgs {
  inputs: string[];
  recursive: boolean;
  maxPixels?: number;
  /** --max-memory: "4G", "512M" (see memory.ts). */
  maxMemory?: string;
  keepMetadata: boolean;
  start?: StartKind;
  samples?: number;
  /** --quality: which of the model's stored plans (fast, the default, best). */
  quality?: Quality;
  /** --views / --no-views: each evaluation on another mirrored or turned view (default: the plan's). */
  views?: boolean;
  /** --refine-ts (inpaint): the finer levels' plan of coarse to fine. */
  refineTs?: string;
  tile?: number;
  overlap?: number;
  /** --flat-below: grey levels under which a tile's change settles it (0: every tile at every step). */
  flatBelow?: number;
  shard?: string;
}

// The sampling and tiling policy lives in the pipeline (pure); the commands read it from here as before.
export {
  CPU_BATCH,
  GPU_BATCH,
  PAPER,
  checkKnobs,
  QUALITIES,
  choosePlan,
  chooseSampling,
  chooseTiling,
  defaultOverlap,
  defaultTile,
  perCall,
  presetPlan,
  samplingRecord,
  stagesOf,
  type Quality,
  type Sampling,
} from '../pipeline/policy.js';

/** The input images of the image commands: files, folders, or - for stdin. */
export function withInputs<T>(y: Argv<T>): Argv<T & InputArgs> {
  return y
    .positional('inputs', {
      type: 'string',
      array: true,
      demandOption: true,
      coerce: (v: string[]) => v.map(stdio),
      describe: 'Image files, folders, or - for stdin',
    })
    .option('recursive', { alias: 'r', type: 'boolean', default: false, describe: 'Descend into sub-folders of folder inputs' })
    .option('max-pixels', {
      type: 'number',
      describe: `Refuse images with more pixels than this, before decoding (default ${DEFAULT_MAX_PIXELS}); it also caps the bytes read from one input at 4 per pixel + 16 MiB`,
      requiresArg: true,
    })
    .option('max-memory', {
      type: 'string',
      requiresArg: true,
      describe: "Memory an edit may take, e.g. 4G or 512M (default: the machine's, or its cgroup's limit); an image whose edit would need more is refused before decoding",
    })
    .option('keep-metadata', { type: 'boolean', default: false, describe: 'Copy EXIF, ICC profile and XMP from each input to its output' })
    .option('start', {
      choices: START_KINDS,
      describe: "Where sampling starts: estimate = the classical answer (Lanczos, harmonic fill, the gray image) noised to the plan's first level; known = the known data alone (the paper) (default: the model's task default)",
    })
    .option('tile', {
      type: 'number',
      requiresArg: true,
      describe: "Tile side in pixels for images larger than a tile (a multiple of 8; default: twice the model's resolution for cm's own fully convolutional models, fitted to each image up to 1.5 times that, else its resolution)",
    })
    .option('overlap', {
      type: 'number',
      requiresArg: true,
      describe: 'Pixels shared by neighbouring tiles (default: 1/16 of a tile of 128 or more, a quarter of smaller ones); the grid moves at every step',
    })
    .option('flat-below', {
      type: 'number',
      requiresArg: true,
      describe: 'Grey levels (0-32): a tile the model changed by less at a step keeps its value at the later, lower-noise steps instead of running the model (flat areas such as sky; plans without fresh noise between steps); 0 runs every tile at every step (default: 1)',
    })
    .option('samples', {
      type: 'number',
      requiresArg: true,
      describe: `Average this many independent samples (1-${MAX_SAMPLES}; colorize: combine them by their agreement): closer to the true image in PSNR, softer, K x the time (default: the model's task default, else 1; colorize: at least 8 with a task default)`,
    })
    .option('quality', {
      choices: QUALITIES,
      describe:
        "Which of the model's measured plans: fast (its cheapest, 1 evaluation), default, best (up to 16 evaluations, each on a mirrored or turned view); cm models info lists them (not with --steps or --ts)",
    })
    .option('views', {
      type: 'boolean',
      describe: 'Evaluate each step on another mirrored or turned copy of the image and turn the answer back, so that orientation-dependent errors average out (default: the plan\'s)',
    })
    .option('shard', {
      type: 'string',
      requiresArg: true,
      describe: 'Process only share I of N (0 <= I < N) of the inputs, chosen by a hash of each path: run N of these on N machines',
    }) as never;
}

export interface CommonArgs {
  model?: string;
  device: DeviceChoice;
  gpuId?: number;
  threads: number;
  /** --precision: the CPU's float file, its int8 variant, or auto (runtime/precision.ts). */
  precision?: PrecisionChoice;
  steps?: number;
  ts?: string;
  eta?: number;
  seed?: number;
  class?: number;
  output?: string;
  outDir?: string;
  name?: string;
  format?: ImageFormat;
  force: boolean;
  skipExisting: boolean;
  /** Tiles or small images per model call; undefined: the device's default (GPU_BATCH on a GPU, CPU_BATCH on the CPU). */
  batch?: number;
  quiet: boolean;
  /** The global --debug flag (stack traces; the inference worker's own stderr). */
  debug?: boolean;
  json: boolean;
  progress?: 'json';
}

/** The flags of every command that runs the model. */
export function withCommonOptions<T>(y: Argv<T>, defaultSteps: number): Argv<T & CommonArgs> {
  return y
    .option('output', { alias: 'o', type: 'string', coerce: stdio, describe: 'Output file (.png, .jpg, .webp), or - for stdout', requiresArg: true })
    .option('out-dir', { type: 'string', requiresArg: true, describe: 'Write outputs here (folder inputs are mirrored below it)' })
    .option('name', { type: 'string', requiresArg: true, describe: 'Output name template: {stem} {task} {scale} {seed} {i} {ext}' })
    .option('format', { choices: FORMATS, describe: 'Output format (default: from -o, else png)' })
    .option('force', { type: 'boolean', default: false, describe: 'Overwrite existing output files (never a device or pipe)' })
    .option('skip-existing', { type: 'boolean', default: false, describe: 'Skip inputs whose output exists (resume a batch)' })
    .option('batch', { type: 'number', requiresArg: true, describe: `Tiles, or images of at most one tile, per model call (default ${CPU_BATCH} on the CPU, fewer of tiles fitted larger than --tile: as many as hold ${CPU_BATCH} tiles' pixels; ${GPU_BATCH} on a GPU); results do not depend on it` })
    .option('model', { alias: 'm', type: 'string', describe: 'Model file or installed model name (see: cm models)', requiresArg: true })
    .option('device', { choices: DEVICES, default: 'auto' as DeviceChoice, describe: 'Execution provider (auto: cuda, then cpu; webgpu only when asked)' })
    .option('gpu-id', { type: 'number', requiresArg: true, describe: 'CUDA device number (default 0)' })
    .option('threads', { type: 'number', default: 0, describe: 'CPU threads for the model (0: onnxruntime default; at most 4 per core); with 2 or more, a second inference process shares them' })
    .option('precision', {
      choices: PRECISIONS,
      default: 'auto' as PrecisionChoice,
      describe: "On the CPU: the model's int8 variant (NAME-int8.onnx beside it) or its float file; auto: int8 where the CPU has VNNI or AMX and the variant is within tolerance (--debug says which)",
    })
    .option('steps', { type: 'number', describe: `Network evaluations: the model's plan for that count for this task (default: its task default with the most evaluations, else ${defaultSteps})` })
    .option('ts', { type: 'string', describe: 'Exact plan: grid indices, e.g. 0,22,39 (two evaluations)', requiresArg: true })
    .option('eta', {
      type: 'number',
      requiresArg: true,
      describe: "Share of fresh noise between steps, 0-1: 1 = the paper (sharper, more varied), 0 = none (closer to the input) (default: the model's task default, else 1)",
    })
    .option('class', { type: 'number', requiresArg: true, describe: 'Class index for class-conditional models (see: cm models info)' })
    .option('seed', { type: 'number', describe: 'Random seed (same seed, same device: identical output)' })
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress or warnings on stderr' })
    .option('json', { type: 'boolean', default: false, describe: 'One JSON record per input (or output) on stdout (not with the image on stdout)' })
    .option('progress', { choices: ['json'] as const, describe: 'json: every stderr line a JSON object (steps, files, warnings, errors, summary)' })
    .conflicts('steps', 'ts')
    .conflicts('output', 'out-dir')
    .conflicts('output', 'name') as unknown as Argv<T & CommonArgs>;
}

/** The most --threads: 4 per core (more only thrashes; 100000 would hang the machine creating them). */
export function maxThreads(): number {
  return 4 * availableParallelism();
}

export function checkCommon(args: CommonArgs): void {
  if (!Number.isInteger(args.threads) || args.threads < 0 || args.threads > maxThreads()) {
    throw new UsageError(
      `Expected an integer between 0 and ${maxThreads()} (4 per core) for --threads but received ${args.threads}`,
    );
  }
  checkKnobs({ ...args, samples: (args as Partial<InputArgs>).samples });
  const gpu = gpuIdProblem(args.device, args.gpuId);
  if (gpu !== undefined) throw new UsageError(gpu);
  if (args.force && args.skipExisting) throw new UsageError('--force and --skip-existing contradict each other: pick one');
  if (args.json && args.output === '-') {
    throw new UsageError('--json and -o - both want stdout: write the image to a file, or drop --json');
  }
}

/** A pixel-count flag (--max-pixels, --max-output-pixels): a whole number from 1 to MAX_PIXELS_CEILING. */
export function checkPixelFlag(flag: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isInteger(value) && value >= 1 && value <= MAX_PIXELS_CEILING)) {
    throw new UsageError(`Expected an integer between 1 and ${MAX_PIXELS_CEILING} for ${flag} but received ${value}`);
  }
}

export function chooseSeed(args: CommonArgs): number {
  return args.seed ?? randomInt(0, MAX_SEED);
}

/** The model file named by --model (or the default), read and checked. */
export async function openModel(args: CommonArgs): Promise<ModelFile> {
  const path = resolveModel(args.model);
  if (path === undefined) {
    throw new ModelError(
      args.model === undefined
        ? 'no default model installed (models/default.onnx or fixtures/tiny-random.onnx): pass --model PATH'
        : `${args.model}: no installed model of that name (see: cm models), and not a path`,
    );
  }
  return readModelFile(path);
}
