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
import { MAX_SAMPLES, type PlanTask, type TaskPlan } from '../runtime/card.js';
import { gpuIdProblem } from '../runtime/device.js';
import { PRECISIONS, type PrecisionChoice } from '../runtime/precision.js';
import { resolveModel } from '../runtime/registry.js';
import { START_KINDS, type StartKind } from '../sampler/sample.js';
import type { Stage } from '../sampler/pyramid.js';
import { evaluations, gridIndexOf, parseTs, planForSteps, planFromTs, type Plan } from '../sampler/schedule.js';

/**
 * Marks an argument that yargs must take as it is (see cli.ts): a lone "-" (which yargs would turn into ""), and
 * every argument after "--". `stdio` takes the mark off again.
 */
export const VERBATIM = '\u0000';
export const DASH = `${VERBATIM}-`;
export const stdio = (v: string): string => (typeof v === 'string' && v.startsWith(VERBATIM) ? v.slice(1) : v);

/** Images per model call on a GPU when --batch is not given (on the CPU batching gains nothing: 1). */
export const GPU_BATCH = 8;
/** Tiles (or small images) per model call on the CPU: 4 measured ~20% faster per image than 1 with 2 threads. */
export const CPU_BATCH = 4;

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
  tile?: number;
  overlap?: number;
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
    .option('threads', { type: 'number', default: 0, describe: 'CPU threads for the model (0: onnxruntime default; at most 4 per core)' })
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
  if (args.seed !== undefined && (!Number.isInteger(args.seed) || args.seed < 0 || args.seed > MAX_SEED)) {
    throw new UsageError(`Expected an integer between 0 and ${MAX_SEED} for --seed but received ${args.seed}`);
  }
  if (args.steps !== undefined && (!Number.isInteger(args.steps) || args.steps < 1)) {
    throw new UsageError(`Expected a positive integer for --steps but received ${args.steps}`);
  }
  if (args.batch !== undefined && (!Number.isInteger(args.batch) || args.batch < 1 || args.batch > 256)) {
    throw new UsageError(`Expected an integer between 1 and 256 for --batch but received ${args.batch}`);
  }
  if (args.eta !== undefined && !(typeof args.eta === 'number' && args.eta >= 0 && args.eta <= 1)) {
    throw new UsageError(`Expected a number between 0 and 1 for --eta but received ${args.eta}`);
  }
  const samples = (args as Partial<InputArgs>).samples;
  if (samples !== undefined && !(Number.isInteger(samples) && samples >= 1 && samples <= MAX_SAMPLES)) {
    throw new UsageError(`Expected an integer between 1 and ${MAX_SAMPLES} for --samples but received ${samples}`);
  }
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

export const QUALITIES = ['fast', 'default', 'best'] as const;
export type Quality = (typeof QUALITIES)[number];

/** How one run samples: the plan and the sampler's three knobs (ALGORITHMS.md 4b). */
export interface Sampling {
  plan: Plan;
  start: StartKind;
  eta: number;
  samples: number;
  /** Each evaluation on another dihedral view (sample.ts). */
  views: boolean;
  /** The --quality preset the plan came from (null: --steps or --ts chose it). */
  quality: Quality | null;
  /** The finer levels of coarse-to-fine editing: from the upsampled coarser result, two low-sigma steps. */
  refine: Stage;
}

/** Noise levels of the refinement steps of coarse to fine (ALGORITHMS.md section 5), on the model's grid. */
const REFINE_SIGMAS = [0.4, 0.1];

/** The paper's sampler: start from the known data, fresh noise at every step, one sample. */
export const PAPER: Pick<Sampling, 'start' | 'eta' | 'samples'> = { start: 'known', eta: 1, samples: 1 };

/** The most evaluations a stored task default may make the default (longer plans stay available with --steps). */
const MAX_DEFAULT_STEPS = 8;

