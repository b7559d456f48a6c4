import type { CommandModule } from 'yargs';
import { unconstrained } from '../editing/operator.js';
import { UsageError } from '../errors.js';
import { gaussianNoise } from '../sampler/sample.js';
import { Tensor } from '../tensor.js';
import { withCommonOptions, type CommonArgs } from './common.js';
import { runGeneration } from './run.js';

interface GenerateArgs extends CommonArgs {
  count: number;
}

export const generateCommand: CommandModule<object, GenerateArgs> = {
  command: 'generate',
  describe: 'Sample new images from the model',
  builder: (y) =>
    withCommonOptions(
      y.option('count', { alias: 'n', type: 'number', default: 1, describe: 'How many images (one batch)' }),
      1,
    ) as never,
  handler: (args) =>
    runGeneration(args, {
      name: 'generate',
      defaultSteps: 1,
      build(file, rng) {
        if (!Number.isInteger(args.count) || args.count < 1 || args.count > 256) {
          throw new UsageError(`Expected an integer between 1 and 256 for --count but received ${args.count}`);
        }
        const res = file.card.resolution;
        return {
          count: args.count,
          operator: unconstrained(new Tensor(args.count, 3, res, res)),
          noise: gaussianNoise(rng),
        };
      },
    }),
};
