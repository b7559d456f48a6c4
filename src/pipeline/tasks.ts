/**
 * The image tasks as pure builders: a decoded image (and mask) and plain options in, an Edit out, with what the task
 * asks of the policy (its plan key, its own plan, its default number of evaluations). No files, console or network:
 * the CLI's commands read files and report around these, the studio decodes uploads and streams progress.
 */
import { CHROMA_SAMPLES, colorizeOperator, luminance } from '../editing/colorize.js';
import { inpaintOperator, type Fill } from '../editing/inpaint.js';
import { unconstrained, type Operator } from '../editing/operator.js';
import { holeWindows, type Rect } from '../editing/regions.js';
import { superresOperator, upsampleNearest } from '../editing/superres.js';
import { flagOf, InputError, OptionError } from '../errors.js';
import { resizeAlpha, resizeTensor, type AlphaPlane, type Picture } from '../io/image.js';
import type { ModelCard, PlanTask, TaskPlan } from '../runtime/card.js';
import type { Scales } from '../sampler/fullres.js';
import { evenPlan, parseTs, planFromLevel, planFromTs, strengthToIndex, type NoiseGrid, type Plan } from '../sampler/schedule.js';
import { Tensor } from '../tensor.js';
import { SUPERRES_SCALES, type ImageTaskName } from './registry.js';

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

export const STRATEGIES = ['auto', 'crop', 'tile', 'resize'] as const;
export type Strategy = (typeof STRATEGIES)[number];

/** The tasks' own options (the CLI's flags of the same names; the sampling knobs are the policy's). */
export interface TaskOptions {
  /** superres: 2, 4 or 8. */
  scale?: number;
  /** superres: refuse outputs with more pixels. */
  maxOutputPixels?: number;
  /** denoise: the noise's standard deviation in 0-255 units. */
  noise?: number;
  /** stroke: how far from the strokes (0-1]. */
  strength?: number;
  /** inpaint: where the model runs on big images. */
  strategy?: Strategy;
  /** inpaint: resize a mask of another size instead of refusing it. */
  resizeMask?: boolean;
  /** inpaint: what each hole is filled from before the model refines it (default auto). */
  fill?: Fill;
  /** The policy's plan choice, which stroke and denoise plans read. */
  steps?: number;
  ts?: string;
}

/** A decoded input: the image, and inpaint's mask (1 = fill) with the name to word its problems with. */
export interface EditInputs {
  picture: Picture;
  mask?: { label: string; mask: Tensor };
}

/**
 * What building may need besides the inputs: the tile side (inpaint's windows), the image's seed (inpaint's patch
 * search) and a place for warnings.
 */
export interface BuildContext {
  tile: number;
  seed: number;
  warn(message: string): void;
}

export interface TaskSpec {
  name: ImageTaskName;
  defaultSteps: number;
  /** The key of the task's stored defaults in the model's cm.task_plans (default: the task's name). */
  planTask?(o: TaskOptions): PlanTask;
  /** A plan the task makes itself (guided and denoising tasks start part-way), for K evaluations given the stored default. */
  plan?(o: TaskOptions, card: ModelCard, k: number, stored: TaskPlan | undefined): Plan;
  /** The start already carries noise of the plan's first level (denoising). */
  startIsNoisy?: boolean;
  /** The fewest samples the task combines by default (its operator's own combination needs several). */
  minSamples?: number;
  /** Whether it needs a mask. */
  needsMask?: boolean;
  /** The output's size for an input of this size (default: the same); throws to refuse the input before decoding. */
  outputSize?(o: TaskOptions, width: number, height: number, label: string): { width: number; height: number };
  /** What refuses too large an output, for the memory refusal's hint. */
  memoryHints?(o: TaskOptions): string[];
  /** The edit of one decoded image. */
  build(inputs: EditInputs, o: TaskOptions, context: BuildContext): Promise<Edit>;
}

/** An edit that starts from the input image and projects nothing (guided generation, denoising). */
export function startFromPicture(picture: Picture): Edit {
  return { width: picture.width, height: picture.height, alpha: picture.alpha, operator: unconstrained(picture.rgb) };
}

// ---- inpaint

/** auto: windows around the holes while they cover at most this share of the image, else the whole image. */
const CROP_AREA = 0.5;
/** A hole's window is this many times its size (at least a tile). */
const CONTEXT = 3;

