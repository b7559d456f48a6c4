import type { CommandModule } from 'yargs';
import { CHROMA_SAMPLES, colorizeOperator, luminance } from '../editing/colorize.js';
import { Tensor } from '../tensor.js';
import { withInputs, withCommonOptions } from './common.js';
import { runImageTask, type ImageArgs, type ImageTask } from './run.js';

const task: ImageTask<ImageArgs> = {
  name: 'colorize',
  defaultSteps: 2,
  // Several chroma samples, combined by their agreement (src/editing/colorize.ts).
  minSamples: CHROMA_SAMPLES,
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
      operator: colorizeOperator(gray),
      // The colours of a scene do not fit in a tile: they are sampled with the image halved until it fits one, then
      // the chroma is upsampled scale by scale with each scale's own luminance kept exactly. Refining the finer scales
      // with the model (two low-noise steps each, up to 16 tiles across) added colour where the model was unsure:
      // -0.34 dB on the validation photos (8 samples, disagreement weight 1), in 2.2x the time.
      scales: 'coarse-to-fine',
      maxSampledSide: 0,
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
