import type { CommandModule } from 'yargs';
import { SUPERRES_SCALES } from '../pipeline/registry.js';
import { DEFAULT_MAX_OUTPUT_PIXELS, IMAGE_TASK_SPECS } from '../pipeline/tasks.js';
import { checkPixelFlag, withInputs, withCommonOptions } from './common.js';
import { runImageTask, type ImageArgs, type ImageTask } from './run.js';

interface SuperresArgs extends ImageArgs {
  scale: number;
  maxOutputPixels: number;
}

export const SCALES = [...SUPERRES_SCALES];
export { DEFAULT_MAX_OUTPUT_PIXELS };

const task: ImageTask<SuperresArgs> = {
  spec: IMAGE_TASK_SPECS.superres,
  nameVars: (args) => ({ scale: args.scale }),
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
      task.spec.defaultSteps,
    ) as never,
  handler: (args) => {
    checkPixelFlag('--max-output-pixels', args.maxOutputPixels);
    return runImageTask(args, task);
  },
};
