/**
 * The sampling and tiling policy over a model's card: which plan and knobs a run samples with (its stored task plans,
 * --quality presets, explicit steps or ts), the tile side and overlap, and the model calls' batch. Pure: plain options
 * in (named as the CLI's flags are, camelCase), choices out; a bad option throws an OptionError naming it.
 */
import { MAX_SAMPLES, type ModelCard, type PlanTask, type TaskPlan } from '../runtime/card.js';
import { MAX_SEED } from '../rng.js';
import { flagOf, OptionError } from '../errors.js';
import type { StartKind } from '../sampler/sample.js';
import type { Stage } from '../sampler/pyramid.js';
import { evaluations, gridIndexOf, parseTs, planForSteps, planFromTs, type Plan } from '../sampler/schedule.js';

/**
 * What chooses the plan and the sampler's knobs (the CLI's --steps, --ts, --quality, --start, --eta, --samples,
 * --views, --refine-ts).
 */
export interface SamplingOptions {
  steps?: number;
  ts?: string;
  /** The finer levels' plan of coarse to fine, exactly (grid indices, as --ts). */
  refineTs?: string;
  quality?: Quality;
  start?: StartKind;
  eta?: number;
  samples?: number;
  views?: boolean;
}

/** What chooses the tiles (--tile, --overlap, --flat-below) and the model calls' batch (--batch). */
export interface TilingOptions {
  tile?: number;
  overlap?: number;
  batch?: number;
  /** Grey levels (0-255): a tile the model changed by less skips its later steps; 0 evaluates every tile. */
  flatBelow?: number;
}

/** --flat-below's default: a tile the model changed by under one grey level at a step skips the later ones. */
export const FLAT_BELOW = 1;

/**
 * The knobs' ranges, in the CLI's order of checking: seed, steps, batch, eta, samples (OptionError for the first bad
 * one).
 */
export function checkKnobs(o: SamplingOptions & TilingOptions & { seed?: number }): void {
  if (o.seed !== undefined && (!Number.isInteger(o.seed) || o.seed < 0 || o.seed > MAX_SEED)) {
    throw new OptionError('seed', (flag) => `Expected an integer between 0 and ${MAX_SEED} for ${flag} but received ${o.seed}`);
  }
  if (o.steps !== undefined && (!Number.isInteger(o.steps) || o.steps < 1)) {
    throw new OptionError('steps', (flag) => `Expected a positive integer for ${flag} but received ${o.steps}`);
  }
  if (o.batch !== undefined && (!Number.isInteger(o.batch) || o.batch < 1 || o.batch > 256)) {
    throw new OptionError('batch', (flag) => `Expected an integer between 1 and 256 for ${flag} but received ${o.batch}`);
  }
  if (o.eta !== undefined && !(typeof o.eta === 'number' && o.eta >= 0 && o.eta <= 1)) {
    throw new OptionError('eta', (flag) => `Expected a number between 0 and 1 for ${flag} but received ${o.eta}`);
  }
  if (o.samples !== undefined && !(Number.isInteger(o.samples) && o.samples >= 1 && o.samples <= MAX_SAMPLES)) {
    throw new OptionError('samples', (flag) => `Expected an integer between 1 and ${MAX_SAMPLES} for ${flag} but received ${o.samples}`);
  }
}

/** What the policy reads of a model: its card. */
type WithCard = { card: ModelCard };

/** Images per model call on a GPU when --batch is not given (on the CPU batching gains nothing: 1). */
export const GPU_BATCH = 8;
/** Tiles (or small images) per model call on the CPU: 4 measured ~20% faster per image than 1 with 2 threads. */
export const CPU_BATCH = 4;

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
  /** The plan of the finer levels of coarse-to-fine editing, from the carried-up coarser result (stagesOf). */
  refine: Plan;
}

/**
 * Noise levels of the refinement steps of coarse to fine (ALGORITHMS.md section 5), on the model's grid, for a task
 * whose model stores no refinement of its own (cm.task_plans' "refine").
 */
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
 * The finer levels of coarse to fine run --refine-ts exactly; else the model's stored refinement for the task, else
 * steps at sigma 0.4 and 0.1; either way never noisier than the plan's first level (a plan search that found the
 * model best used at sigma 0.003 is not overruled at sigma 0.4 one level up).
 * `own` makes the plan for tasks that start part-way by nature (stroke, denoise), given K and the stored default;
 * `minSamples` is the fewest samples the task's own combination of samples needs (colorize), with a stored task plan
 * and no --samples.
 */