/**
 * The plan and knobs of a run, in this order:
 * - --ts: exactly that plan; it starts from the estimate when it starts part-way (ts[0] > 0), else from the known
 *   data; eta 1, one sample;
 * - --steps K (default: the task's "default" in the model's cm.task_plans, else the most evaluations up to 8 it stores
 *   for the task, else the command's own default): the model's task plan for K with its start, eta and samples;
 *   without one, the model's cm.plans entry for K (from sigma_max) with the paper's knobs;
 * - --quality fast|best instead: the model's stored "fast" / "best" plan for the task; without one, fast is its
 *   stored plan of the fewest evaluations with one sample, and best its default with views on; --quality default is
 *   the above;
 * - --start, --eta, --samples and --views override the knobs either way.
 * `own` makes the plan for tasks that start part-way by nature (stroke, denoise), given K and the stored default;
 * `minSamples` is the fewest samples the task's own combination of samples needs (colorize), with a stored task plan
 * and no --samples.
 */
export function chooseSampling(
  args: CommonArgs & Partial<InputArgs>,
  file: ModelFile,
  task: PlanTask,
  defaultSteps: number,
  own?: (k: number, stored: TaskPlan | undefined) => Plan,
  minSamples = 1,
): Sampling {
  const { grid, plans } = file.card;
  if (args.quality !== undefined && (args.steps !== undefined || args.ts !== undefined)) {
    throw new UsageError(`--quality picks one of the model's stored plans: give it, or --${args.ts !== undefined ? 'ts' : 'steps'}, not both`);
  }
  const stored = file.card.taskPlans[task] ?? {};
  const storedK = Object.keys(stored).map(Number).filter((k) => k <= MAX_DEFAULT_STEPS);
  const defaultK = file.card.taskDefaults[task] ?? (storedK.length ? Math.max(...storedK) : defaultSteps);
  const preset = args.quality === 'fast' || args.quality === 'best' ? presetPlan(file, task, args.quality, defaultK) : undefined;
  const k = preset?.k ?? args.steps ?? defaultK;
  const entry: TaskPlan | undefined = preset?.plan ?? (args.ts === undefined ? stored[String(k)] : undefined);
  let plan: Plan;
  if (own) plan = own(k, entry);
  else if (args.ts !== undefined) plan = parseTs(grid, args.ts);
  else if (entry?.ts) plan = planFromTs(grid, entry.ts, `the model's ${task} plan for ${k} evaluations`);
  else plan = planForSteps(grid, k, plans);
  const base = args.ts !== undefined ? { ...PAPER, start: (plan.ts?.[0] ?? 0) > 0 ? ('estimate' as const) : ('known' as const) } : (entry ?? PAPER);
  // The finer levels never start noisier than the task's own plan (a plan search that found the model best used at
  // sigma 0.003 is not overruled at sigma 0.4 one level up).
  const floor = plan.ts?.[0] ?? 0;
  const refineTs = [...new Set(REFINE_SIGMAS.map((s) => Math.min(grid.size - 2, Math.max(floor, Math.round(gridIndexOf(grid, s))))))];
  return {
    plan,
    start: args.start ?? base.start,
    eta: args.eta ?? base.eta,
    samples: args.samples ?? (entry ? Math.max(base.samples, minSamples) : base.samples),
    views: args.views ?? (base as Partial<TaskPlan>).views ?? false,
    quality: args.steps !== undefined || args.ts !== undefined ? null : (args.quality ?? 'default'),
    refine: { sigmas: planFromTs(grid, [...refineTs, grid.size - 1], 'the refinement plan').sigmas, start: 'estimate', eta: 0, samples: 1 },
  };
}

/**
 * The plan of --quality fast or best for a task: the model's stored one; else fast = its stored plan of the fewest
 * evaluations, with one sample, and best = its default with views on; without stored plans at all, fast is one
 * evaluation and best the default number, both with the paper's knobs (best with views).
 */
export function presetPlan(file: ModelFile, task: PlanTask, quality: 'fast' | 'best', defaultK: number): { k: number; plan?: TaskPlan } {
  const own = file.card.taskPresets[task]?.[quality];
  if (own) return own;
  const stored = Object.entries(file.card.taskPlans[task] ?? {}).map(([k, plan]) => ({ k: Number(k), plan }));
  if (quality === 'fast') {
    if (stored.length === 0) return { k: 1 };
    const fewest = stored.reduce((a, b) => (b.k < a.k ? b : a));
    return { k: fewest.k, plan: { ...fewest.plan, samples: 1, views: false } };
  }
  const def = stored.find((e) => e.k === defaultK);
  return { k: defaultK, plan: { ...(def?.plan ?? PAPER), views: true } };
}

