/**
 * What every editing command shares: its flags, and turning them into a model, a plan, a seed and a reporter.
 */
import { randomInt } from 'node:crypto';
import type { Argv } from 'yargs';
import { UsageError, ModelError } from '../errors.js';
import { MAX_SEED } from '../rng.js';
import { DEVICES, readModelFile, type DeviceChoice, type ModelFile } from '../runtime/model.js';
import { resolveModel } from '../runtime/registry.js';
import { parseTs, planForSteps, type Plan } from '../sampler/schedule.js';

/** Stands for a "-" argument while yargs parses (see cli.ts); `stdio` turns it back into "-". */
export const DASH = '\u0000-';
export const stdio = (v: string): string => (v === DASH ? '-' : v);

/** The input image positional of the image commands. */
export function inputPositional<T>(y: Argv<T>): Argv<T & { input: string }> {
  return y.positional('input', { type: 'string', demandOption: true, coerce: stdio, describe: 'Image file, or - for stdin' }) as never;
}

export interface CommonArgs {
  model?: string;
  device: DeviceChoice;
  threads: number;
  steps?: number;
  ts?: string;
  seed?: number;
  output?: string;
  force: boolean;
  quiet: boolean;
  json: boolean;
}

/** The flags of every command that runs the model. */
export function withCommonOptions<T>(y: Argv<T>, defaultSteps: number): Argv<T & CommonArgs> {
  return y
    .option('output', { alias: 'o', type: 'string', coerce: stdio, describe: 'Output file (.png, .jpg, .webp), or - for stdout', requiresArg: true })
    .option('force', { type: 'boolean', default: false, describe: 'Overwrite an existing output file' })
    .option('model', { alias: 'm', type: 'string', describe: 'Model file or installed model name (see: cm models)', requiresArg: true })
    .option('device', { choices: DEVICES, default: 'auto' as DeviceChoice, describe: 'Execution provider (auto: cuda, then cpu)' })
    .option('threads', { type: 'number', default: 0, describe: 'CPU threads for the model (0: onnxruntime default)' })
    .option('steps', { type: 'number', describe: `Network evaluations (default ${defaultSteps}; the model's plan for that count)` })
    .option('ts', { type: 'string', describe: 'Exact plan: grid indices, e.g. 0,22,39 (two evaluations)', requiresArg: true })
    .option('seed', { type: 'number', describe: 'Random seed (same seed, same device: identical output)' })
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress or warnings on stderr' })
    .option('json', { type: 'boolean', default: false, describe: 'One JSON record per output on stdout' })
    .conflicts('steps', 'ts') as unknown as Argv<T & CommonArgs>;
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
