/**
 * The model contract, version 1 (ARCHITECTURE.md): the metadata a `cm` model carries, parsed and checked. Pure.
 */
import { ModelError } from '../errors.js';
import { START_KINDS, type StartKind } from '../sampler/sample.js';
import type { NoiseGrid } from '../sampler/schedule.js';
import { PLAN_TASKS, type PlanTask } from '../pipeline/registry.js';

/** The tasks a model may store defaults for in `cm.task_plans` (the task registry's). */
export { PLAN_TASKS, type PlanTask };

/** The most --samples a stored default may ask for. */
export const MAX_SAMPLES = 64;

/** One stored default: the plan (grid indices; denoise has none, it starts at the image's noise level) and knobs. */
export interface TaskPlan {
  ts?: number[];
  start: StartKind;
  eta: number;
  samples: number;
  /** Each evaluation on another mirrored or turned view of the image (sample.ts); default false. */
  views?: boolean;
}

/** The quality presets of `--quality` besides the default. */
export const PRESETS = ['fast', 'best'] as const;
export type Preset = (typeof PRESETS)[number];

/** A stored preset: a plan for `k` evaluations (per sample) and its knobs. */
export interface PresetPlan {
  k: number;
  plan: TaskPlan;
}

export interface ModelCard {
  name: string;
  resolution: number;
  channels: number;
  sigmaData: number;
  grid: NoiseGrid;
  /** Evaluations -> grid indices (the `ts` format), from `cm.plans`. */
  plans: Record<string, number[]>;
  /** Task -> evaluations -> the measured plan and knobs for that task, from the optional `cm.task_plans`. */
  taskPlans: Partial<Record<PlanTask, Record<string, TaskPlan>>>;
  /** Task -> the number of evaluations whose plan is its default (`"default"` in `cm.task_plans`). */
  taskDefaults: Partial<Record<PlanTask, number>>;
  /** Task -> the stored `--quality fast` / `best` plans (`"fast"`, `"best"` in `cm.task_plans`). */
  taskPresets: Partial<Record<PlanTask, Partial<Record<Preset, PresetPlan>>>>;
  /**
   * Task -> the grid indices of the refinement run at every finer level of coarse to fine (`"refine"` in
   * `cm.task_plans`, e.g. [37, 39]); without one the CLI refines at sigma 0.4 and 0.1 (pipeline/policy.ts).
   */
  taskRefine: Partial<Record<PlanTask, number[]>>;
  numClasses: number;
  license: string;
  trainedOn: string;
  /** Every metadata_props entry, for `cm models info`. */
  metadata: Record<string, string>;
}

/**
 * The ranges cm accepts: a model's side (a 4096 x 4096 batch item is 200 MB of float32 already; a larger value is a
 * broken file, and would only fail later, allocating), the grid that plans index, the class count.
 */
export const MAX_RESOLUTION = 4096;
export const MAX_GRID = 10000;
export const MAX_CLASSES = 1_000_000;

export function parseModelCard(props: Record<string, string>, file: string): ModelCard {
  if (props['cm.format'] === undefined) {
    throw new ModelError(`${file}: not a cm model (no cm.format metadata; see the model contract in the README)`);
  }
  if (props['cm.format'] !== '1') {
    throw new ModelError(`${file}: unsupported cm.format ${JSON.stringify(props['cm.format'])} (this cm reads format 1)`);
  }
  const num = (key: string, check: (v: number) => boolean, what: string): number => {
    const raw = props[key];
    if (raw === undefined) throw new ModelError(`${file}: missing ${key} metadata`);
    const v = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(v) || !check(v)) {
      throw new ModelError(`${file}: expected ${what} for ${key} but found ${JSON.stringify(raw)}`);
    }
    return v;
  };
  const intIn = (lo: number, hi: number) => (v: number): boolean => Number.isInteger(v) && v >= lo && v <= hi;
  const positive = (v: number): boolean => v > 0;
  const grid: NoiseGrid = {
    sigmaMin: num('cm.sigma_min', positive, 'a positive number'),
    sigmaMax: num('cm.sigma_max', positive, 'a positive number'),
    rho: num('cm.rho', positive, 'a positive number'),
    size: num('cm.grid', intIn(2, MAX_GRID), `an integer from 2 to ${MAX_GRID}`),
  };
  if (grid.sigmaMax <= grid.sigmaMin) {
    throw new ModelError(`${file}: cm.sigma_max ${grid.sigmaMax} is not above cm.sigma_min ${grid.sigmaMin}`);
  }
  const card: ModelCard = {
    name: props['cm.name'] || file,
    resolution: num('cm.resolution', intIn(1, MAX_RESOLUTION), `an integer from 1 to ${MAX_RESOLUTION}`),
    channels: num('cm.channels', (v) => v === 3, '3'),
    sigmaData: num('cm.sigma_data', positive, 'a positive number'),
    grid,
    plans: parsePlans(props['cm.plans'], grid.size, file),
    ...parseTaskPlans(props['cm.task_plans'], grid.size, file),
    numClasses: props['cm.num_classes'] === undefined ? 0 : num('cm.num_classes', intIn(0, MAX_CLASSES), `an integer from 0 to ${MAX_CLASSES}`),
    license: props['cm.license'] ?? 'unknown',
    trainedOn: props['cm.trained_on'] ?? 'unknown',
    metadata: { ...props },
  };
  return card;
}

