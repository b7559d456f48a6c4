/**
 * The yargs root: the command list, and the one place that maps errors to messages and exit codes.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { readFileSync } from 'node:fs';
import { colorizeCommand } from './commands/colorize.js';
import { denoiseCommand } from './commands/denoise.js';
import { generateCommand } from './commands/generate.js';
import { inpaintCommand } from './commands/inpaint.js';
import { interpolateCommand } from './commands/interpolate.js';
import { modelsCommand } from './commands/models.js';
import { strokeCommand } from './commands/stroke.js';
import { superresCommand } from './commands/superres.js';
import { DASH } from './commands/common.js';
import { CmError, EXIT_UNEXPECTED, UsageError } from './errors.js';

const commands = [
  inpaintCommand,
  colorizeCommand,
  superresCommand,
  strokeCommand,
  denoiseCommand,
  generateCommand,
  interpolateCommand,
  modelsCommand,
];

const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Run the CLI on argv; resolves to the exit code (never calls process.exit: stdout may still be flushing). */
export async function main(argv: string[] = hideBin(process.argv)): Promise<number> {
  const debug = argv.includes('--debug');
  // yargs turns a lone "-" positional into ""; carry it through as a token that the option coercions map back.
  const cli = yargs(argv.map((a) => (a === '-' ? DASH : a)))
    .scriptName('cm')
    .usage('$0 <command> [options]\n\nFast, offline image editing with consistency models.')
    .command(commands as never)
    .demandCommand(1, 'Name a command (see: cm --help)')
    .option('debug', { type: 'boolean', default: false, describe: "Print stack traces for errors, and the inference worker's own stderr" })
    .epilogue(
      'Exit codes: 0 ok, 1 unexpected error, 2 usage, 3 bad input or output file, 4 model problem.\n' +
        'Docs: README.md. Masks: white = fill. Images whose size differs from the model are edited at the model size and resized back.',
    )
    .strict()
    .middleware((argv) => {
      // A flag given twice would arrive as an array: refuse it rather than guess which one was meant.
      for (const [key, value] of Object.entries(argv)) {
        if (key !== '_' && key !== 'inputs' && Array.isArray(value) && key.length > 1 && !key.includes('-')) {
          throw new UsageError(`--${key} was given more than once`);
        }
      }
    }, true)
    .version(version)
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      throw msg ? new UsageError(msg) : err;
    });
  try {
    await cli.parseAsync();
    return Number(process.exitCode ?? 0);
  } catch (e) {
    if (e instanceof CmError) {
      process.stderr.write(`cm: ${e.message}\n`);
      if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
      return e.exitCode;
    }
    process.stderr.write(`cm: unexpected error: ${e instanceof Error ? e.message : String(e)}\n`);
    if (e instanceof Error && e.stack) process.stderr.write(`${debug ? e.stack : '(run with --debug for the stack trace)'}\n`);
    return EXIT_UNEXPECTED;
  }
}
