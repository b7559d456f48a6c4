import type { CommandModule } from 'yargs';
import { FILLS, inpaintOperator, TEXTURED, type Fill } from '../editing/inpaint.js';
import { InputError } from '../errors.js';
import { readMask, resizeTensor } from '../io/image.js';
import { maskFor } from '../io/inputs.js';
import { Tensor } from '../tensor.js';
import { chooseTiling, withInputs, stdio, withCommonOptions } from './common.js';
import { runImageTask, type Edit, type ImageArgs, type ImageTask } from './run.js';
import { holeWindows } from '../editing/regions.js';

interface InpaintArgs extends ImageArgs {
  mask: string;
  resizeMask: boolean;
  strategy: Strategy;
  fill: Fill;
}

const STRATEGIES = ['auto', 'crop', 'tile', 'resize'] as const;
type Strategy = (typeof STRATEGIES)[number];

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

const task: ImageTask<InpaintArgs> = {
  name: 'inpaint',
  defaultSteps: 2,
  otherInputs: (args, items) => [...new Set(items.map((item) => maskFor(args.mask, item)).filter((m): m is string => m !== undefined))],
  async prepare({ picture, item, seed }, args, file, reporter) {
    const maskPath = maskFor(args.mask, item);
    if (maskPath === undefined) throw new InputError(`${picture.label}: no mask named ${item.stem}.* in ${args.mask}`);
    const { label, mask: raw } = await readMask(maskPath, { maxPixels: args.maxPixels });
    let mask = raw;
    if (mask.w !== picture.width || mask.h !== picture.height) {
      if (!args.resizeMask) {
        throw new InputError(
          `${label}: ${mask.w}x${mask.h} does not match image ${picture.label} ${picture.width}x${picture.height} (use --resize-mask)`,
        );
      }
      mask = binarize(await resizeTensor(toSigned(mask), picture.width, picture.height, 'nearest'), 0);
    }
    if (!mask.data.some((v) => v > 0)) reporter.warn(`${label}: the mask is empty (no white pixels): nothing to fill`);
    return {
      width: picture.width,
      height: picture.height,
      alpha: picture.alpha,
      operator: inpaintOperator(picture.rgb, mask, { fill: args.fill, seed }),
      ...inpaintLayout(args.strategy, mask, chooseTiling(args, file).tile),
    };
  },
};

/** 0/1 mask -> -1/1 values, so it travels through the [-1, 1] image resizer. */
function toSigned(mask: Tensor): Tensor {
  return mask.map((v) => 2 * v - 1);
}

function binarize(signed: Tensor, threshold: number): Tensor {
  return signed.map((v) => (v > threshold ? 1 : 0));
}

export const inpaintCommand: CommandModule<object, InpaintArgs> = {
  command: 'inpaint <inputs..>',
  describe: 'Fill the white part of a mask; every other pixel is returned exactly',
  builder: (y) =>
    withCommonOptions(
      withInputs(y)
        .option('mask', { type: 'string', demandOption: true, requiresArg: true, coerce: stdio, describe: 'Mask image (white = fill, black = keep), or a folder of masks named like the inputs' })
        .option('resize-mask', { type: 'boolean', default: false, describe: 'Resize a mask of another size instead of refusing it' })
        .option('fill', {
          choices: FILLS,
          default: 'auto' as Fill,
          describe: `What each hole is filled from before the model refines it: patch = texture copied from the known pixels around the hole (PatchMatch completion, seeded by --seed), smooth = the harmonic fill (the border's colours blended smoothly), auto = patch where the known pixels around a hole are textured (their mean squared difference to their 3x3 mean above ${TEXTURED}, values in [-1, 1]), smooth where they are not`,
        })
        .option('strategy', {
          choices: STRATEGIES,
          default: 'auto' as Strategy,
          describe: 'Where the model runs on images larger than it: crop = a window around each hole, tile = the whole image coarse to fine, resize = shrunk to the model and enlarged back (auto: crop unless the windows cover half the image)',
        }),
      task.defaultSteps,
    ) as never,
  handler: (args) => runImageTask(args, task),
};
