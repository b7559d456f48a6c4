import type { CommandModule } from 'yargs';
import { evenPlan, parseTs, strengthToIndex } from '../sampler/schedule.js';
import { withInputs, withCommonOptions } from './common.js';
import { runImageTask, startFromPicture, type ImageArgs, type ImageTask } from './run.js';

interface StrokeArgs extends ImageArgs {
  strength: number;
}

const task: ImageTask<StrokeArgs> = {
  name: 'stroke',
  defaultSteps: 2,
  // SDEdit: start from the stroke image noised to an intermediate level (set by --strength); nothing is projected.
  plan(args, { card: { grid } }) {
    if (args.ts !== undefined) return parseTs(grid, args.ts);
    return evenPlan(grid, args.steps ?? task.defaultSteps, strengthToIndex(grid, args.strength));
  },
  prepare: async ({ picture }) => startFromPicture(picture),
};

export const strokeCommand: CommandModule<object, StrokeArgs> = {
  command: 'stroke <inputs..>',
  describe: 'Turn a stroke painting or rough sketch into an image (SDEdit-style)',
  builder: (y) =>
    withCommonOptions(
      withInputs(y)
        .option('strength', {
          type: 'number',
          default: 0.6,
          describe: 'How far from the strokes to go: 1 starts from pure noise, small values stay close (0.6: sigma 5.38 on a 40-level grid)',
        }),
      task.defaultSteps,
    ) as never,
  handler: (args) => runImageTask(args, task),
};
