import type { CommandModule } from 'yargs';
import { inpaintOperator } from '../editing/inpaint.js';
import { InputError } from '../errors.js';
import { readMask, resizeTensor } from '../io/image.js';
import { maskFor } from '../io/inputs.js';
import { Tensor } from '../tensor.js';
import { withInputs, stdio, withCommonOptions } from './common.js';
import { pictureAt, runImageTask, type ImageArgs, type ImageTask } from './run.js';

interface InpaintArgs extends ImageArgs {
  mask: string;
  resizeMask: boolean;
}

const task: ImageTask<InpaintArgs> = {
  name: 'inpaint',
  defaultSteps: 2,
  async prepare({ picture, item }, args, _file, reporter) {
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
      async operatorAt(w, h) {
        if (w === picture.width && h === picture.height) return inpaintOperator(picture.rgb, mask);
        // At the model's size: a pixel is filled if any of the pixels it covers is; the full-size projection afterwards
        // restores every kept pixel exactly.
        const small = await resizeTensor(toSigned(mask), w, h, 'cubic');
        return inpaintOperator(await pictureAt(picture, w, h), binarize(small, -0.98));
      },
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
        .option('resize-mask', { type: 'boolean', default: false, describe: 'Resize a mask of another size instead of refusing it' }),
      task.defaultSteps,
    ) as never,
  handler: (args) => runImageTask(args, task),
};
