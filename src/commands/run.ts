/**
 * The one path every task takes: model file -> plan -> inputs -> operators -> the shared sampler -> encode -> atomic
 * write, with --json records, progress, per-file failures and Ctrl-C. Tasks only say how to build their operator
 * (image tasks) or their start and noise (generation).
 */
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { stackOperators, unconstrained, type Operator } from '../editing/operator.js';
import { InputError, ModelError, UsageError } from '../errors.js';
import { encodePicture, readPicture, resizeTensor, type Picture } from '../io/image.js';
import { expandInputs, type InputItem } from '../io/inputs.js';
import { checkOutput, checkOutputCount, outputFormat, outputPath, STDOUT, writeOutput } from '../io/output.js';
import { MAX_SEED, Rng } from '../rng.js';
import type { LoadedModel, ModelFile } from '../runtime/model.js';
import { perImageNoise, sample, type NoiseSource } from '../sampler/sample.js';
import { evaluations, type Plan } from '../sampler/schedule.js';
import type { Tensor } from '../tensor.js';
import { inShard, parseShard, shardKey } from '../shard.js';
import { checkCommon, chooseSeed, choosePlan, GPU_BATCH, openModel, type CommonArgs, type InputArgs } from './common.js';
import { Batch } from './batch.js';
import { Interrupted, type SignalWatch } from './interrupt.js';
import { Reporter, type OutputRecord } from './reporter.js';

/** An edit of one image, described at its output size. */
export interface Edit {
  width: number;
  height: number;
  /** Alpha at the output size, re-attached to the result. */
  alpha?: Uint8Array;
  /** The operator for an output of w x h: the output size itself, or the model's size when they differ. */
  operatorAt(w: number, h: number): Promise<Operator>;
}

/** What a task needs to know about the image it is preparing. */
export interface EditInput {
  picture: Picture;
  item: InputItem;
}

export interface ImageTask<A> {
  name: string;
  defaultSteps: number;
  /** A plan the task makes itself (guided and denoising tasks start part-way); otherwise from --steps/--ts. */
  plan?(args: A, file: ModelFile): Plan;
  /** The start already carries noise of the plan's first level (denoising). */
  startIsNoisy?: boolean;
  /** Extra name-template variables ({scale}). */
  nameVars?(args: A): { scale?: number };
  /** Read the task's other inputs (a mask) and describe the edit. */
  prepare(input: EditInput, args: A, file: ModelFile, reporter: Reporter): Promise<Edit>;
}

export type ImageArgs = CommonArgs & InputArgs;

/** The input image at w x h: itself at its own size, resized (Lanczos) otherwise. */
export async function pictureAt(picture: Picture, w: number, h: number): Promise<Tensor> {
  return w === picture.width && h === picture.height ? picture.rgb : resizeTensor(picture.rgb, w, h, 'lanczos3');
}

