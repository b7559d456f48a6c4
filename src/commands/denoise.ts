import type { CommandModule } from 'yargs';
import { UsageError } from '../errors.js';
import { planFromLevel } from '../sampler/schedule.js';
import { withInputs, withCommonOptions } from './common.js';
import { runImageTask, startFromPicture, type ImageArgs, type ImageTask } from './run.js';

interface DenoiseArgs extends ImageArgs {
  noise: number;
}

const task: ImageTask<DenoiseArgs> = {
  name: 'denoise',
  defaultSteps: 1,
  startIsNoisy: true,
  plan(args, file, k) {
    if (args.ts !== undefined) throw new UsageError('denoise starts at the image\'s noise level: use --steps, not --ts');
    if (!(args.noise > 0 && args.noise <= 255)) {
      throw new UsageError(`Expected a number greater than 0 and at most 255 for --noise but received ${args.noise}`);
    }
    // The photo already is x at level sigma: one call f(y, sigma), with sigma in [-1, 1] units (255 = 2).
    return planFromLevel(file.card.grid, args.noise / 127.5, k);
  },
  prepare: async ({ picture }) => startFromPicture(picture),
};

export const denoiseCommand: CommandModule<object, DenoiseArgs> = {
  command: 'denoise <inputs..>',
  describe: 'Remove Gaussian noise of a known level',
  builder: (y) =>
    withCommonOptions(
      withInputs(y)
        .option('noise', { type: 'number', demandOption: true, requiresArg: true, describe: 'Noise standard deviation in 0-255 pixel units' }),
      task.defaultSteps,
    ) as never,
  handler: (args) => runImageTask(args, task),
};
