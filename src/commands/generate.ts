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
      count(a) {
        if (!Number.isInteger(a.count) || a.count < 1 || a.count > 256) {
          throw new UsageError(`Expected an integer between 1 and 256 for --count but received ${a.count}`);
        }
        return a.count;
      },
      build(file, rng, count) {
        const res = file.card.resolution;
        return {
          count,
          operator: unconstrained(new Tensor(count, 3, res, res)),
          noise: gaussianNoise(rng),
        };
      },
    }),
};