function parsePlans(raw: string | undefined, size: number, file: string): Record<string, number[]> {
  if (raw === undefined || raw === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ModelError(`${file}: cm.plans is not JSON: ${JSON.stringify(raw.slice(0, 60))}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ModelError(`${file}: cm.plans must map evaluation counts to index lists`);
  }
  const plans: Record<string, number[]> = {};
  for (const [k, ts] of Object.entries(parsed)) {
    if (!isPlan(ts, k, size)) throw new ModelError(`${file}: cm.plans entry ${k}: ${JSON.stringify(ts)} is not a plan of ${k} evaluations on a grid of ${size}`);
    plans[k] = ts;
  }
  return plans;
}

/** k + 1 strictly increasing grid indices ending at the grid's last. */
function isPlan(ts: unknown, k: string, size: number): ts is number[] {
  return (
    /^[1-9]\d*$/.test(k) &&
    Array.isArray(ts) &&
    ts.length === Number(k) + 1 &&
    ts.every((t, i) => Number.isInteger(t) && t >= 0 && t < size && (i === 0 || t > ts[i - 1])) &&
    ts[ts.length - 1] === size - 1
  );
}

/**
 * `cm.task_plans` (optional): {"superres-x4": {"default": 4, "4": {"ts": [26,28,31,33,39], "start": "estimate",
 * "eta": 0}}, ...}; `samples` defaults to 1 and `views` to false; denoise entries carry no ts (denoising starts at
 * the image's noise level); "default" names the entry `--steps` defaults to (else the one with the most
 * evaluations). "fast" and "best" (optional) are the plans of `--quality fast` and `--quality best`: the number of
 * one of the task's entries, or an entry of their own with its number of evaluations `k`, e.g.
 * "best": {"k": 4, "ts": [...], "start": "estimate", "eta": 0, "samples": 4, "views": true}. "refine" (optional) is
 * the plan of every finer level of coarse to fine, e.g. [37, 39] (taskRefine).
 */
function parseTaskPlans(raw: string | undefined, size: number, file: string): Pick<ModelCard, 'taskPlans' | 'taskDefaults' | 'taskPresets' | 'taskRefine'> {
  if (raw === undefined || raw === '') return { taskPlans: {}, taskDefaults: {}, taskPresets: {}, taskRefine: {} };
  const bad = (what: string): ModelError => new ModelError(`${file}: cm.task_plans: ${what}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw bad(`not JSON: ${JSON.stringify(raw.slice(0, 60))}`);
  }
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(parsed)) throw bad('expected an object of task -> evaluations -> plan');
  const out: ModelCard['taskPlans'] = {};
  const defaults: ModelCard['taskDefaults'] = {};
  const presets: ModelCard['taskPresets'] = {};
  const refine: ModelCard['taskRefine'] = {};
  for (const [task, byK] of Object.entries(parsed)) {
    if (!(PLAN_TASKS as readonly string[]).includes(task)) throw bad(`unknown task ${JSON.stringify(task)} (known: ${PLAN_TASKS.join(', ')})`);
    if (!isObject(byK)) throw bad(`${task}: expected an object of evaluations -> plan`);
    const plans: Record<string, TaskPlan> = {};
    const entryOf = (where: string, k: string, entry: unknown): TaskPlan => {
      if (!isObject(entry)) throw bad(`${where}: expected an object {ts, start, eta, samples}`);
      const { ts, start = 'known', eta = 1, samples = 1, views = false } = entry;
      if (task === 'denoise' ? ts !== undefined : !isPlan(ts, k, size)) {
        throw bad(
          task === 'denoise'
            ? `${where}: denoise starts at the image's noise level and takes no ts`
            : `${where}: ts ${JSON.stringify(ts)} is not a plan of ${k} evaluations on a grid of ${size} (indices 0..${size - 1}, increasing, ending at ${size - 1})`,
        );
      }
      if (!START_KINDS.includes(start as StartKind)) throw bad(`${where}: start ${JSON.stringify(start)} is not one of ${START_KINDS.join(', ')}`);
      if (typeof eta !== 'number' || !(eta >= 0 && eta <= 1)) throw bad(`${where}: eta ${JSON.stringify(eta)} is not a number between 0 and 1`);
      if (!Number.isInteger(samples) || (samples as number) < 1 || (samples as number) > MAX_SAMPLES) {
        throw bad(`${where}: samples ${JSON.stringify(samples)} is not an integer between 1 and ${MAX_SAMPLES}`);
      }
      if (typeof views !== 'boolean') throw bad(`${where}: views ${JSON.stringify(views)} is not true or false`);
      return { ...(ts === undefined ? {} : { ts: [...(ts as number[])] }), start: start as StartKind, eta, samples: samples as number, ...(views ? { views } : {}) };
    };
    for (const [k, entry] of Object.entries(byK)) {
      if (k === 'default' || k === 'refine' || (PRESETS as readonly string[]).includes(k)) continue;
      const where = `${task} ${k}`;
      if (!/^[1-9]\d*$/.test(k)) throw bad(`${where}: ${JSON.stringify(k)} is not a number of evaluations`);
      plans[k] = entryOf(where, k, entry);
    }
    for (const name of PRESETS) {
      const v = byK[name];
      if (v === undefined) continue;
      const where = `${task} ${name}`;
      let preset: PresetPlan;
      if (typeof v === 'number') {
        if (plans[String(v)] === undefined) throw bad(`${where}: ${v} is not one of its numbers of evaluations (${Object.keys(plans).join(', ') || 'none'})`);
        preset = { k: v, plan: plans[String(v)] };
      } else {
        if (!isObject(v)) throw bad(`${where}: expected a number of evaluations or an object {k, ts, start, eta, samples, views}`);
        const k = v.k ?? (Array.isArray(v.ts) ? v.ts.length - 1 : undefined);
        if (!Number.isInteger(k) || (k as number) < 1) throw bad(`${where}: k ${JSON.stringify(v.k)} is not a number of evaluations`);
        const { k: _k, ...rest } = v;
        preset = { k: k as number, plan: entryOf(where, String(k), rest) };
      }
      (presets[task as PlanTask] ??= {})[name] = preset;
    }
    if (byK.default !== undefined) {
      if (!Number.isInteger(byK.default) || plans[String(byK.default)] === undefined) {
        throw bad(`${task}: default ${JSON.stringify(byK.default)} is not one of its numbers of evaluations (${Object.keys(plans).join(', ') || 'none'})`);
      }
      defaults[task as PlanTask] = byK.default as number;
    }
    if (byK.refine !== undefined) {
      const r = byK.refine;
      if (!isPlan(r, String(Array.isArray(r) ? r.length - 1 : 0), size)) {
        throw bad(`${task}: refine ${JSON.stringify(r)} is not a plan on a grid of ${size} (indices 0..${size - 1}, increasing, ending at ${size - 1})`);
      }
      refine[task as PlanTask] = [...r];
    }
    out[task as PlanTask] = plans;
  }
  return { taskPlans: out, taskDefaults: defaults, taskPresets: presets, taskRefine: refine };
}