/** Whether the model is one of cm's own UNets (cm.architecture says so): fully convolutional, any multiple of 8. */
function fullyConvolutional(file: ModelFile): boolean {
  try {
    return (JSON.parse(file.card.metadata['cm.architecture'] ?? 'null') as { type?: string } | null)?.type === 'unet';
  } catch {
    return false;
  }
}

/**
 * Tiles of twice the model's resolution for our own UNets: measured on Kodak, 128-pixel tiles denoise and upscale
 * at least as well as 64-pixel ones (+0.02 dB) in less time. Other models (OpenAI's) get tiles of their own size.
 */
export function defaultTile(file: ModelFile): number {
  return fullyConvolutional(file) ? 2 * file.card.resolution : file.card.resolution;
}

/**
 * 1/16 of a tile from 128 pixels up (8 for 128), a quarter of smaller tiles (16 for 64). Measured on a smooth image
 * with the shipped model, denoised: the gradient across tile borders is within 8% of the gradient inside tiles with
 * 128/8 and 64/16 (64/8: 11%; no overlap: 5x).
 */
export function defaultOverlap(tile: number): number {
  return tile >= 128 ? Math.floor(tile / 16) : Math.floor(tile / 4);
}

/**
 * Tile side, overlap (--tile, --overlap) and the largest side the tiles may be fitted to, for images larger than a
 * tile. Without --tile, a fully convolutional model's tiles are fitted to each image, from the default side up to
 * 1.5 times it (a 2048x2048 image: 13x13 tiles of 168 pixels, 1.14x its pixels, where tiles of 128 would take
 * 18x18, 1.27x); with --tile, or for a model of one size, tiles have exactly that side.
 */
export function chooseTiling(args: CommonArgs & Partial<InputArgs>, file: ModelFile): { tile: number; overlap: number; maxTile: number } {
  const tile = args.tile ?? defaultTile(file);
  if (!Number.isInteger(tile) || tile < 8 || tile > 4096 || tile % 8 !== 0) {
    throw new UsageError(`Expected a multiple of 8 between 8 and 4096 for --tile but received ${args.tile}`);
  }
  const overlap = args.overlap ?? defaultOverlap(tile);
  if (!Number.isInteger(overlap) || overlap < 0 || 2 * overlap >= tile) {
    throw new UsageError(`Expected an integer between 0 and ${Math.ceil(tile / 2) - 1} for --overlap (tiles of ${tile}) but received ${args.overlap}`);
  }
  const maxTile = args.tile === undefined && fullyConvolutional(file) ? tile + 8 * Math.floor(tile / 16) : tile;
  return { tile, overlap, maxTile };
}

/**
 * Tiles or small images per model call: --batch, else the device's default. On the CPU by default, tiles fitted
 * larger than `tile` come fewer to a call, as many as hold CPU_BATCH tiles of `tile` pixels: measured on a
 * 2048x2048 superres (tiles of 168), 2 per call took 81 s against 91 s for 4 (medians of 2, same run).
 */
export function perCall(args: CommonArgs, device: string, tile: number): { batch: number; callPixels?: number } {
  if (args.batch !== undefined) return { batch: args.batch };
  return device === 'cpu' ? { batch: CPU_BATCH, callPixels: CPU_BATCH * tile * tile } : { batch: GPU_BATCH };
}

/** The plan from --ts or --steps (or the command's default number of evaluations), as the model's cm.plans say. */
export function choosePlan(args: CommonArgs, file: ModelFile, defaultSteps: number): Plan {
  const { grid, plans } = file.card;
  if (args.ts !== undefined) return parseTs(grid, args.ts);
  return planForSteps(grid, args.steps ?? defaultSteps, plans);
}

/** The record fields that say how a run sampled. */
export function samplingRecord(s: Sampling): { quality: Quality | null; evaluations: number; ts: number[] | null; start: StartKind; eta: number; samples: number; views: boolean } {
  return { quality: s.quality, evaluations: evaluations(s.plan), ts: s.plan.ts ?? null, start: s.start, eta: s.eta, samples: s.samples, views: s.views };
}
