/**
 * What every editing command shares: its flags, and turning them into a model, a plan, a seed and a reporter.
 */
import { randomInt } from 'node:crypto';
import type { Argv } from 'yargs';
import { UsageError, ModelError } from '../errors.js';
import { MAX_SEED } from '../rng.js';
import { FORMATS, type ImageFormat } from '../io/image.js';
import { DEVICES, readModelFile, type DeviceChoice, type ModelFile } from '../runtime/model.js';
import { gpuIdProblem } from '../runtime/device.js';
import { resolveModel } from '../runtime/registry.js';
import { parseTs, planForSteps, type Plan } from '../sampler/schedule.js';

/** Stands for a "-" argument while yargs parses (see cli.ts); `stdio` turns it back into "-". */
export const DASH = '\u0000-';
export const stdio = (v: string): string => (v === DASH ? '-' : v);

/** Images per model call on a GPU when --batch is not given (on the CPU batching gains nothing: 1). */
export const GPU_BATCH = 8;

export interface InputArgs {
  inputs: string[];
  recursive: boolean;
  maxPixels?: number;
  keepMetadata: boolean;
  shard?: string;
}

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
      describe: 'Refuse images with more pixels than this (default: sharp\'s limit, 268402689)',
      requiresArg: true,
    })
    .option('keep-metadata', { type: 'boolean', default: false, describe: 'Copy EXIF, ICC profile and XMP from each input to its output' })
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
  steps?: number;
  ts?: string;
  seed?: number;
  class?: number;
  output?: string;
  outDir?: string;
  name?: string;
  format?: ImageFormat;
  force: boolean;
  skipExisting: boolean;
  /** Images per model call; undefined: the device's default (GPU_BATCH on a GPU, 1 on the CPU). */
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
    .option('force', { type: 'boolean', default: false, describe: 'Overwrite existing output files' })
    .option('skip-existing', { type: 'boolean', default: false, describe: 'Skip inputs whose output exists (resume a batch)' })
    .option('batch', { type: 'number', describe: `Images per model call (default 1 on the CPU, ${GPU_BATCH} on a GPU)`, requiresArg: true })
    .option('model', { alias: 'm', type: 'string', describe: 'Model file or installed model name (see: cm models)', requiresArg: true })
    .option('device', { choices: DEVICES, default: 'auto' as DeviceChoice, describe: 'Execution provider (auto: cuda, then cpu; webgpu only when asked)' })
    .option('gpu-id', { type: 'number', requiresArg: true, describe: 'CUDA device number (default 0)' })
    .option('threads', { type: 'number', default: 0, describe: 'CPU threads for the model (0: onnxruntime default)' })
    .option('steps', { type: 'number', describe: `Network evaluations (default ${defaultSteps}; the model's plan for that count)` })
    .option('ts', { type: 'string', describe: 'Exact plan: grid indices, e.g. 0,22,39 (two evaluations)', requiresArg: true })
    .option('class', { type: 'number', requiresArg: true, describe: 'Class index for class-conditional models (see: cm models info)' })
    .option('seed', { type: 'number', describe: 'Random seed (same seed, same device: identical output)' })
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress or warnings on stderr' })
    .option('json', { type: 'boolean', default: false, describe: 'One JSON record per input (or output) on stdout' })
    .option('progress', { choices: ['json'] as const, describe: 'json: one JSON line per step and per file on stderr' })
    .conflicts('steps', 'ts')
    .conflicts('output', 'out-dir')
    .conflicts('output', 'name') as unknown as Argv<T & CommonArgs>;
}

export function checkCommon(args: CommonArgs): void {
  if (!Number.isInteger(args.threads) || args.threads < 0) {
    throw new UsageError(`Expected a whole number for --threads but received ${args.threads}`);
  }
  if (args.seed !== undefined && (!Number.isInteger(args.seed) || args.seed < 0 || args.seed > MAX_SEED)) {
    throw new UsageError(`Expected an integer between 0 and ${MAX_SEED} for --seed but received ${args.seed}`);
  }
  if (args.steps !== undefined && (!Number.isInteger(args.steps) || args.steps < 1)) {
    throw new UsageError(`Expected a positive integer for --steps but received ${args.steps}`);
  }
  if (args.batch !== undefined && (!Number.isInteger(args.batch) || args.batch < 1 || args.batch > 256)) {
    throw new UsageError(`Expected an integer between 1 and 256 for --batch but received ${args.batch}`);
  }
  const gpu = gpuIdProblem(args.device, args.gpuId);
  if (gpu !== undefined) throw new UsageError(gpu);
  if (args.force && args.skipExisting) throw new UsageError('--force and --skip-existing contradict each other: pick one');
  if (args.json && args.output === '-') {
    throw new UsageError('--json and -o - both want stdout: write the image to a file, or drop --json');
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

/** The plan from --ts or --steps (or the command's default number of evaluations). */
export function choosePlan(args: CommonArgs, file: ModelFile, defaultSteps: number): Plan {
  const { grid, plans } = file.card;
  if (args.ts !== undefined) return parseTs(grid, args.ts);
  return planForSteps(grid, args.steps ?? defaultSteps, plans);
}
