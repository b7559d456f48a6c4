/**
 * `cm studio`: the browser front end. Starts the local server (src/studio/server.ts), prints its one line on stdout,
 * and serves until Ctrl-C or SIGTERM.
 */
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { InputError, UsageError } from '../errors.js';
import { DEFAULT_MAX_PIXELS, fsProblem } from '../io/read.js';
import { DEVICES, type DeviceChoice } from '../runtime/model.js';
import { startStudio } from '../studio/server.js';
import { checkPixelFlag, maxThreads } from './common.js';
import { sayOnStderr } from './reporter.js';

interface StudioArgs {
  inputs: string[];
  port: number;
  host?: string;
  open: boolean;
  model?: string;
  device: DeviceChoice;
  gpuId?: number;
  threads: number;
  maxPixels?: number;
  maxMemory?: string;
  debug?: boolean;
}

const LOOPBACK = ['127.0.0.1', 'localhost', '::1'];

export const studioCommand: CommandModule<object, StudioArgs> = {
  command: 'studio [inputs..]',
  describe: 'Paint masks and strokes and run edits in a browser: a local web server (127.0.0.1 unless --host)',
  builder: (y) =>
    y
      .positional('inputs', { type: 'string', array: true, default: [], describe: 'Images the page may open (no other file is ever read)' })
      .option('port', { type: 'number', default: 7860, describe: 'Port to listen on (0: any free port)' })
      .option('host', { type: 'string', requiresArg: true, describe: 'Address to listen on (default 127.0.0.1; any other is reachable by others: warned)' })
      .option('open', { type: 'boolean', default: false, describe: 'Open the page in the default browser' })
      .option('model', { alias: 'm', type: 'string', requiresArg: true, describe: 'Model file or installed model name (see: cm models)' })
      .option('device', { choices: DEVICES, default: 'auto' as DeviceChoice, describe: 'Execution provider (auto: cuda, then cpu)' })
      .option('gpu-id', { type: 'number', requiresArg: true, describe: 'CUDA device number (default 0)' })
      .option('threads', { type: 'number', default: 0, describe: 'CPU threads for the model (0: onnxruntime default); with 2 or more, a second inference process shares them' })
      .option('max-pixels', { type: 'number', requiresArg: true, describe: `Refuse images with more pixels (413) (default ${DEFAULT_MAX_PIXELS}); uploads are capped at 4 bytes a pixel + 16 MiB` })
      .option('max-memory', { type: 'string', requiresArg: true, describe: 'Memory an edit may take, e.g. 4G (default: the machine\'s); larger edits are refused (413)' }) as never,
  handler: async (args) => {
    if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
      throw new UsageError(`Expected an integer between 0 and 65535 for --port but received ${args.port}`);
    }
    if (!Number.isInteger(args.threads) || args.threads < 0 || args.threads > maxThreads()) {
      throw new UsageError(`Expected an integer between 0 and ${maxThreads()} (4 per core) for --threads but received ${args.threads}`);
    }
    checkPixelFlag('--max-pixels', args.maxPixels);
    const host = args.host ?? '127.0.0.1';
    // The images it may serve: files that are there now (a missing one is said at once, not when the page asks).
    for (const path of args.inputs) {
      let s;
      try {
        s = statSync(path);
      } catch (e) {
        throw new InputError(`${path}: ${fsProblem(e)}`);
      }
      if (!s.isFile()) throw new InputError(`${path}: not a file (name image files)`);
    }
    let studio;
    try {
      studio = await startStudio({
        host,
        port: args.port,
        model: args.model,
        device: args.device,
        gpuId: args.gpuId,
        threads: args.threads,
        maxPixels: args.maxPixels,
        maxMemory: args.maxMemory,
        inputs: args.inputs,
        debug: args.debug,
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') throw new UsageError(`--port ${args.port}: already in use (--port 0 picks a free one)`);
      if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new UsageError(`--host ${host}: not an address of this machine`);
      if (code === 'EACCES') throw new UsageError(`--port ${args.port}: not allowed to listen there (ports below 1024 need privileges)`);
      throw e;
    }
    process.stdout.write(`cm studio: ${studio.url}\n`);
    if (args.host !== undefined && !LOOPBACK.includes(host)) {
      sayOnStderr('warning', `--host ${host}: the studio is reachable from other machines on that address, with no password: anyone who reaches it can run edits`);
    }
    if (args.open) openBrowser(studio.url);
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    await studio.close();
  },
};

/** The platform's opener; a failure to open is a warning, the server keeps running. */
function openBrowser(url: string): void {
  const [cmd, ...rest] = process.platform === 'darwin' ? ['open'] : process.platform === 'win32' ? ['cmd', '/c', 'start', ''] : ['xdg-open'];
  try {
    const child = spawn(cmd, [...rest, url], { stdio: 'ignore', detached: true });
    child.on('error', () => sayOnStderr('warning', `--open: could not start ${cmd}: open ${url} yourself`));
    child.unref();
  } catch {
    sayOnStderr('warning', `--open: could not start ${cmd}: open ${url} yourself`);
  }
}
