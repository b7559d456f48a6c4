/**
 * The bookkeeping of a batch run, apart from the sampling: one record per input, the device line, progress lines,
 * the summary line, Ctrl-C handling and the exit code.
 */
import { performance } from 'node:perf_hooks';
import { CmError, EXIT_UNEXPECTED } from '../errors.js';
import { preloadImageCodec } from '../io/image.js';
import { CUDA_NOT_INSTALLED, describeCheck } from '../runtime/device.js';
import { loadModel, type LoadedModel, type ModelFile } from '../runtime/model.js';
import type { StepEvent } from '../sampler/sample.js';
import type { Shard } from '../shard.js';
import type { CommonArgs } from './common.js';
import { Interrupted, watchSignals, type SignalWatch } from './interrupt.js';
import type { OutputRecord, Reporter } from './reporter.js';

/**
 * The bookkeeping of one run: records, the device line, progress, the summary line and the exit code (that of the
 * first failure; 0 when every file succeeded).
 */
export class Batch {
  private done = 0;
  private failed = 0;
  private skipped = 0;
  private firstCode = 0;
  private readonly start = performance.now();
  private device: string | null = null;
  private readonly finished = new Set<OutputRecord>();
  private signals: SignalWatch | undefined;
  /** The inputs of the model calls under way, in input order (a step may concern only some of them). */
  private current: string[] = [];

  constructor(
    private readonly reporter: Reporter,
    private readonly total: number,
    private readonly task: string,
    private readonly shard?: Shard,
  ) {}

  newRecord(input: string | null, seed: number): OutputRecord {
    const r: OutputRecord = { input, output: null, task: this.task, model: null, device: null, evaluations: null, ts: null, seed, seconds: 0, status: 'ok' };
    if (this.shard) r.shard = `${this.shard.index}/${this.shard.count}`;
    return r;
  }

  /**
   * Start the model on its device; say which (under auto, or on a GPU) and why others were passed over. Ctrl-C then
   * abandons a model call in progress at once. CM_INFERENCE=inline runs the model in this process (benchmarks).
   */
  async startModel(file: ModelFile, args: CommonArgs): Promise<LoadedModel> {
    // sharp loads while the worker process starts (each takes 0.1-0.2 s on a 2-core machine).
    const [model] = await Promise.all([
      loadModel(file, {
        device: args.device,
        gpuId: args.gpuId,
        threads: args.threads,
        classLabel: args.class,
        debug: args.debug,
        inline: process.env.CM_INFERENCE === 'inline',
        precision: args.precision,
      }),
      preloadImageCodec(),
    ]);
    this.device = model.device;
    this.signals?.onStop(() => model.abort(new Interrupted()));
    const precision = { event: 'precision', precision: model.precision.used, reason: model.precision.reason };
    if (args.debug) this.reporter.info(`precision ${model.precision.used} (${model.precision.reason})`, precision);
    else this.reporter.event(precision);
    const count = (n: number): string => (n === 0 ? "onnxruntime's default threads" : `${n} thread${n === 1 ? '' : 's'}`);
    const { first, others } = model.threads;
    const inference = { event: 'inference', processes: model.parallel, threads: first, helperThreads: model.parallel > 1 ? others : null };
    const said = model.parallel > 1 ? `up to ${model.parallel} processes (the first with ${count(first)}, the others with ${count(others)} each)` : `1 process with ${count(first)}`;
    if (args.debug) this.reporter.info(`inference: ${said}`, inference);
    else this.reporter.event(inference);
    if (args.device === 'auto' || model.device !== 'cpu') {
      const notes = [...(model.check ? [describeCheck(model.device, model.check)] : []), ...model.skipped];
      const id = model.device === 'cuda' ? ` ${args.gpuId ?? 0}` : '';
      const event = { event: 'device', device: model.device, skipped: notes };
      // The CPU under auto on a machine never set up for CUDA is no news: said only with --debug (and in --progress
      // json); a CUDA provider that is installed but cannot run, or a GPU in use, is always said.
      const unconfigured = args.device === 'auto' && model.device === 'cpu' && notes.every((n) => n.startsWith(`cuda: ${CUDA_NOT_INSTALLED}`));
      if (unconfigured && !args.debug) this.reporter.event(event);
      else this.reporter.info(`device ${model.device}${id}${notes.length ? ` (${notes.join('; ')})` : ''}`, event);
    }
    return model;
  }

  /** Sampling of these inputs starts: the spinner shows them at step 0 (and keeps moving during the first call). */
  begin(inputs: string[], steps: number): void {
    this.current = inputs;
    this.showStep(inputs, 0, steps);
  }

