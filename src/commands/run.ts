/**
 * The one path every task takes: model file -> plan -> inputs -> operator -> the shared sampler -> encode -> atomic
 * write, with --json records and progress. Tasks only say how to build their operator (image tasks) or their start
 * and noise (generation).
 */
import { performance } from 'node:perf_hooks';
import { unconstrained, type Operator } from '../editing/operator.js';
import { CmError, UsageError } from '../errors.js';
import { encodePicture, readPicture, resizeTensor, type Picture } from '../io/image.js';
import { checkOutput, defaultOutputPath, expandOutput, formatOf, STDOUT, writeOutput } from '../io/output.js';
import { Rng } from '../rng.js';
import { loadModel, type LoadedModel, type ModelFile } from '../runtime/model.js';
import { gaussianNoise, sample, type NoiseSource } from '../sampler/sample.js';
import { evaluations, type Plan } from '../sampler/schedule.js';
import type { Tensor } from '../tensor.js';
import { checkCommon, chooseSeed, choosePlan, openModel, type CommonArgs } from './common.js';
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

export interface ImageTask<A> {
  name: string;
  defaultSteps: number;
  /** A plan the task makes itself (guided and denoising tasks start part-way); otherwise from --steps/--ts. */
  plan?(args: A, file: ModelFile): Plan;
  /** The start already carries noise of the plan's first level (denoising). */
  startIsNoisy?: boolean;
  /** Read the task's other inputs and describe the edit. */
  prepare(picture: Picture, args: A, file: ModelFile, reporter: Reporter): Promise<Edit>;
}

export interface ImageArgs extends CommonArgs {
  input: string;
}

export async function runImageTask<A extends ImageArgs>(args: A, task: ImageTask<A>): Promise<void> {
  checkCommon(args);
  const output = args.output ?? (args.input === STDOUT ? STDOUT : defaultOutputPath(args.input, task.name));
  await reported(args, task.name, args.input, [output], async (reporter, record) => {
    const file = await openModel(args);
    record.model = file.path;
    const plan = task.plan ? task.plan(args, file) : choosePlan(args, file, task.defaultSteps);
    const format = prepareOutput(output, args.force);
    const picture = await readPicture(args.input);
    const edit = await task.prepare(picture, args, file, reporter);
    const seed = chooseSeed(args);
    Object.assign(record, { evaluations: evaluations(plan), ts: plan.ts ?? null, seed });
    await withModel(file, args, reporter, record, async (model) => {
      const result = await runEdit(model, edit, plan, task.startIsNoisy ?? false, seed, picture.label, reporter);
      await writeOutput(output, await encodePicture(result, 0, format, edit.alpha), args.force);
    });
  });
}

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

/** Sample the edit: at its own size when that is the model's, otherwise at the model's size and back. */
async function runEdit(
  model: LoadedModel,
  edit: Edit,
  plan: Plan,
  startIsNoisy: boolean,
  seed: number,
  label: string,
  reporter: Reporter,
): Promise<Tensor> {
  const res = model.card.resolution;
  const rng = new Rng(seed);
  const at = async (w: number, h: number): Promise<Tensor> =>
    sample(model, {
      operator: await edit.operatorAt(w, h),
      sigmas: plan.sigmas,
      sigmaMin: model.card.grid.sigmaMin,
      noise: gaussianNoise(rng),
      startIsNoisy,
      onStep: (e) => reporter.progress(`${label}: step ${e.step}/${e.steps}`),
    });
  if (edit.width === res && edit.height === res) return at(res, res);
  reporter.warn(
    `${label}: output ${edit.width}x${edit.height} differs from the model's ${res}x${res}: editing at ${res}x${res} and resizing back`,
  );
  const small = await at(res, res);
  const up = await resizeTensor(small, edit.width, edit.height, 'lanczos3');
  const full = await edit.operatorAt(edit.width, edit.height);
  return full.projectInRange(up);
}

/** How a generation task starts: batch size, the noise (step 0 is the initial noise), the operator. */
export interface Generation {
  count: number;
  operator: Operator;
  noise: NoiseSource;
}

export async function runGeneration<A extends CommonArgs>(
  args: A,
  task: { name: string; defaultSteps: number; build(file: ModelFile, rng: Rng): Generation },
): Promise<void> {
  checkCommon(args);
  const template = args.output ?? `${task.name}-{i}.png`;
  await reported(args, task.name, null, [template], async (reporter, record, records) => {
    const file = await openModel(args);
    record.model = file.path;
    const plan = choosePlan(args, file, task.defaultSteps);
    const seed = chooseSeed(args);
    const rng = new Rng(seed);
    const gen = task.build(file, rng);
    const outputs = Array.from({ length: gen.count }, (_, i) => expandOutput(template, i, gen.count));
    const formats = outputs.map((o) => prepareOutput(o, args.force));
    Object.assign(record, { evaluations: evaluations(plan), ts: plan.ts ?? null, seed });
    await withModel(file, args, reporter, record, async (model) => {
      const result = await sample(model, {
        operator: gen.operator,
        sigmas: plan.sigmas,
        sigmaMin: file.card.grid.sigmaMin,
        noise: gen.noise,
        onStep: (e) => reporter.progress(`${task.name}: step ${e.step}/${e.steps}`),
      });
      for (let i = 0; i < gen.count; i++) {
        await writeOutput(outputs[i], await encodePicture(result, i, formats[i]), args.force);
        records.push({ ...record, output: outputs[i] });
      }
    });
  });
}

function prepareOutput(output: string, force: boolean): ReturnType<typeof formatOf> {
  if (output === STDOUT && process.stdout.isTTY) {
    throw new UsageError('refusing to write image bytes to a terminal: redirect stdout or pass -o FILE');
  }
  const format = formatOf(output);
  checkOutput(output, force);
  return format;
}

async function withModel(
  file: ModelFile,
  args: CommonArgs,
  reporter: Reporter,
  record: OutputRecord,
  run: (model: LoadedModel) => Promise<void>,
): Promise<void> {
  const model = await loadModel(file, { device: args.device, threads: args.threads });
  record.device = model.device;
  if (args.device === 'auto') {
    reporter.info(`device ${model.device}${model.skipped.length ? ` (${model.skipped.join('; ')})` : ''}`);
  }
  try {
    await run(model);
  } finally {
    await model.dispose();
  }
}

/**
 * Run a command's work with its records: one per output on success (the work may push them itself), or one error
 * record per intended output on failure. Progress is cleared whatever happens.
 */
async function reported(
  args: CommonArgs,
  task: string,
  input: string | null,
  outputs: string[],
  work: (reporter: Reporter, record: OutputRecord, records: OutputRecord[]) => Promise<void>,
): Promise<void> {
  const reporter = new Reporter(args.quiet, args.json);
  const start = performance.now();
  const record: OutputRecord = {
    input,
    output: outputs[0] ?? null,
    task,
    model: null,
    device: null,
    evaluations: null,
    ts: null,
    seed: null,
    seconds: 0,
    status: 'ok',
  };
  const records: OutputRecord[] = [];
  try {
    await work(reporter, record, records);
    reporter.done();
    const seconds = round3((performance.now() - start) / 1000);
    for (const r of records.length ? records : [record]) reporter.record({ ...r, seconds });
  } catch (e) {
    reporter.done();
    const error = e instanceof CmError ? e.message : `unexpected error: ${e instanceof Error ? e.message : String(e)}`;
    reporter.record({ ...record, seconds: round3((performance.now() - start) / 1000), status: 'error', error });
    throw e;
  }
}

function round3(v: number): number {
  return Math.round(v * 1000) / 1000;
}