/**
 * Where the model runs (src/sampler/fullres.ts): crop = a context window around each hole (CONTEXT x its size, at
 * least a tile), halved until it fits in a tile and refined back (coarse to fine), pasted back; tile = the whole
 * image coarse to fine; resize = the whole image shrunk to one tile and the result enlarged (known pixels kept).
 */
export function inpaintLayout(strategy: Strategy, mask: Tensor, tile: number): Pick<Edit, 'scales' | 'windows'> {
  if (strategy === 'resize') return { scales: 'resize' };
  if (strategy === 'tile') return { scales: 'coarse-to-fine' };
  const windows = holeWindows(mask, tile, CONTEXT);
  const area = windows.reduce((s, r) => s + r.w * r.h, 0);
  if (strategy === 'auto' && area > CROP_AREA * mask.w * mask.h) return { scales: 'coarse-to-fine' };
  return { scales: 'coarse-to-fine', windows };
}

/** 0/1 mask -> -1/1 values, so it travels through the [-1, 1] image resizer. */
function toSigned(mask: Tensor): Tensor {
  return mask.map((v) => 2 * v - 1);
}

function binarize(signed: Tensor, threshold: number): Tensor {
  return signed.map((v) => (v > threshold ? 1 : 0));
}

const inpaint: TaskSpec = {
  name: 'inpaint',
  defaultSteps: 2,
  needsMask: true,
  async build({ picture, mask: given }, o, { tile, seed, warn }) {
    if (given === undefined) throw new InputError(`${picture.label}: inpaint needs a mask`);
    const { label } = given;
    let mask = given.mask;
    if (mask.w !== picture.width || mask.h !== picture.height) {
      if (!o.resizeMask) {
        throw new InputError(
          `${label}: ${mask.w}x${mask.h} does not match image ${picture.label} ${picture.width}x${picture.height} (use ${flagOf('resizeMask')})`,
        );
      }
      mask = binarize(await resizeTensor(toSigned(mask), picture.width, picture.height, 'nearest'), 0);
    }
    if (!mask.data.some((v) => v > 0)) warn(`${label}: the mask is empty (no white pixels): nothing to fill`);
    return {
      width: picture.width,
      height: picture.height,
      alpha: picture.alpha,
      operator: inpaintOperator(picture.rgb, mask, { fill: o.fill ?? 'auto', seed }),
      ...inpaintLayout(o.strategy ?? 'auto', mask, tile),
    };
  },
};

// ---- colorize

const colorize: TaskSpec = {
  name: 'colorize',
  defaultSteps: 2,
  // Several chroma samples, combined by their agreement (src/editing/colorize.ts).
  minSamples: CHROMA_SAMPLES,
  async build({ picture }) {
    // Only the luminance of the input is kept: a gray image replicated over RGB has exactly that luminance.
    const lum = luminance(picture.rgb);
    const plane = picture.width * picture.height;
    const gray = new Tensor(1, 3, picture.height, picture.width);
    for (let c = 0; c < 3; c++) gray.data.set(lum.data, c * plane);
    return {
      width: picture.width,
      height: picture.height,
      alpha: picture.alpha,
      operator: colorizeOperator(gray),
      // The colours of a scene do not fit in a tile: they are sampled with the image halved until it fits one, then
      // the chroma is upsampled scale by scale with each scale's own luminance kept exactly. Refining the finer scales
      // with the model (two low-noise steps each, up to 16 tiles across) added colour where the model was unsure:
      // -0.34 dB on the validation photos (8 samples, disagreement weight 1), in 2.2x the time.
      scales: 'coarse-to-fine',
      maxSampledSide: 0,
    };
  },
};

// ---- superres

/** The default maxOutputPixels: 8192 x 8192. */
export const DEFAULT_MAX_OUTPUT_PIXELS = 8192 * 8192;
/** superres's default factor. */
export const DEFAULT_SCALE = 4;

function scaleOf(o: TaskOptions): number {
  const p = o.scale ?? DEFAULT_SCALE;
  if (!(SUPERRES_SCALES as readonly number[]).includes(p)) {
    throw new OptionError('scale', (flag) => `Expected one of ${SUPERRES_SCALES.join(', ')} for ${flag} but received ${p}`);
  }
  return p;
}