  step(e: StepEvent, inputs: string[]): void {
    this.showStep(inputs, e.step, e.steps);
    this.reporter.event({ event: 'step', task: this.task, inputs, step: e.step, steps: e.steps, sigma: e.sigma });
  }

  private showStep(inputs: string[], step: number, steps: number): void {
    const n = this.done + this.failed + this.skipped;
    const eta = n > 0 ? ` · ETA ${Math.round((((performance.now() - this.start) / n) * (this.total - n)) / 1000)}s` : '';
    // "[3/10] c.png": the position of the step's first input among all inputs; "(+2)" when the call holds more.
    const position = inputs.length > 0 ? n + Math.max(0, this.current.indexOf(inputs[0])) + 1 : n;
    const where = this.total > 1 ? `[${Math.min(position, this.total)}/${this.total}] ` : '';
    const more = inputs.length > 1 ? ` (+${inputs.length - 1})` : '';
    this.reporter.progress(`${where}${inputs[0] ?? this.task}${more}: step ${step}/${steps}${eta}`);
  }

  ok(record: OutputRecord, started: number): void {
    this.done++;
    this.finish(record, 'ok', started);
  }

  skip(record: OutputRecord): void {
    this.skipped++;
    this.finish(record, 'skipped', performance.now());
  }

  fail(record: OutputRecord, e: unknown): void {
    this.failed++;
    const code = e instanceof CmError ? e.exitCode : EXIT_UNEXPECTED;
    if (this.firstCode === 0) this.firstCode = code;
    const message = e instanceof CmError ? e.message : `${record.input ?? this.task}: unexpected error: ${e instanceof Error ? e.message : String(e)}`;
    this.reporter.failure(message);
    this.finish(record, 'error', performance.now(), message);
  }

  private finish(record: OutputRecord, status: OutputRecord['status'], started: number, error?: string): void {
    this.finished.add(record);
    Object.assign(record, { status, device: this.device, seconds: round3((performance.now() - started) / 1000) });
    // A failed file has no output: nothing was written for it (the message names the file it would have been).
    if (error !== undefined) Object.assign(record, { error, output: null });
    this.reporter.record(record);
    this.reporter.event({ event: 'file', task: this.task, input: record.input, output: record.output, status, error, done: this.done + this.failed + this.skipped, total: this.total });
  }

  /**
   * Run the work under Ctrl-C handling. A failure that ends the whole run (usage, model, interruption) fails every
   * record not yet finished; the exit code is set from the first failure.
   */
  async run(work: (signals: SignalWatch) => Promise<void>, records: OutputRecord[]): Promise<void> {
    const signals = watchSignals(() => this.reporter.warn('interrupted: stopping (Ctrl-C again to stop at once)'));
    this.signals = signals;
    try {
      await work(signals);
    } catch (e) {
      // The run as a whole failed (usage, model, Ctrl-C): every file not finished gets an error record, and the
      // top-level handler prints the one error line and sets the exit code.
      this.reporter.done();
      for (const r of records) if (!this.finished.has(r)) this.finishFatal(r, e);
      throw e;
    } finally {
      signals.dispose();
      this.reporter.done();
    }
    if (this.total > 1 || this.skipped > 0 || this.shard) {
      const parts = [`${this.done} done`];
      if (this.skipped) parts.push(`${this.skipped} skipped`);
      parts.push(`${this.failed} failed`);
      const where = this.shard ? `shard ${this.shard.index}/${this.shard.count}: ` : '';
      const line = `${where}${this.total} ${this.total === 1 ? 'file' : 'files'}: ${parts.join(', ')}`;
      const event = {
        event: 'summary',
        task: this.task,
        ...(this.shard ? { shard: `${this.shard.index}/${this.shard.count}` } : {}),
        total: this.total,
        done: this.done,
        skipped: this.skipped,
        failed: this.failed,
      };
      if (this.failed > 0 && this.reporter.progressJson) this.reporter.event(event);
      else if (this.failed > 0) this.reporter.failure(line);
      else this.reporter.info(line, event);
    }
    if (this.firstCode !== 0) process.exitCode = this.firstCode;
  }

  private finishFatal(record: OutputRecord, e: unknown): void {
    const message = e instanceof CmError ? e.message : `unexpected error: ${e instanceof Error ? e.message : String(e)}`;
    Object.assign(record, { status: 'error', error: message, output: null, device: this.device, seconds: round3((performance.now() - this.start) / 1000) });
    this.reporter.record(record);
  }
}

function round3(v: number): number {
  return Math.round(v * 1000) / 1000;
}
