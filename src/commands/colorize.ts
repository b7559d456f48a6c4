import type { CommandModule } from 'yargs';
import { colorizeOperator, luminance } from '../editing/colorize.js';
import { Tensor } from '../tensor.js';
import { withInputs, withCommonOptions } from './common.js';
import { pictureAt, runImageTask, type ImageArgs, type ImageTask } from './run.js';

const task: ImageTask<ImageArgs> = {
  name: 'colorize',
  defaultSteps: 2,
  async prepare({ picture }) {
    // Only the luminance of the input is kept: a gray image replicated over RGB has exactly that luminance.
    const lum = luminance(picture.rgb);
    const plane = picture.width * picture.height;
    const gray = new Tensor(1, 3, picture.height, picture.width);
    for (let c = 0; c < 3; c++) gray.data.set(lum.data, c * plane);
    return {
      width: picture.width,
      height: picture.height,
      alpha: picture.alpha,
      async operatorAt(w, h) {
        return colorizeOperator(await pictureAt({ ...picture, rgb: gray }, w, h));
      },
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
