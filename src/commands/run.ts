/**
 * The CLI's adapter around the pipeline (src/pipeline): model file -> plan -> inputs -> the task's edit -> the shared
 * sampler -> encode -> atomic write, with --json records, progress, per-file failures and Ctrl-C. Image tasks are
 * the pipeline's builders; generation tasks say their start and noise here.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Operator } from '../editing/operator.js';
import { InputError, ModelError, UsageError } from '../errors.js';
import { encodePicture, readPicture, type Picture } from '../io/image.js';
import { expandInputs, type InputItem } from '../io/inputs.js';
import { checkOutput, checkOutputCount, outputFormat, outputPath, resolvedPath, STDOUT, writeOutput } from '../io/output.js';
import { MAX_SEED, Rng } from '../rng.js';
import type { ModelFile } from '../runtime/model.js';
import { sample, type NoiseSource } from '../sampler/sample.js';
import { evaluations } from '../sampler/schedule.js';
import type { PlanTask } from '../runtime/card.js';
import type { Tensor } from '../tensor.js';
import { inShard, parseShard, shardKey } from '../shard.js';
import { checkCommon, checkPixelFlag, chooseSampling, chooseSeed, openModel, samplingRecord, type CommonArgs, type InputArgs } from './common.js';
import { runEdits, taskSampling, taskTiling } from '../pipeline/edit.js';
import type { Edit, EditInputs, TaskOptions, TaskSpec } from '../pipeline/tasks.js';
import { Batch } from './batch.js';
import { callPixelsBound, checkMemory, memoryBudget, type MemoryTask } from './memory.js';
import { Interrupted } from './interrupt.js';
import { Reporter, type OutputRecord } from './reporter.js';

export type { Edit } from '../pipeline/tasks.js';
export { startFromPicture } from '../pipeline/tasks.js';

/** What a task needs to know about the image it is preparing. */
export interface EditInput {
  picture: Picture;
  item: InputItem;
}

/**
 * A task as the CLI runs it: the pipeline's builder (src/pipeline/tasks.ts) with its options taken from the flags,
 * and what only files need: the other inputs a run reads (inpaint's masks), name-template variables.
 */
export interface ImageTask<A> {
  spec: TaskSpec;
  /** Extra name-template variables ({scale}). */
  nameVars?(args: A): { scale?: number };
  /** The run's other input files (inpaint's masks): outputs never replace them. */
  otherInputs?(args: A, items: readonly InputItem[]): string[];
  /** Read the task's other inputs (a mask); default: the picture alone. */
  readInputs?(input: EditInput, args: A): Promise<EditInputs>;
}

export type ImageArgs = CommonArgs & InputArgs;

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
export async function runImageTask<A extends ImageArgs & TaskOptions>(args: A, task: ImageTask<A>): Promise<void> {
  const { spec } = task;
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
  const batch = new Batch(reporter, mine.filter(Boolean).length, spec.name, shard);
  const baseSeed = chooseSeed(args);
  const all: Job[] = items.map((item, i) => {
    const seed = (baseSeed + i) % (MAX_SEED + 1);
    const output = outputPath(out, {
      stem: item.stem,
      task: spec.name,
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
    const sampling = taskSampling(spec, args, file.card);
    for (const job of jobs) Object.assign(job.record, { model: file.path, ...samplingRecord(sampling, { refine: spec.name === 'inpaint' }) });
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
    const model = await batch.startModel(file, args);
    const tiling = taskTiling(args, file.card, model.device);
    const memory = { samples: sampling.samples, callPixels: callPixelsBound(tiling), modelBytes: modelBytes(file.path), processes: model.parallel };
    // Refuse an image whose edit would not fit in memory from its header, before its pixels are decoded.
    const beforeDecode = ({ label, width, height, bytes }: { label: string; width: number; height: number; bytes: number }): void => {
      const size = spec.outputSize?.(args, width, height, label) ?? { width, height };
      const pixels = size.width * size.height;
      checkMemory(label, spec.name as MemoryTask, size, { ...memory, pixels, fileBytes: bytes }, budget, spec.memoryHints?.(args));
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
          const edits = todo.map(({ edit, job }) => ({ edit, seed: job.seed }));
          results = await runEdits(model, edits, sampling, tiling, spec.startIsNoisy ?? false, {
            onStep: (e, which) => {
              batch.step(e, which.map((i) => todo[i].job.item.path));
              signals.check();
            },
            onTiles: (counts, which) => {
              for (const i of which) {
                const r = todo[i].job.record;
                // Images sharing model calls share the counts: each gets its share.
                const t = (r.tiles ??= { run: 0, skipped: 0 });
                t.run += Math.round(counts.run / which.length);
                t.skipped += Math.round(counts.skipped / which.length);
              }
            },
          });
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
          const inputs = task.readInputs ? await task.readInputs({ picture, item: job.item }, args) : { picture };
          const edit = await spec.build(inputs, args, { tile: tiling.tile, seed: job.seed, warn: (m) => reporter.warn(m) });
          prepared = { job, picture, edit };
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