/** An edit that starts from the input image and projects nothing (guided generation, denoising). */
export function startFromPicture(picture: Picture): Edit {
  return {
    width: picture.width,
    height: picture.height,
    alpha: picture.alpha,
    operatorAt: async (w, h) => unconstrained(await pictureAt(picture, w, h)),
  };
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

/** Run an image task over every input: one model session, --batch images per model call, bad files skipped. */
export async function runImageTask<A extends ImageArgs>(args: A, task: ImageTask<A>): Promise<void> {
  checkCommon(args);
  if (args.maxPixels !== undefined && !(Number.isInteger(args.maxPixels) && args.maxPixels > 0)) {
    throw new UsageError(`Expected a positive integer for --max-pixels but received ${args.maxPixels}`);
  }
  const shard = args.shard === undefined ? undefined : parseShard(args.shard);
  const reporter = new Reporter(args.quiet, args.json, args.progress === 'json');
  const items = expandInputs(args.inputs, args.recursive);
  if (items.length === 0) throw new InputError(`${args.inputs.join(' ')}: no images found`);
  if (shard && items.some((item) => item.path === STDOUT)) throw new UsageError('--shard needs files or folders, not - (stdin)');
  const out = { ...args, output: args.output ?? (items.length === 1 && items[0].path === STDOUT ? STDOUT : undefined) };
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
    const plan = task.plan ? task.plan(args, file) : choosePlan(args, file, task.defaultSteps);
    for (const job of jobs) Object.assign(job.record, { model: file.path, evaluations: evaluations(plan), ts: plan.ts ?? null });
    // Two inputs with one output: the later one fails, judged over the whole list (a shard agrees with the whole run).
    const seen = new Map<string, string>();
    const clash = new Map<Job, string>();
    for (const job of all) {
      const first = seen.get(job.output);
      if (first !== undefined && job.output !== STDOUT) clash.set(job, first);
      else seen.set(job.output, job.item.path);
    }
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
      return true;
    });
    if (pending.length === 0) return;
    const model = await batch.startModel(file, args);
    const perCall = args.batch ?? (model.device === 'cpu' ? 1 : GPU_BATCH);
    try {
      for (let k = 0; k < pending.length; k += perCall) {
        signals.check();
        const group: Prepared[] = [];
        for (const job of pending.slice(k, k + perCall)) {
          job.started = performance.now();
          try {
            checkOutput(job.output, args.force, args.outDir !== undefined);
            const picture = await readPicture(job.item.path, { maxPixels: args.maxPixels, keepSource: args.keepMetadata });
            const edit = await task.prepare({ picture, item: job.item }, args, file, reporter);
            group.push({ job, picture, edit });
          } catch (e) {
            batch.fail(job.record, e);
          }
        }
        if (group.length === 0) continue;
        let results: Tensor[];
        try {
          batch.begin(group.map(({ job }) => job.item.path), evaluations(plan));
          results = await runEdits(model, group, plan, task.startIsNoisy ?? false, reporter, signals, batch);
        } catch (e) {
          if (e instanceof Interrupted || e instanceof ModelError) throw e;
          for (const { job } of group) batch.fail(job.record, e);
          continue;
        }
        for (let i = 0; i < group.length; i++) {
          const { job, edit } = group[i];
          try {
            const bytes = await encodePicture(results[i], 0, format, { alpha: edit.alpha, metadataFrom: group[i].picture.source });
            await writeOutput(job.output, bytes, args.force);
            batch.ok(job.record, job.started);
          } catch (e) {
            batch.fail(job.record, e);
          }
        }
      }
    } finally {
      await model.dispose();
    }
  }, jobs.map((j) => j.record));
}

/**
 * Sample a group of edits in one batch at the model's size; an edit of another size is resized back and its known
 * data restored at full size. Each image has its own noise stream (seeded by its seed), so batching changes nothing.
 */
async function runEdits(
  model: LoadedModel,
  group: Prepared[],
  plan: Plan,
  startIsNoisy: boolean,
  reporter: Reporter,
  signals: SignalWatch,
  batch: Batch,
): Promise<Tensor[]> {
  const res = model.card.resolution;
  const ops: Operator[] = [];
  for (const { edit, picture } of group) {
    if (edit.width !== res || edit.height !== res) {
      reporter.warn(
        `${picture.label}: output ${edit.width}x${edit.height} differs from the model's ${res}x${res}: editing at ${res}x${res} and resizing back`,
      );
    }
    ops.push(await edit.operatorAt(res, res));
  }
  const x = await sample(model, {
    operator: stackOperators(ops),
    sigmas: plan.sigmas,
    sigmaMin: model.card.grid.sigmaMin,
    noise: perImageNoise(group.map(({ job }) => new Rng(job.seed))),
    startIsNoisy,
    onStep: (e) => {
      batch.step(e, group.map(({ job }) => job.item.path));
      signals.check();
    },
  });
  const results: Tensor[] = [];
  for (let i = 0; i < group.length; i++) {
    const { edit } = group[i];
    const small = x.image(i);
    if (edit.width === res && edit.height === res) {
      results.push(small);
      continue;
    }
    const full = await edit.operatorAt(edit.width, edit.height);
    results.push(full.projectInRange(await resizeTensor(small, edit.width, edit.height, 'lanczos3')));
  }
  return results;
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
    const plan = choosePlan(args, file, task.defaultSteps);
    for (const r of records) Object.assign(r, { model: file.path, evaluations: evaluations(plan), ts: plan.ts ?? null });
    for (const o of outputs) checkOutput(o, args.force, args.outDir !== undefined);
    const gen = task.build(file, new Rng(seed), count);
    const model = await batch.startModel(file, args);
    const started = performance.now();
    batch.begin([], evaluations(plan));
    try {
      const result = await sample(model, {
        operator: gen.operator,
        sigmas: plan.sigmas,
        sigmaMin: file.card.grid.sigmaMin,
        noise: gen.noise,
        onStep: (e) => {
          batch.step(e, []);
          signals.check();
        },
      });
      for (let i = 0; i < count; i++) {
        await writeOutput(outputs[i], await encodePicture(result, i, format), args.force);
        batch.ok(records[i], started);
      }
    } finally {
      await model.dispose();
    }
  }, records);
}