/** The output's size; refused over maxOutputPixels (from the input's header, before it is decoded). */
function superresSize(o: TaskOptions, w: number, h: number, label: string): { width: number; height: number } {
  const p = scaleOf(o);
  const max = o.maxOutputPixels ?? DEFAULT_MAX_OUTPUT_PIXELS;
  const [width, height] = [w * p, h * p];
  if (width * height > max) {
    const flag = flagOf('maxOutputPixels');
    throw new InputError(`${label}: the x${p} output would be ${width}x${height} (${width * height} pixels), more than ${flag} ${max} (raise it to allow)`);
  }
  return { width, height };
}

const superres: TaskSpec = {
  name: 'superres',
  defaultSteps: 2,
  planTask: (o) => `superres-x${scaleOf(o)}` as PlanTask,
  outputSize: superresSize,
  memoryHints: (o) => (scaleOf(o) > 2 ? ['a smaller -x'] : []),
  async build({ picture }, o) {
    const p = scaleOf(o);
    const { width, height } = superresSize(o, picture.width, picture.height, picture.label);
    return {
      width,
      height,
      alpha: picture.alpha && resizeAlpha(picture.alpha, picture.width, picture.height, width, height),
      // The reference: the low-res image upsampled by p (nearest), whose p x p patch means are the low-res pixels;
      // tiles at the output size.
      operator: superresOperator(upsampleNearest(picture.rgb, p), p),
    };
  },
};

// ---- stroke

/** strength without a stored default: sigma 5.38 on a 40-level grid, the paper's start. */
export const DEFAULT_STRENGTH = 0.6;

/**
 * A small strength starts near the end of the grid, leaving fewer levels than the evaluations need: say so in terms
 * of strength (the option that was too small), with the smallest strength that fits.
 */
function checkRoom(grid: NoiseGrid, strength: number, start: number, steps: number, defaultSteps: boolean): void {
  const levels = grid.size - 1 - start;
  if (!Number.isInteger(steps) || steps <= levels || steps > grid.size - 1) return;
  let least = 1;
  for (let s = 100; s >= 1; s--) {
    if (grid.size - 1 - strengthToIndex(grid, s / 100) >= steps) least = s / 100;
    else break;
  }
  const stepsFlag = defaultSteps ? `the default ${flagOf('steps')} ${steps}` : `${flagOf('steps')} ${steps}`;
  throw new OptionError(
    'strength',
    (flag) => `${flag} ${strength} leaves ${levels} grid ${levels === 1 ? 'level' : 'levels'}, fewer than ${stepsFlag} needs: use ${flag} ${least} or more (or fewer ${flagOf('steps')})`,
  );
}

const stroke: TaskSpec = {
  name: 'stroke',
  defaultSteps: 2,
  // SDEdit: start from the stroke image noised to an intermediate level (set by strength, else the model's stored
  // stroke plan); nothing is projected.
  plan(o, { grid }, k, stored) {
    if (o.ts !== undefined) return parseTs(grid, o.ts);
    if (o.strength === undefined && stored?.ts) return planFromTs(grid, stored.ts, `the model's stroke plan for ${k} evaluations`);
    const strength = o.strength ?? DEFAULT_STRENGTH;
    const start = strengthToIndex(grid, strength);
    checkRoom(grid, strength, start, k, o.steps === undefined);
    return evenPlan(grid, k, start);
  },
  build: async ({ picture }) => startFromPicture(picture),
};

// ---- denoise

const denoise: TaskSpec = {
  name: 'denoise',
  defaultSteps: 1,
  startIsNoisy: true,
  plan(o, card, k) {
    if (o.ts !== undefined) throw new OptionError('ts', (flag) => `denoise starts at the image's noise level: use ${flagOf('steps')}, not ${flag}`);
    const noise = o.noise as number;
    if (!(noise > 0 && noise <= 255)) {
      throw new OptionError('noise', (flag) => `Expected a number greater than 0 and at most 255 for ${flag} but received ${o.noise}`);
    }
    // The photo already is x at level sigma: one call f(y, sigma), with sigma in [-1, 1] units (255 = 2).
    return planFromLevel(card.grid, noise / 127.5, k);
  },
  build: async ({ picture }) => startFromPicture(picture),
};

/** Every image task's builder, by name. */
export const IMAGE_TASK_SPECS: Record<ImageTaskName, TaskSpec> = { inpaint, colorize, superres, stroke, denoise };
