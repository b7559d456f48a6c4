import type { CommandModule } from 'yargs';
import { IMAGE_TASK_SPECS } from '../pipeline/tasks.js';
import { withInputs, withCommonOptions } from './common.js';
import { runImageTask, type ImageArgs, type ImageTask } from './run.js';

const task: ImageTask<ImageArgs> = { spec: IMAGE_TASK_SPECS.colorize };

export const colorizeCommand: CommandModule<object, ImageArgs> = {
  command: 'colorize <inputs..>',
  describe: 'Add colour to a grayscale image; the luminance of the input is kept',
  builder: (y) =>
    withCommonOptions(withInputs(y), task.spec.defaultSteps) as never,
  handler: (args) => runImageTask(args, task),
};
