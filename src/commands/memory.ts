/**
 * The memory an edit will need, known before its image is decoded, and the memory there is. Each task's peak is a
 * line in the output's pixels, measured by `npm run bench:memory` (bench/memory.mjs) at three sizes per task on the
 * shipped model, plus each inference worker process (its base and one model call's activations, which grow with --batch
 * and --tile), the averaging buffers of --samples K > 1 and the input file's bytes, all with a margin. The budget is
 * --max-memory, else the smaller of the machine's physical memory and its cgroup's limit.
 */
import { totalmem } from 'node:os';
import { InputError, UsageError } from '../errors.js';

export type MemoryTask = 'inpaint' | 'colorize' | 'superres' | 'stroke' | 'denoise';

const MiB = 2 ** 20;

/**
 * Measured by bench/memory.mjs (bench/results/memory.md: the shipped model on the CPU; 0.8, 3.1 and 12 megapixels per
 * task, rounded up from the least-squares lines): the CLI's peak per task as base + perPixel x output pixels (inpaint
 * with --strategy tile, its largest), the worker's as base + perCallPixel x the pixels of one model call, and the
 * extra bytes per pixel of averaging two or more samples. The margin multiplies all of it: it covers what the lines
 * miss (the points above them, 16-bit and alpha inputs, other strategies and devices, the garbage collector's timing).
 */
export const MEMORY_MODEL = {
  tasks: {
    colorize: { base: 180 * MiB, perPixel: 105 },
    inpaint: { base: 125 * MiB, perPixel: 130 },
    superres: { base: 130 * MiB, perPixel: 110 },
    denoise: { base: 105 * MiB, perPixel: 61 },
    stroke: { base: 125 * MiB, perPixel: 67 },
  } satisfies Record<MemoryTask, { base: number; perPixel: number }>,
  samplesPerPixel: 57,
  worker: { base: 125 * MiB, perCallPixel: 3400 },
  margin: 1.25,
};

/** What an edit's peak depends on. */
export interface MemoryCase {
  /** Pixels of the output (superres: the input's times the scale squared). */
  pixels: number;
  /** The input file's bytes (held while it is decoded, and all along with --keep-metadata). */
  fileBytes: number;
  /** --samples: more than one adds the averaging buffers. */
  samples: number;
  /** The most pixels one model call holds (callPixelsBound). */
  callPixels: number;
  /** The model file's bytes: each worker reads it and builds its weights from it (the shipped model's are in the base). */
  modelBytes: number;
  /** Inference processes (the model's `parallel`): each has the worker's base, one call's activations and the weights. */
  processes: number;
}

/** The most pixels in one model call: `batch` tiles of the largest side they may be fitted to, or the callPixels cap. */
export function callPixelsBound(t: { tile: number; maxTile?: number; batch: number; callPixels?: number }): number {
  const largest = (t.maxTile ?? t.tile) ** 2;
  const all = t.batch * largest;
  return t.callPixels === undefined ? all : Math.max(largest, Math.min(all, t.callPixels));
}

/** The parts of the estimate that do not grow with the image. */
function fixedPart(task: MemoryTask, c: Omit<MemoryCase, 'pixels'>): { scaled: number; extra: number } {
  const m = MEMORY_MODEL;
  const workers = Math.max(1, c.processes);
  return { scaled: m.tasks[task].base + workers * (m.worker.base + m.worker.perCallPixel * c.callPixels), extra: c.fileBytes + 2 * workers * c.modelBytes };
}

function perPixel(task: MemoryTask, samples: number): number {
  return MEMORY_MODEL.tasks[task].perPixel + (samples > 1 ? MEMORY_MODEL.samplesPerPixel : 0);
}

/** The estimated peak, in bytes, of an edit: the CLI and its worker together. */
export function estimatePeak(task: MemoryTask, c: MemoryCase): number {
  const fixed = fixedPart(task, c);
  return Math.ceil(MEMORY_MODEL.margin * (fixed.scaled + perPixel(task, c.samples) * c.pixels) + fixed.extra);
}

/** The most output pixels that fit in `budget` bytes with everything else as in `c` (0 when nothing does). */
export function pixelsThatFit(task: MemoryTask, c: Omit<MemoryCase, 'pixels'>, budget: number): number {
  const fixed = fixedPart(task, c);
  return Math.max(0, Math.floor(((budget - fixed.extra) / MEMORY_MODEL.margin - fixed.scaled) / perPixel(task, c.samples)));
}

/** The memory an edit may take: --max-memory, else the machine's (the smaller of its RAM and its cgroup's limit). */
export interface MemoryBudget {
  bytes: number;
  /** How it is said in a refusal: "--max-memory 4G", "the 23.5 GiB this machine has". */
  said: string;
  /** Given with --max-memory. */
  given: boolean;
}

const UNITS: Record<string, number> = { k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** "4G", "512M", "1.5g", "2048MiB", "8GB": bytes (powers of 1024). A number without a unit is refused. */
export function parseMemory(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt])(?:i?b)?\s*$/i.exec(text);
  const bytes = m ? Math.floor(Number(m[1]) * UNITS[m[2].toLowerCase()]) : NaN;
  if (!(bytes >= 2 ** 20)) throw new UsageError(`Expected a size of at least 1M such as 4G or 512M for --max-memory but received ${text}`);
  return bytes;
}

/**
 * The physical memory, or the cgroup's limit when lower (a container, a Slurm job, systemd-run -p MemoryMax): libuv
 * reads memory.max (cgroup v2) or memory.limit_in_bytes (v1) of this process's cgroup.
 */
export function machineMemory(): number {
  const total = totalmem();
  const limit = process.constrainedMemory?.() ?? 0;
  return limit > 0 && limit < total ? limit : total;
}

export function memoryBudget(maxMemory: string | undefined): MemoryBudget {
  if (maxMemory !== undefined) return { bytes: parseMemory(maxMemory), said: `--max-memory ${maxMemory}`, given: true };
  const bytes = machineMemory();
  return { bytes, said: `the ${gib(bytes)} this machine has`, given: false };
}

export function gib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.ceil(bytes / 2 ** 20)} MiB`;
}

/**
 * Refuse an edit whose estimated peak is over the budget, before its image is decoded: one line with the need, the
 * budget, and what lowers the need (a smaller image, fewer samples, smaller model calls) or raises the budget.
 */
export function checkMemory(label: string, task: MemoryTask, size: { width: number; height: number }, c: MemoryCase, budget: MemoryBudget, hints: string[] = []): void {
  const need = estimatePeak(task, c);
  if (need <= budget.bytes) return;
  const fit = pixelsThatFit(task, c, budget.bytes);
  const ways = fit > 0 ? [`an image of at most ${(fit / 1e6).toFixed(1)} megapixels (resize or split it)`, ...hints] : [];
  if (c.samples > 1) ways.push('--samples 1');
  const callShare = (MEMORY_MODEL.margin * Math.max(1, c.processes) * MEMORY_MODEL.worker.perCallPixel * c.callPixels) / need;
  if (callShare > 0.2) ways.push('a smaller --batch or --tile');
  ways.push(budget.given ? 'a larger --max-memory' : 'a larger --max-memory if there is swap');
  throw new InputError(
    `${label}: ${task} of ${size.width}x${size.height} needs about ${gib(need)} of memory, more than ${budget.said}: it fits with ${ways.join(', or ')}`,
  );
}
