import type { CommandModule } from 'yargs';
import { colorizeOperator, luminance } from '../editing/colorize.js';
import { Tensor } from '../tensor.js';
import { withInputs, withCommonOptions } from './common.js';
import { runImageTask, type ImageArgs, type ImageTask } from './run.js';

/** Colours are sampled up to this many tiles across; above, they are upsampled. */
const COLOUR_TILES = 16;

const task: ImageTask<ImageArgs> = {
  name: 'colorize',
  defaultSteps: 2,
  async prepare({ picture }, _args, file) {
    // Only the luminance of the input is kept: a gray image replicated over RGB has exactly that luminance.
    const lum = luminance(picture.rgb);
    const plane = picture.width * picture.height;
    const gray = new Tensor(1, 3, picture.height, picture.width);
    for (let c = 0; c < 3; c++) gray.data.set(lum.data, c * plane);
    return {
      width: picture.width,
      height: picture.height,
      alpha: picture.alpha,
      operator: colorizeOperator(gray),
      // The colours of a scene do not fit in a tile: solved coarse to fine up to 16 tiles across, then the chroma is
      // upsampled and the image's own luminance kept exactly at full size.
      scales: 'coarse-to-fine',
      maxSampledSide: COLOUR_TILES * file.card.resolution,
    };
  },
};

export const colorizeCommand: CommandModule<object, ImageArgs> = {
  command: 'colorize <inputs..>',
  describe: 'Add colour to a grayscale image; the luminance of the input is kept',
  builder: (y) =>
    withCommonOptions(withInputs(y), task.defaultSteps) as never,
  handler: (args) => runImageTask(args, task),
};
