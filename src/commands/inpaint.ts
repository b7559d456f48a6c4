import type { CommandModule } from 'yargs';
import { FILLS, TEXTURED, type Fill } from '../editing/inpaint.js';
import { InputError } from '../errors.js';
import { readMask } from '../io/image.js';
import { maskFor } from '../io/inputs.js';
import { IMAGE_TASK_SPECS, STRATEGIES, type Strategy } from '../pipeline/tasks.js';
import { withInputs, stdio, withCommonOptions } from './common.js';
import { runImageTask, type ImageArgs, type ImageTask } from './run.js';

export { inpaintLayout } from '../pipeline/tasks.js';

interface InpaintArgs extends ImageArgs {
  mask: string;
  resizeMask: boolean;
  strategy: Strategy;
  fill: Fill;
}

const task: ImageTask<InpaintArgs> = {
  spec: IMAGE_TASK_SPECS.inpaint,
  otherInputs: (args, items) => [...new Set(items.map((item) => maskFor(args.mask, item)).filter((m): m is string => m !== undefined))],
  async readInputs({ picture, item }, args) {
    const maskPath = maskFor(args.mask, item);
    if (maskPath === undefined) throw new InputError(`${picture.label}: no mask named ${item.stem}.* in ${args.mask}`);
    return { picture, mask: await readMask(maskPath, { maxPixels: args.maxPixels }) };
  },
};

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
        })
        .option('refine-ts', {
          type: 'string',
          requiresArg: true,
          describe: "Exact plan of the finer levels where a hole's window is larger than a tile and goes coarse to fine: grid indices as --ts, e.g. 37,39 (default: the model's for inpainting, else sigma 0.4 and 0.1, never noisier than the plan)",
        }),
      task.spec.defaultSteps,
    ) as never,
  handler: (args) => runImageTask(args, task),
};
