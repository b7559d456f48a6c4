import type { CommandModule } from 'yargs';
import { UsageError } from '../errors.js';
import { evenPlan, parseTs, planFromTs, strengthToIndex, type NoiseGrid } from '../sampler/schedule.js';
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
    const strength = args.strength ?? DEFAULT_STRENGTH;
    const start = strengthToIndex(grid, strength);
    checkRoom(grid, strength, start, k, args.steps === undefined);
    return evenPlan(grid, k, start);
  },
  prepare: async ({ picture }) => startFromPicture(picture),
};

/**
 * A small --strength starts near the end of the grid, leaving fewer levels than --steps evaluations need: say so in
 * terms of --strength (the flag that was too small), with the smallest strength that fits.
 */
function checkRoom(grid: NoiseGrid, strength: number, start: number, steps: number, defaultSteps: boolean): void {
  const levels = grid.size - 1 - start;
  if (!Number.isInteger(steps) || steps <= levels || steps > grid.size - 1) return;
  let least = 1;
  for (let s = 100; s >= 1; s--) {
    if (grid.size - 1 - strengthToIndex(grid, s / 100) >= steps) least = s / 100;
    else break;
  }
  const stepsFlag = defaultSteps ? `the default --steps ${steps}` : `--steps ${steps}`;
  throw new UsageError(
    `--strength ${strength} leaves ${levels} grid ${levels === 1 ? 'level' : 'levels'}, fewer than ${stepsFlag} needs: use --strength ${least} or more (or fewer --steps)`,
  );
}

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
