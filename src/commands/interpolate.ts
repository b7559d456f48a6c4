import type { CommandModule } from 'yargs';
import { slerpFrames } from '../editing/interpolate.js';
import { unconstrained } from '../editing/operator.js';
import { UsageError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { withCommonOptions, type CommonArgs } from './common.js';
import { runGeneration } from './run.js';

interface InterpolateArgs extends CommonArgs {
  frames: number;
}

export const interpolateCommand: CommandModule<object, InterpolateArgs> = {
  command: 'interpolate',
  describe: 'Frames between two random samples (spherical interpolation of their noises)',
  builder: (y) =>
    withCommonOptions(
      y.option('frames', { type: 'number', default: 8, describe: 'Number of frames, both ends included' }),
      1,
    ) as never,
  handler: (args) =>
    runGeneration(args, {
      name: 'interpolate',
      defaultSteps: 1,
      count(a) {
        if (!Number.isInteger(a.frames) || a.frames < 2 || a.frames > 256) {
          throw new UsageError(`Expected an integer between 2 and 256 for --frames but received ${a.frames}`);
        }
        return a.frames;
      },
      build(file, rng, count) {
        const res = file.card.resolution;
        const start = slerpFrames(rng.normalTensor(1, 3, res, res), rng.normalTensor(1, 3, res, res), count);
        return {
          count,
          operator: unconstrained(start.zerosLike()),
          // Step 0: the interpolated noises. Later steps: one noise shared by every frame, so frames stay a path.
          noise: (step, like) => {
            if (step === 0) return start;
            const z = rng.normalTensor(1, like.c, like.h, like.w);
            const out = new Tensor(like.n, like.c, like.h, like.w);
            for (let i = 0; i < like.n; i++) out.data.set(z.data, i * z.data.length);
            return out;
          },
        };
      },
    }),
};
