import type { CommandModule } from 'yargs';
import { IMAGE_TASK_SPECS } from '../pipeline/tasks.js';
import { withInputs, withCommonOptions } from './common.js';
import { runImageTask, type ImageArgs, type ImageTask } from './run.js';

interface DenoiseArgs extends ImageArgs {
  noise: number;
}

const task: ImageTask<DenoiseArgs> = { spec: IMAGE_TASK_SPECS.denoise };

export const denoiseCommand: CommandModule<object, DenoiseArgs> = {
  command: 'denoise <inputs..>',
  describe: 'Remove Gaussian noise of a known level',
  builder: (y) =>
    withCommonOptions(
      withInputs(y)
        .option('noise', { type: 'number', demandOption: true, requiresArg: true, describe: 'Noise standard deviation in 0-255 pixel units' }),
      task.spec.defaultSteps,
    ) as never,
  handler: (args) => runImageTask(args, task),
};
