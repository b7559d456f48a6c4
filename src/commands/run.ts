/**
 * The one path every task takes: model file -> plan -> inputs -> operators -> the shared sampler -> encode -> atomic
 * write, with --json records, progress, per-file failures and Ctrl-C. Tasks only say how to build their operator
 * (image tasks) or their start and noise (generation).
 */
import { existsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { unconstrained, type Operator } from '../editing/operator.js';
import type { Rect } from '../editing/regions.js';
import { editFullResolution, type FullResEdit, type Scales } from '../sampler/fullres.js';
import { InputError, ModelError, UsageError } from '../errors.js';
import { encodePicture, readPicture, type AlphaPlane, type Picture } from '../io/image.js';
import { expandInputs, type InputItem } from '../io/inputs.js';
import { checkOutput, checkOutputCount, outputFormat, outputPath, resolvedPath, STDOUT, writeOutput } from '../io/output.js';
import { MAX_SEED, Rng } from '../rng.js';
import type { LoadedModel, ModelFile } from '../runtime/model.js';
import { sample, type NoiseSource } from '../sampler/sample.js';
import { evaluations, type Plan } from '../sampler/schedule.js';
import type { PlanTask, TaskPlan } from '../runtime/card.js';
import type { Tensor } from '../tensor.js';
import { inShard, parseShard, shardKey } from '../shard.js';
import { checkCommon, checkPixelFlag, chooseSampling, chooseSeed, chooseTiling, openModel, perCall, samplingRecord, type CommonArgs, type InputArgs, type Sampling } from './common.js';
import { Batch } from './batch.js';
import { callPixelsBound, checkMemory, memoryBudget, type MemoryTask } from './memory.js';
import { Interrupted, type SignalWatch } from './interrupt.js';
import { Reporter, type OutputRecord } from './reporter.js';

/** An edit of one image, described at its output size (src/sampler/fullres.ts says how each kind runs). */
export interface Edit {
  width: number;
  height: number;
  /** Alpha at the output size, re-attached to the result. */
  alpha?: AlphaPlane;
  /** The operator at the output size. */
  operator: Operator;
  /** Default "tiles": the sampler at full size, the model on tiles. */
  scales?: Scales;
  /** Windows edited on their own (inpainting's crops around small holes). */
  windows?: Rect[];
  /** Coarse to fine: the largest level (longer side) the model runs on; larger ones are upsampled and projected. */
  maxSampledSide?: number;
}

/** What a task needs to know about the image it is preparing. */
export interface EditInput {
  picture: Picture;
  item: InputItem;
  /** The image's seed (--seed plus its position in the inputs). */
  seed: number;
}

export interface ImageTask<A> {
  name: string;
  defaultSteps: number;
  /** The key of the task's stored defaults in the model's cm.task_plans (default: the task's name). */
  planTask?(args: A): PlanTask;
  /**
   * A plan the task makes itself (guided and denoising tasks start part-way), for K evaluations given the model's
   * stored default for K (if any); otherwise from --ts / --steps (see chooseSampling).
   */
  plan?(args: A, file: ModelFile, k: number, stored: TaskPlan | undefined): Plan;
  /** The start already carries noise of the plan's first level (denoising). */
  startIsNoisy?: boolean;
  /** The fewest samples the task combines by default (its operator's own combination needs several); --samples overrides. */
  minSamples?: number;
  /** Extra name-template variables ({scale}). */
  nameVars?(args: A): { scale?: number };
  /**
   * The output's size for an input of this size, known from its header (default: the same); throws to refuse the
   * input before it is decoded (superres: --max-output-pixels).
   */
  outputSize?(args: A, width: number, height: number, label: string): { width: number; height: number };
  /** What refuses too large an output, for the memory refusal's hint (superres: "a smaller -x"). */
  memoryHints?(args: A): string[];
  /** The run's other input files (inpaint's masks): outputs never replace them. */
  otherInputs?(args: A, items: readonly InputItem[]): string[];
  /** Read the task's other inputs (a mask) and describe the edit. */
  prepare(input: EditInput, args: A, file: ModelFile, reporter: Reporter): Promise<Edit>;
}

export type ImageArgs = CommonArgs & InputArgs;

/** An edit that starts from the input image and projects nothing (guided generation, denoising). */
export function startFromPicture(picture: Picture): Edit {
  return { width: picture.width, height: picture.height, alpha: picture.alpha, operator: unconstrained(picture.rgb) };
}

interface Job {
  item: InputItem;
  seed: number;
  output: string;
  record: OutputRecord;
  started: number;
}

interface Prepared {
  job: Job;
  picture: Picture;
  edit: Edit;
}

/** Run an image task over every input: one model session, --batch images or tiles per model call, bad files skipped. */
export async function runImageTask<A extends ImageArgs>(args: A, task: ImageTask<A>): Promise<void> {
  checkCommon(args);
  checkPixelFlag('--max-pixels', args.maxPixels);
  const budget = memoryBudget(args.maxMemory);
  const shard = args.shard === undefined ? undefined : parseShard(args.shard);
  const reporter = new Reporter(args.quiet, args.json, args.progress === 'json');
  const items = expandInputs(args.inputs, args.recursive);
  if (items.length === 0) throw new InputError(`${args.inputs.join(' ')}: no images found`);
  if (shard && items.some((item) => item.path === STDOUT)) throw new UsageError('--shard needs files or folders, not - (stdin)');
  const out = { ...args, output: args.output ?? (items.length === 1 && items[0].path === STDOUT ? STDOUT : undefined) };
  if (args.json && out.output === STDOUT) {
    throw new UsageError('--json and the image both want stdout (stdin input without -o writes the image there): add -o FILE, or drop --json');
  }
  checkOutputCount(out, items.length);
  // Seeds and {i} come from the position in the whole list, so that a shard's outputs are those of the whole run.
  const mine = shard ? items.map((item) => inShard(shardKey(item.path, item.root), shard)) : items.map(() => true);
  const batch = new Batch(reporter, mine.filter(Boolean).length, task.name, shard);
  const baseSeed = chooseSeed(args);
  const all: Job[] = items.map((item, i) => {
    const seed = (baseSeed + i) % (MAX_SEED + 1);
    const output = outputPath(out, {
      stem: item.stem,
      task: task.name,
      i,
      seed,
      ...task.nameVars?.(args),
      inputDir: item.path === STDOUT ? '.' : dirname(item.path),
      relDir: item.relDir,
    });
    return { item, seed, output, record: { ...batch.newRecord(item.path, seed), output }, started: 0 };
  });
  const jobs = all.filter((_, i) => mine[i]);
  const format = outputFormat(out);

  await batch.run(async (signals) => {
    const file = await openModel(args);
    const own = task.plan && ((k: number, stored: TaskPlan | undefined) => (task.plan as NonNullable<typeof task.plan>)(args, file, k, stored));
    const sampling = chooseSampling(args, file, task.planTask?.(args) ?? (task.name as PlanTask), task.defaultSteps, own, task.minSamples);
    for (const job of jobs) Object.assign(job.record, { model: file.path, ...samplingRecord(sampling) });
    // Two inputs with one output: the later one fails, judged over the whole list (a shard agrees with the whole run).
    const seen = new Map<string, string>();
    const clash = new Map<Job, string>();
    for (const job of all) {
      const first = seen.get(job.output);
      if (first !== undefined && job.output !== STDOUT) clash.set(job, first);
      else seen.set(job.output, job.item.path);
    }
    // An output that is also an input of the run (an image, a mask, the model) would replace it, perhaps before it
    // is read: refused, whatever --batch, the order of the inputs or --force (--skip-existing skips it: it exists).
    const inputs = runInputs([
      ...items.map((item) => ({ path: item.path, role: 'an input' })),
      ...(task.otherInputs?.(args, items) ?? []).map((path) => ({ path, role: 'a mask' })),
      { path: file.path, role: 'the model' },
    ]);
    const pending = jobs.filter((job) => {
      const first = clash.get(job);
      if (first !== undefined) {
        batch.fail(job.record, new InputError(`${job.item.path}: its output ${job.output} is also the output of ${first}`));
        return false;
      }
      if (args.skipExisting && job.output !== STDOUT && existsSync(job.output)) {
        batch.skip(job.record);
        return false;
      }
      const replaced = replacedInput(job.output, inputs);
      if (replaced !== undefined) {
        const what = replaced.path === job.item.path ? 'the input itself' : `${replaced.role} of this run${replaced.path === job.output ? '' : ` (${replaced.path})`}`;
        batch.fail(job.record, new InputError(`${job.item.path}: its output ${job.output} is ${what}: an input is never replaced, even with --force (name another output)`));
        return false;
      }
      return true;
    });
    if (pending.length === 0) return;
    const tile = chooseTiling(args, file);
    const model = await batch.startModel(file, args);
    const tiling = { ...tile, ...perCall(args, model.device, tile.tile) };
    const memory = { samples: sampling.samples, callPixels: callPixelsBound(tiling), modelBytes: modelBytes(file.path) };
    // Refuse an image whose edit would not fit in memory from its header, before its pixels are decoded.
    const beforeDecode = ({ label, width, height, bytes }: { label: string; width: number; height: number; bytes: number }): void => {
      const size = task.outputSize?.(args, width, height, label) ?? { width, height };
      const pixels = size.width * size.height;
      checkMemory(label, task.name as MemoryTask, size, { ...memory, pixels, fileBytes: bytes }, budget, task.memoryHints?.(args));
    };
    try {
      // Images of at most one tile are gathered --batch at a time and share the model calls; a larger image runs
      // alone (its tiles are batched instead), so that a batch never holds several big photos in memory.
      let group: Prepared[] = [];
      const flush = async (): Promise<void> => {
        const todo = group;
        group = [];
        if (todo.length === 0) return;
        let results: Tensor[];
        try {
          batch.begin(todo.map(({ job }) => job.item.path), evaluations(sampling.plan) * sampling.samples);
          results = await runEdits(model, todo, sampling, tiling, task.startIsNoisy ?? false, signals, batch);
        } catch (e) {
          if (e instanceof Interrupted || e instanceof ModelError) throw e;
          for (const { job } of todo) batch.fail(job.record, e);
          return;
        }
        for (let i = 0; i < todo.length; i++) {
          const { job, edit, picture } = todo[i];
          try {
            if (picture.depth === 16 && format === 'png' && picture.source) {
              reporter.warn(`${picture.label}: a 16-bit image with --keep-metadata is written as an 8-bit PNG (its metadata can only be kept at 8 bits)`);
            }
            const bytes = await encodePicture(results[i], 0, format, { alpha: edit.alpha, metadataFrom: picture.source, depth: picture.depth });
            await writeOutput(job.output, bytes, args.force, args.outDir !== undefined);
            batch.ok(job.record, job.started);
          } catch (e) {
            batch.fail(job.record, e);
          }
        }
      };
      for (const job of pending) {
        signals.check();
        job.started = performance.now();
        let prepared: Prepared;
        try {
          checkOutput(job.output, args.force, args.outDir !== undefined);
          const picture = await readPicture(job.item.path, { maxPixels: args.maxPixels, keepSource: args.keepMetadata, beforeDecode });
          prepared = { job, picture, edit: await task.prepare({ picture, item: job.item, seed: job.seed }, args, file, reporter) };
        } catch (e) {
          if (e instanceof Interrupted) throw e;
          await flush(); // the files before it are reported first: records come in the order of the inputs
          batch.fail(job.record, e);
          continue;
        }
        const big = prepared.edit.width > tiling.tile || prepared.edit.height > tiling.tile;
        if (big) await flush();
        group.push(prepared);
        if (big || group.length >= tiling.batch) await flush();
      }
      await flush();
    } finally {
      await model.dispose();
    }
  }, jobs.map((j) => j.record));
}

/**
 * Sample a group of edits at their own sizes: over tiles, coarse to fine or in windows as each edit says
 * (editFullResolution). Each image has its own noise streams (seeded by its seed), so batching changes nothing.
 */
async function runEdits(
  model: LoadedModel,
  group: Prepared[],
  sampling: Sampling,
  tiling: { tile: number; overlap: number; maxTile: number; batch: number; callPixels?: number },
  startIsNoisy: boolean,
  signals: SignalWatch,
  batch: Batch,
): Promise<Tensor[]> {
  const edits: FullResEdit[] = group.map(({ edit, job }) => ({
    operator: edit.operator,
    seed: job.seed,
    scales: edit.scales ?? 'tiles',
    windows: edit.windows,
    maxSampledSide: edit.maxSampledSide,
  }));
  return editFullResolution(model, edits, {
    ...tiling,
    small: model.card.resolution,
    first: { sigmas: sampling.plan.sigmas, start: sampling.start, eta: sampling.eta, samples: sampling.samples, views: sampling.views },
    refine: sampling.refine,
    sigmaMin: model.card.grid.sigmaMin,
    startIsNoisy,
    onStep: (e, which) => {
      batch.step(e, which.map((i) => group[i].job.item.path));
      signals.check();
    },
  });
}

/** How a generation task starts: batch size, the noise (step 0 is the initial noise), the operator. */
export interface Generation {
  count: number;
  operator: Operator;
  noise: NoiseSource;
}

export async function runGeneration<A extends CommonArgs>(
  args: A,
  task: { name: string; defaultSteps: number; count(args: A): number; build(file: ModelFile, rng: Rng, count: number): Generation },
): Promise<void> {
  checkCommon(args);
  const reporter = new Reporter(args.quiet, args.json, args.progress === 'json');
  const count = task.count(args);
  checkOutputCount(args, count);
  const seed = chooseSeed(args);
  const opts = { ...args, name: args.name ?? (count > 1 ? '{task}-{i}.{ext}' : '{task}.{ext}') };
  const outputs = Array.from({ length: count }, (_, i) => outputPath(opts, { stem: task.name, task: task.name, i, seed }));
  const format = outputFormat(opts);
  const batch = new Batch(reporter, count, task.name);
  const records = outputs.map((o) => ({ ...batch.newRecord(null, seed), output: o }));
  await batch.run(async (signals) => {
    const file = await openModel(args);
    const sampling = chooseSampling(args, file, task.name as PlanTask, task.defaultSteps);
    for (const r of records) Object.assign(r, { model: file.path, ...samplingRecord(sampling) });
    for (const o of outputs) checkOutput(o, args.force, args.outDir !== undefined);
    const modelInput = runInputs([{ path: file.path, role: 'the model' }]);
    for (const o of outputs) {
      if (replacedInput(o, modelInput)) throw new InputError(`${o}: is the model of this run: an input is never replaced, even with --force (name another output)`);
    }
    const gen = task.build(file, new Rng(seed), count);
    const model = await batch.startModel(file, args);
    const started = performance.now();
    batch.begin([], evaluations(sampling.plan));
    try {
      const result = await sample(model, {
        operator: gen.operator,
        sigmas: sampling.plan.sigmas,
        eta: sampling.eta,
        sigmaMin: file.card.grid.sigmaMin,
        noise: gen.noise,
        onStep: (e) => {
          batch.step(e, []);
          signals.check();
        },
      });
      for (let i = 0; i < count; i++) {
        await writeOutput(outputs[i], await encodePicture(result, i, format), args.force, args.outDir !== undefined);
        batch.ok(records[i], started);
      }
    } finally {
      await model.dispose();
    }
  }, records);
}

interface RunInput {
  path: string;
  /** "an input", "a mask", "the model". */
  role: string;
}

/** The run's input files by where they lead (symbolic links followed), the first name given for each. */
function runInputs(files: RunInput[]): Map<string, RunInput> {
  const out = new Map<string, RunInput>();
  for (const f of files) {
    if (f.path === STDOUT || !existsSync(f.path)) continue; // stdin; a missing file fails on its own
    const real = resolvedPath(f.path);
    if (!out.has(real)) out.set(real, f);
  }
  return out;
}

/** The input an output would replace (the same file, through any path or link), if any. */
function replacedInput(output: string, inputs: Map<string, RunInput>): RunInput | undefined {
  return output === STDOUT ? undefined : inputs.get(resolvedPath(output));
}

/** The model's bytes: the .onnx file and its external weights beside it (.onnx.data), if any. */
function modelBytes(path: string): number {
  const size = (p: string): number => (existsSync(p) ? statSync(p).size : 0);
  return size(path) + size(`${path}.data`);
}
