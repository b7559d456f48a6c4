/**
 * The yargs root: the command list, and the one place that maps errors to messages and exit codes.
 */
import yargs, { type CommandModule } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { readFileSync } from 'node:fs';
import { colorizeCommand } from './commands/colorize.js';
import { denoiseCommand } from './commands/denoise.js';
import { generateCommand } from './commands/generate.js';
import { inpaintCommand } from './commands/inpaint.js';
import { interpolateCommand } from './commands/interpolate.js';
import { modelsCommand } from './commands/models.js';
import { strokeCommand } from './commands/stroke.js';
import { studioCommand } from './commands/studio.js';
import { superresCommand } from './commands/superres.js';
import { DASH, stdio, VERBATIM } from './commands/common.js';
import { sayOnStderr, setJsonStderr } from './commands/reporter.js';
import { CmError, EXIT_UNEXPECTED, UsageError } from './errors.js';
import { TASK_NAMES, type TaskName } from './pipeline/registry.js';
import { guardStdout, stdoutProblem } from './io/output.js';

/** One command per task of the registry (a task without its command is a compile error), then the others. */
const taskCommands: Record<TaskName, CommandModule<object, never>> = {
  inpaint: inpaintCommand as never,
  colorize: colorizeCommand as never,
  superres: superresCommand as never,
  stroke: strokeCommand as never,
  denoise: denoiseCommand as never,
  generate: generateCommand as never,
  interpolate: interpolateCommand as never,
};
const commands = [...TASK_NAMES.map((t) => taskCommands[t]), modelsCommand, studioCommand];

const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/**
 * The arguments as yargs should see them: a lone "-" is kept as "-" (yargs would make it ""), and "--" ends the
 * options: every argument after it is taken as it is, as an input (yargs 18 drops them from the positionals).
 */
export function prepareArgs(argv: readonly string[]): string[] {
  const end = argv.indexOf('--');
  const options = end === -1 ? argv : argv.slice(0, end);
  const rest = end === -1 ? [] : argv.slice(end + 1);
  return [...options.map((a) => (a === '-' ? DASH : a)), ...rest.map((a) => VERBATIM + a)];
}

/** The value of an option in the raw arguments (before "--"), as `--name value` or `--name=value`. */
function rawOption(argv: readonly string[], name: string): string | undefined {
  const end = argv.indexOf('--');
  const options = end === -1 ? argv : argv.slice(0, end);
  let value: string | undefined;
  options.forEach((a, i) => {
    if (a === `--${name}`) value = options[i + 1];
    else if (a.startsWith(`--${name}=`)) value = a.slice(name.length + 3);
  });
  return value;
}

/**
 * yargs' validation messages, as one line in cm's wording: "Invalid values:\n  Argument: scale, Given: 3,
 * Choices: 2, 4, 8" becomes "Expected one of 2, 4, 8 for --scale but received 3".
 */
export function usageLine(msg: string, argv: readonly string[] = []): string {
  const text = msg.replaceAll(VERBATIM, '');
  const choices = [...text.matchAll(/Argument: (\S+), Given: (.*?), Choices: (.*)$/gm)];
  if (/^Invalid values?:/.test(text) && choices.length > 0) {
    return choices
      .map(([, arg, given, list]) => `Expected one of ${list.replaceAll('"', '').trim()} for --${arg} but received ${given.replaceAll('"', '')}`)
      .join('; ');
  }
  if (/^Not enough non-option arguments/.test(text)) {
    const command = argv.find((a) => !a.startsWith('-'));
    return `${command ? `${command}: ` : ''}name at least one input (an image file, a folder, or - for stdin)`;
  }
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' ');
}

/** Run the CLI on argv; resolves to the exit code (never calls process.exit: stdout may still be flushing). */
export async function main(argv: string[] = hideBin(process.argv)): Promise<number> {
  const debug = argv.includes('--debug');
  const json = rawOption(argv, 'progress') === 'json';
  setJsonStderr(json);
  guardStdout();
  const cli = yargs(prepareArgs(argv))
    .scriptName('cm')
    .usage('$0 <command> [options]\n\nFast, offline image editing with consistency models.')
    .command(commands as never)
    .demandCommand(1, 'Name a command (see: cm --help)')
    .option('debug', { type: 'boolean', default: false, describe: "Print stack traces for errors, and the inference worker's own stderr (onnxruntime's and the GPU drivers' messages)" })
    .epilogue(
      'Exit codes: 0 ok, 1 unexpected error, 2 usage, 3 bad input or output file, 4 model problem, 130 interrupted, ' +
        '141 stdout closed early.\n' +
        'Docs: README.md ("Failure modes": what is refused, and the input limits). Masks: white = fill. Images of any size ' +
        'are edited at full resolution (tiles, coarse to fine; see --tile).',
    )
    .strict()
    .middleware((argv) => {
      // A flag given twice would arrive as an array: refuse it rather than guess which one was meant.
      for (const [key, value] of Object.entries(argv)) {
        if (key !== '_' && key !== 'inputs' && Array.isArray(value) && key.length > 1 && !key.includes('-')) {
          throw new UsageError(`--${key} was given more than once`);
        }
      }
      // Arguments marked to pass yargs untouched (a lone "-", anything after "--") lose the mark.
      for (const [key, value] of Object.entries(argv)) {
        if (typeof value === 'string') argv[key] = stdio(value);
        else if (Array.isArray(value)) argv[key] = value.map((v) => (typeof v === 'string' ? stdio(v) : v));
      }
    }, true)
    .version(version)
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      throw msg ? new UsageError(usageLine(msg, argv)) : err;
    });
  let code: number;
  try {
    await cli.parseAsync();
    code = Number(process.exitCode ?? 0);
  } catch (e) {
    const known = e instanceof CmError;
    code = known ? e.exitCode : EXIT_UNEXPECTED;
    const message = known ? e.message : `unexpected error: ${e instanceof Error ? e.message : String(e)}`;
    const stack = e instanceof Error ? e.stack : undefined;
    // A stack trace only with --debug (and for a bug, a hint that it exists); in JSON, inside the one object.
    sayOnStderr('error', message, { exit: code, ...(json && debug && stack ? { stack } : {}) });
    if (!json && stack && (debug || !known)) process.stderr.write(`${debug ? stack : '(run with --debug for the stack trace)'}\n`);
  }
  // stdout failed where nothing else noticed (--json records on a full disk): that is no success either.
  const stdout = stdoutProblem();
  if (stdout !== undefined && code === 0) {
    sayOnStderr('error', stdout, { exit: 3 });
    code = 3;
  }
  return code;
}
