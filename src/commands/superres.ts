import type { CommandModule } from 'yargs';
import { superresOperator, upsampleNearest } from '../editing/superres.js';
import { InputError } from '../errors.js';
import type { PlanTask } from '../runtime/card.js';
import { resizeAlpha } from '../io/image.js';
import { checkPixelFlag, withInputs, withCommonOptions } from './common.js';
import { runImageTask, type ImageArgs, type ImageTask } from './run.js';

interface SuperresArgs extends ImageArgs {
  scale: number;
  maxOutputPixels: number;
}

export const SCALES = [2, 4, 8];
/** The default --max-output-pixels: 8192 x 8192. */
export const DEFAULT_MAX_OUTPUT_PIXELS = 8192 * 8192;

/** The output's size; refused over --max-output-pixels (from the input's header, before it is decoded). */
function outputSize(args: SuperresArgs, w: number, h: number, label: string): { width: number; height: number } {
  const p = args.scale;
  const [width, height] = [w * p, h * p];
  if (width * height > args.maxOutputPixels) {
    throw new InputError(
      `${label}: the x${p} output would be ${width}x${height} (${width * height} pixels), more than --max-output-pixels ${args.maxOutputPixels} (raise it to allow)`,
    );
  }
  return { width, height };
}

const task: ImageTask<SuperresArgs> = {
  name: 'superres',
  defaultSteps: 2,
  nameVars: (args) => ({ scale: args.scale }),
  planTask: (args) => `superres-x${args.scale}` as PlanTask,
  outputSize,
  memoryHints: (args) => (args.scale > 2 ? ['a smaller -x'] : []),
  async prepare({ picture }, args) {
    const p = args.scale;
    const { width, height } = outputSize(args, picture.width, picture.height, picture.label);
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

export const superresCommand: CommandModule<object, SuperresArgs> = {
  command: 'superres <inputs..>',
  describe: 'Upscale by 2, 4 or 8; each output patch keeps the mean of its input pixel',
  builder: (y) =>
    withCommonOptions(
      withInputs(y)
        .option('scale', { alias: 'x', choices: SCALES, default: 4, describe: 'Upscaling factor' })
        .option('max-output-pixels', {
          type: 'number',
          default: DEFAULT_MAX_OUTPUT_PIXELS,
          requiresArg: true,
          describe: 'Refuse inputs whose output would have more pixels than this, before any work (8192 x 8192)',
        }),
      task.defaultSteps,
    ) as never,
  handler: (args) => {
    checkPixelFlag('--max-output-pixels', args.maxOutputPixels);
    return runImageTask(args, task);
  },
};
