/**
 * What every editing command shares: its flags, and turning them into a model, a plan, a seed and a reporter.
 */
import { randomInt } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { Argv } from 'yargs';
import { UsageError, ModelError } from '../errors.js';
import { MAX_SEED } from '../rng.js';
import { FORMATS, type ImageFormat } from '../io/image.js';
import { DEFAULT_MAX_PIXELS, MAX_PIXELS_CEILING } from '../io/read.js';
import { DEVICES, readModelFile, type DeviceChoice, type ModelFile } from '../runtime/model.js';
import { resolveModel } from '../runtime/registry.js';
import { parseTs, planForSteps, type Plan } from '../sampler/schedule.js';

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
  keepMetadata: boolean;
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
      describe: `Refuse images with more pixels than this, before decoding (default ${DEFAULT_MAX_PIXELS}); it also caps the bytes read from one input at 4 per pixel + 16 MiB`,
      requiresArg: true,
    })
    .option('keep-metadata', { type: 'boolean', default: false, describe: 'Copy EXIF, ICC profile and XMP from each input to its output' }) as never;
}

export interface CommonArgs {
  model?: string;
  device: DeviceChoice;
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
  batch: number;
  quiet: boolean;
  json: boolean;
  progress?: 'json';
  /** The global --debug (cli.ts): stack traces, and onnxruntime's own log. */
  debug?: boolean;
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
    .option('batch', { type: 'number', default: 1, describe: 'Images per model call' })
    .option('model', { alias: 'm', type: 'string', describe: 'Model file or installed model name (see: cm models)', requiresArg: true })
    .option('device', { choices: DEVICES, default: 'auto' as DeviceChoice, describe: 'Execution provider (auto: cuda, then cpu)' })
    .option('threads', { type: 'number', default: 0, describe: 'CPU threads for the model (0: onnxruntime default; at most 4 per core)' })
    .option('steps', { type: 'number', describe: `Network evaluations (default ${defaultSteps}; the model's plan for that count)` })
    .option('ts', { type: 'string', describe: 'Exact plan: grid indices, e.g. 0,22,39 (two evaluations)', requiresArg: true })
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
  if (args.seed !== undefined && (!Number.isInteger(args.seed) || args.seed < 0 || args.seed > MAX_SEED)) {
    throw new UsageError(`Expected an integer between 0 and ${MAX_SEED} for --seed but received ${args.seed}`);
  }
  if (args.steps !== undefined && (!Number.isInteger(args.steps) || args.steps < 1)) {
    throw new UsageError(`Expected a positive integer for --steps but received ${args.steps}`);
  }
  if (!Number.isInteger(args.batch) || args.batch < 1 || args.batch > 256) {
    throw new UsageError(`Expected an integer between 1 and 256 for --batch but received ${args.batch}`);
  }
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

/** The plan from --ts or --steps (or the command's default number of evaluations). */
export function choosePlan(args: CommonArgs, file: ModelFile, defaultSteps: number): Plan {
  const { grid, plans } = file.card;
  if (args.ts !== undefined) return parseTs(grid, args.ts);
  return planForSteps(grid, args.steps ?? defaultSteps, plans);
}
