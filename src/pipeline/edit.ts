/**
 * One call that runs edits: the task's builder, the policy's plan and tiles, the one sampler over tiles (coarse to
 * fine, windows) with a progress callback per step and an AbortSignal. Pure apart from the model it is handed: no
 * files, console or network. The CLI's batch runner and the studio's server both run edits through here.
 */
import type { ModelCard, PlanTask, TaskPlan } from '../runtime/card.js';
import { editFullResolution, type FullResEdit } from '../sampler/fullres.js';
import type { Denoiser, StepEvent } from '../sampler/sample.js';
import { evaluations } from '../sampler/schedule.js';
import type { TileCounts } from '../sampler/tiles.js';
import type { Tensor } from '../tensor.js';
import { chooseSampling, chooseTiling, perCall, stagesOf, type Sampling, type SamplingOptions, type TilingOptions } from './policy.js';
import type { ImageTaskName } from './registry.js';
import { IMAGE_TASK_SPECS, type Edit, type EditInputs, type TaskOptions, type TaskSpec } from './tasks.js';

/** Tiles, their overlap and fitting, and the model calls' batch (policy.ts). */
export interface Tiling {
  tile: number;
  overlap: number;
  maxTile: number;
  batch: number;
  callPixels?: number;
  /** Tiles whose model change fell below this ([-1, 1] units) skip their later steps (tiles.ts); 0: never. */
  settle?: number;
}

/** A model as the pipeline sees it: a denoiser with its card. */
export interface CardedDenoiser extends Denoiser {
  readonly card: ModelCard;
}

export interface EditHooks {
  /** After every step: `edits` are the indices of the edits the step was for. */
  onStep?: (event: StepEvent, edits: number[]) => void;
  /** Stops the edit before the next model call (the call in progress finishes): rejects with the signal's reason. */
  signal?: AbortSignal;
  /** After edits are done: the model tiles they ran and skipped as settled (flat, nothing left to change). */
  onTiles?: (counts: TileCounts, edits: number[]) => void;
}

/** The sampling of a task for these options, on this model. */
export function taskSampling(spec: TaskSpec, options: TaskOptions & SamplingOptions, card: ModelCard): Sampling {
  const plan = spec.plan;
  const own = plan && ((k: number, stored: TaskPlan | undefined) => plan(options, card, k, stored));
  return chooseSampling(options, { card }, spec.planTask?.(options) ?? (spec.name as PlanTask), spec.defaultSteps, own, spec.minSamples);
}

/** The tiling of a run on this model and device. */
export function taskTiling(options: TilingOptions, card: ModelCard, device: string): Tiling {
  const tile = chooseTiling(options, { card });
  return { ...tile, ...perCall(options, device, tile.tile) };
}

/** Why a run stops when its signal is aborted. */
function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('the edit was cancelled');
}

/**
 * Sample a group of edits at their own sizes: over tiles, coarse to fine or in windows as each edit says
 * (editFullResolution). Each image has its own noise streams (seeded by its seed), so grouping changes nothing.
 */
export async function runEdits(
  model: CardedDenoiser,
  edits: readonly { edit: Edit; seed: number }[],
  sampling: Sampling,
  tiling: Tiling,
  startIsNoisy: boolean,
  hooks: EditHooks = {},
): Promise<Tensor[]> {
  const { signal, onStep, onTiles } = hooks;
  const check = (): void => {
    if (signal?.aborted) throw abortReason(signal);
  };
  check();
  const denoiser: Denoiser = signal
    ? {
        views: model.views,
        parallel: model.parallel,
        denoise: (x, sigma, view) => {
          check();
          return model.denoise(x, sigma, view);
        },
      }
    : model;
  const runs: FullResEdit[] = edits.map(({ edit, seed }) => ({
    operator: edit.operator,
    seed,
    scales: edit.scales ?? 'tiles',
    windows: edit.windows,
    maxSampledSide: edit.maxSampledSide,
  }));
  return editFullResolution(denoiser, runs, {
    ...tiling,
    small: model.card.resolution,
    ...stagesOf(sampling),
    sigmaMin: model.card.grid.sigmaMin,
    startIsNoisy,
    onTiles,
    onStep: (e, which) => {
      onStep?.(e, which);
      check();
    },
  });
}

/** One image edit asked for: the task, its decoded inputs, its options and seed. */
export interface EditRequest {
  task: ImageTaskName;
  inputs: EditInputs;
  options: TaskOptions & SamplingOptions & TilingOptions;
  seed: number;
}

export interface EditResult {
  /** The result, [1,3,H,W] in [-1, 1], at the output size. */
  image: Tensor;
  /** The alpha to re-attach, at the output size. */
  alpha?: Edit['alpha'];
  sampling: Sampling;
  /** Evaluations of the first level times samples: the steps progress counts to (coarse to fine adds its own). */
  steps: number;
  warnings: string[];
}

/** Build one edit and run it: the library's whole pipeline from decoded images to the result. */
export async function edit(model: CardedDenoiser & { device?: string }, request: EditRequest, hooks: EditHooks = {}): Promise<EditResult> {
  const spec = IMAGE_TASK_SPECS[request.task];
  const { options } = request;
  const sampling = taskSampling(spec, options, model.card);
  const tiling = taskTiling(options, model.card, model.device ?? 'cpu');
  const warnings: string[] = [];
  const built = await spec.build(request.inputs, options, { tile: tiling.tile, seed: request.seed, warn: (m) => warnings.push(m) });
  const [image] = await runEdits(model, [{ edit: built, seed: request.seed }], sampling, tiling, spec.startIsNoisy ?? false, hooks);
  return { image, alpha: built.alpha, sampling, steps: evaluations(sampling.plan) * sampling.samples, warnings };
}