export function chooseSampling(
  args: SamplingOptions,
  file: WithCard,
  task: PlanTask,
  defaultSteps: number,
  own?: (k: number, stored: TaskPlan | undefined) => Plan,
  minSamples = 1,
): Sampling {
  const { grid, plans } = file.card;
  if (args.quality !== undefined && (args.steps !== undefined || args.ts !== undefined)) {
    const other = flagOf(args.ts !== undefined ? 'ts' : 'steps');
    throw new OptionError('quality', (flag) => `${flag} picks one of the model's stored plans: give it, or ${other}, not both`);
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
  return {
    plan,
    start: args.start ?? base.start,
    eta: args.eta ?? base.eta,
    samples: args.samples ?? (entry ? Math.max(base.samples, minSamples) : base.samples),
    views: args.views ?? (base as Partial<TaskPlan>).views ?? false,
    quality: args.steps !== undefined || args.ts !== undefined ? null : (args.quality ?? 'default'),
    refine: refinePlan(args, file, task, plan),
  };
}

/**
 * What the sampler runs for a run: the task's plan and knobs (the coarsest level's, or the only level's), and the
 * finer levels' refinement (from the carried-up estimate, no fresh noise, one sample).
 */
export function stagesOf(s: Sampling): { first: Stage; refine: Stage } {
  return {
    first: { sigmas: s.plan.sigmas, start: s.start, eta: s.eta, samples: s.samples, views: s.views },
    refine: { sigmas: s.refine.sigmas, start: 'estimate', eta: 0, samples: 1 },
  };
}

/** The plan of the finer levels of coarse to fine (see chooseSampling). */
function refinePlan(args: Pick<SamplingOptions, 'refineTs'>, file: WithCard, task: PlanTask, plan: Plan): Plan {
  const { grid } = file.card;
  if (args.refineTs !== undefined) return parseTs(grid, args.refineTs, 'refineTs');
  const floor = plan.ts?.[0] ?? 0;
  const stored = file.card.taskRefine?.[task];
  const levels = stored ? stored.slice(0, -1) : REFINE_SIGMAS.map((s) => Math.round(gridIndexOf(grid, s)));
  const ts = [...new Set(levels.map((t) => Math.min(grid.size - 2, Math.max(floor, t))))];
  return planFromTs(grid, [...ts, grid.size - 1], 'the refinement plan');
}

/**
 * The plan of --quality fast or best for a task: the model's stored one; else fast = its stored plan of the fewest
 * evaluations, with one sample, and best = its default with views on; without stored plans at all, fast is one
 * evaluation and best the default number, both with the paper's knobs (best with views).
 */
export function presetPlan(file: WithCard, task: PlanTask, quality: 'fast' | 'best', defaultK: number): { k: number; plan?: TaskPlan } {
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
function fullyConvolutional(file: WithCard): boolean {
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
export function defaultTile(file: WithCard): number {
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
export function chooseTiling(args: TilingOptions, file: WithCard): { tile: number; overlap: number; maxTile: number; settle: number } {
  const tile = args.tile ?? defaultTile(file);
  if (!Number.isInteger(tile) || tile < 8 || tile > 4096 || tile % 8 !== 0) {
    throw new OptionError('tile', (flag) => `Expected a multiple of 8 between 8 and 4096 for ${flag} but received ${args.tile}`);
  }
  const overlap = args.overlap ?? defaultOverlap(tile);
  if (!Number.isInteger(overlap) || overlap < 0 || 2 * overlap >= tile) {
    throw new OptionError('overlap', (flag) => `Expected an integer between 0 and ${Math.ceil(tile / 2) - 1} for ${flag} (tiles of ${tile}) but received ${args.overlap}`);
  }
  const maxTile = args.tile === undefined && fullyConvolutional(file) ? tile + 8 * Math.floor(tile / 16) : tile;
  const flat = args.flatBelow ?? FLAT_BELOW;
  if (!(typeof flat === 'number' && flat >= 0 && flat <= 32)) {
    throw new OptionError('flatBelow', (flag) => `Expected a number of grey levels between 0 and 32 for ${flag} but received ${args.flatBelow}`);
  }
  // Grey levels of 0-255 in the model's [-1, 1] units.
  return { tile, overlap, maxTile, settle: (2 * flat) / 255 };
}

/**
 * Tiles or small images per model call: --batch, else the device's default. On the CPU by default, tiles fitted
 * larger than `tile` come fewer to a call, as many as hold CPU_BATCH tiles of `tile` pixels: measured on a
 * 2048x2048 superres (tiles of 168), 2 per call took 81 s against 91 s for 4 (medians of 2, same run).
 */
export function perCall(args: TilingOptions, device: string, tile: number): { batch: number; callPixels?: number } {
  if (args.batch !== undefined) return { batch: args.batch };
  return device === 'cpu' ? { batch: CPU_BATCH, callPixels: CPU_BATCH * tile * tile } : { batch: GPU_BATCH };
}

/** The plan from --ts or --steps (or the command's default number of evaluations), as the model's cm.plans say. */
export function choosePlan(args: SamplingOptions, file: WithCard, defaultSteps: number): Plan {
  const { grid, plans } = file.card;
  if (args.ts !== undefined) return parseTs(grid, args.ts);
  return planForSteps(grid, args.steps ?? defaultSteps, plans);
}

/**
 * The record fields that say how a run sampled; with `refine` (inpaint, whose big holes go coarse to fine) also the
 * finer levels' plan.
 */
export function samplingRecord(
  s: Sampling,
  o: { refine?: boolean } = {},
): { quality: Quality | null; evaluations: number; ts: number[] | null; start: StartKind; eta: number; samples: number; views: boolean; refine?: number[] } {
  const record = { quality: s.quality, evaluations: evaluations(s.plan), ts: s.plan.ts ?? null, start: s.start, eta: s.eta, samples: s.samples, views: s.views };
  return o.refine ? { ...record, refine: s.refine.ts ?? [] } : record;
}
