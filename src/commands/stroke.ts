import type { CommandModule } from 'yargs';
import { evenPlan, parseTs, planFromTs, strengthToIndex } from '../sampler/schedule.js';
import { withInputs, withCommonOptions } from './common.js';
import { runImageTask, startFromPicture, type ImageArgs, type ImageTask } from './run.js';

interface StrokeArgs extends ImageArgs {
  strength?: number;
}

/** --strength without a stored default: sigma 5.38 on a 40-level grid, the paper's start. */
const DEFAULT_STRENGTH = 0.6;

const task: ImageTask<StrokeArgs> = {
  name: 'stroke',
  defaultSteps: 2,
  // SDEdit: start from the stroke image noised to an intermediate level (set by --strength, else the model's stored
  // stroke plan); nothing is projected.
  plan(args, { card: { grid } }, k, stored) {
    if (args.ts !== undefined) return parseTs(grid, args.ts);
    if (args.strength === undefined && stored?.ts) return planFromTs(grid, stored.ts, `the model's stroke plan for ${k} evaluations`);
    return evenPlan(grid, k, strengthToIndex(grid, args.strength ?? DEFAULT_STRENGTH));
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
          describe: `How far from the strokes to go: 1 starts from pure noise, small values stay close (default: the model's stroke plan, else ${DEFAULT_STRENGTH}: sigma 5.38 on a 40-level grid)`,
        }),
      task.defaultSteps,
    ) as never,
  handler: (args) => runImageTask(args, task),
};
