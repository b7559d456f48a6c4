import type { CommandModule } from 'yargs';
import { DEFAULT_STRENGTH, IMAGE_TASK_SPECS } from '../pipeline/tasks.js';
import { withInputs, withCommonOptions } from './common.js';
import { runImageTask, type ImageArgs, type ImageTask } from './run.js';

interface StrokeArgs extends ImageArgs {
  strength?: number;
}

const task: ImageTask<StrokeArgs> = { spec: IMAGE_TASK_SPECS.stroke };

export const strokeCommand: CommandModule<object, StrokeArgs> = {
  command: 'stroke <inputs..>',
  describe: 'Turn a stroke painting or rough sketch into an image (SDEdit-style)',
  builder: (y) =>
    withCommonOptions(
      withInputs(y)
        .option('strength', {
          type: 'number',
          describe: `How far from the strokes to go: 1 starts from pure noise, small values stay close (default: the model's stroke plan, else ${DEFAULT_STRENGTH}: sigma 5.38 on a 40-level grid)`,
        }),
      task.spec.defaultSteps,
    ) as never,
  handler: (args) => runImageTask(args, task),
};
