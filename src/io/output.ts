/**
 * Where results go: output names, format from the extension, atomic writes (a temp file in the target folder, then a
 * rename or a no-clobber link) and stdout. A failed run leaves no partial file and never overwrites one without --force.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, lstatSync, mkdirSync, realpathSync, rmdirSync, statSync, unlinkSync, type Stats } from 'node:fs';
import { link, rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { isatty } from 'node:tty';
import { InputError, UsageError } from '../errors.js';
import type { ImageFormat } from './image.js';

export const STDOUT = '-';

export interface OutputOptions {
  /** -o: a file, a template with {stem} {task} {scale} {seed} {i} {ext}, or - for stdout. */
  output?: string;
  /** --out-dir: outputs go here (input folders mirrored below it). */
  outDir?: string;
  /** --name: the file name template when -o is not given. */
  name?: string;
  /** --format: png, jpg or webp (otherwise from -o's extension, else png). */
  format?: ImageFormat;
}

export interface NameVars {
  stem: string;
  task: string;
  i: number;
  seed: number;
  scale?: number;
  /** The input's folder (outputs go next to it by default) and its folder relative to the folder named. */
  inputDir?: string;
  relDir?: string;
}

export const DEFAULT_NAME = '{stem}.{task}.{ext}';
export const TEMPLATE_KEYS = ['stem', 'task', 'scale', 'seed', 'i', 'ext'];

function fill(template: string, vars: NameVars, ext: string): string {
  return template.replace(/\{(\w+)\}/g, (_whole, key: string) => {
    const v: Record<string, string | number | undefined> = { ...vars, ext };
    if (!TEMPLATE_KEYS.includes(key)) throw new UsageError(`${template}: unknown name variable {${key}} (use ${TEMPLATE_KEYS.map((k) => `{${k}}`).join(' ')})`);
    if (v[key] === undefined) throw new UsageError(`${template}: {${key}} has no value for this task`);
    return String(v[key]);
  });
}

export function formatOf(path: string): ImageFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.png') return 'png';
  if (ext === '.jpg' || ext === '.jpeg') return 'jpg';
  if (ext === '.webp') return 'webp';
  throw new UsageError(`${path}: unknown output format "${ext || '(none)'}" (use .png, .jpg or .webp, or --format)`);
}

/** The format of every output of a run: --format, else -o's extension, else PNG. */
export function outputFormat(opts: OutputOptions): ImageFormat {
  if (opts.format) return opts.format;
  if (opts.output !== undefined && opts.output !== STDOUT) return formatOf(opts.output);
  return 'png';
}

/** The path of one output. */
export function outputPath(opts: OutputOptions, vars: NameVars): string {
  const ext = outputFormat(opts);
  if (opts.output === STDOUT) return STDOUT;
  if (opts.output !== undefined) return fill(opts.output, vars, ext);
  const dir = opts.outDir !== undefined ? join(opts.outDir, vars.relDir ?? '') : (vars.inputDir ?? '.');
  return join(dir, fill(opts.name ?? DEFAULT_NAME, vars, ext));
}

/**
 * Refuse -o forms that cannot serve `count` outputs: stdout takes one image, a plain file name one. Nor is an image
 * written to a terminal (as gzip will not): stdout must be redirected.
 */
export function checkOutputCount(opts: OutputOptions, count: number): void {
  if (opts.output === STDOUT && isatty(1)) {
    throw new UsageError('stdout is a terminal: redirect it (> out.png), or name an output file with -o');
  }
  if (count <= 1 || opts.output === undefined) return;
  if (opts.output === STDOUT) throw new UsageError(`-o - writes one image, but this run makes ${count}: use --out-dir or a name template`);
  if (!/\{(stem|i|seed)\}/.test(opts.output)) {
    throw new UsageError(`-o ${opts.output}: this run writes ${count} images; use --out-dir, or put {i} or {stem} in the name`);
  }
}

/**
 * Fail before any work when an output cannot be written: its folder is missing (when `create`, for --out-dir, only
 * a folder that could be made: it is made when the output is written, so that a file that fails leaves no empty
 * folder), it exists and --force is off, or it exists and is not a regular file (a device, a pipe: never replaced,
 * even with --force).
 */
export function checkOutput(path: string, force: boolean, create = false): void {
  if (path === STDOUT) return;
  const dir = dirname(path);
  if (create && !existsSync(dir)) {
    const above = nearestExisting(dir);
    if (!statSync(above).isDirectory()) throw new InputError(`${path}: ${above} is not a folder`);
    try {
      accessSync(above, constants.W_OK);
    } catch (e) {
      throw new InputError(`${path}: cannot create folder ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    return;
  }
  if (!existsSync(dir)) throw new InputError(`${path}: folder ${dir} does not exist`);
  if (!statSync(dir).isDirectory()) throw new InputError(`${path}: ${dir} is not a folder`);
  const existing = statIfExists(path);
  if (existing) {
    refuseNonRegular(path, existing);
    if (!force) throw new InputError(`${path}: already exists (use --force to overwrite)`);
  }
}

function statIfExists(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (e) {
    // Said before any work, in the words writeOutput would use after it.
    if ((e as NodeJS.ErrnoException).code === 'ENAMETOOLONG') throw new InputError(`${path}: cannot write (file name too long)`);
    return undefined;
  }
}

function refuseNonRegular(path: string, s: Stats): void {
  if (s.isDirectory()) throw new InputError(`${path}: is a directory`);
  if (!s.isFile()) {
    const kind = s.isCharacterDevice() ? 'a character device' : s.isBlockDevice() ? 'a block device' : s.isFIFO() ? 'a named pipe' : s.isSocket() ? 'a socket' : 'not a regular file';
    throw new InputError(`${path}: exists and is ${kind}: refusing to replace it, even with --force (use -o - for stdout)`);
  }
}

/**
 * Where an output really goes: an existing symbolic link is followed, so that --force replaces the file it points
 * to (the link stays) and the temp file is made beside that file, never in the link's folder (/dev/stdout lives in
 * /dev).
 */
function writeTarget(path: string): string {
  const existing = statIfExists(path);
  if (!existing) return path;
  refuseNonRegular(path, existing);
  return lstatSync(path).isSymbolicLink() ? realpathSync(path) : path;
}

/** The path itself if it exists, else its nearest existing parent folder. */
function nearestExisting(path: string): string {
  const parent = dirname(path);
  return existsSync(path) || parent === path ? path : nearestExisting(parent);
}

/**
 * Where a path leads: its real path (symbolic links followed) when it exists, else the real path of its nearest
 * existing folder joined with the rest. Two paths that lead to the same file resolve to the same string.
 */
export function resolvedPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    const parent = dirname(path);
    return parent === path ? path : join(resolvedPath(parent), basename(path));
  }
}

/**
 * mkdir -p, one level at a time (Node's recursive mkdir spins forever under /proc); adds the folders made to `made`.
 * A folder that appears meanwhile (another process, e.g. a second shard, making the same --out-dir) is taken as made
 * by it: mkdir is tried first and EEXIST on a folder is success, so there is no window between a check and the mkdir.
 */
function makeDirs(dir: string, made: string[]): void {
  try {
    makeDir(dir, made);
  } catch (e) {
    const parent = dirname(dir);
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || parent === dir) throw e;
    makeDirs(parent, made);
    makeDir(dir, made);
  }
}

function makeDir(dir: string, made: string[]): void {
  try {
    mkdirSync(dir);
    made.push(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || !statSync(dir).isDirectory()) throw e;
  }
}

/** Remove folders made for an output that was not written, innermost first (each only while it is empty). */
function removeDirs(made: string[]): void {
  for (const dir of [...made].reverse()) {
    try {
      rmdirSync(dir);
    } catch {
      return; // another output has been written there meanwhile
    }
  }
}

/** Temp files being written right now: removed by removePendingTemps when the process is stopped. */
const pendingTemps = new Set<string>();

/** Remove every temp file a write in progress has made (synchronously: it runs from a signal handler). */
export function removePendingTemps(): void {
  for (const tmp of pendingTemps) {
    try {
      unlinkSync(tmp);
    } catch {
      // already renamed or removed
    }
  }
  pendingTemps.clear();
}

/**
 * Write bytes to path atomically; without force, an existing file is never replaced (checked again at the end). With
 * `create` a missing folder is made first (and removed again when the write fails).
 */
export async function writeAtomic(path: string, bytes: Uint8Array, force: boolean, create = false): Promise<void> {
  const made: string[] = [];
  if (create) {
    try {
      makeDirs(dirname(path), made);
    } catch (e) {
      removeDirs(made);
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw new InputError(`${path}: cannot create folder ${(e as NodeJS.ErrnoException).path ?? dirname(path)}: a file of that name is in the way`);
      if (code === 'ENOTDIR') throw new InputError(`${path}: cannot create folder ${dirname(path)}: a file is in the way on its path`);
      throw new InputError(`${path}: cannot create folder ${dirname(path)} (${code ?? (e as Error).message})`);
    }
  }
  try {
    await writeFileAtomic(path, bytes, force);
  } catch (e) {
    removeDirs(made);
    throw e;
  }
}

async function writeFileAtomic(path: string, bytes: Uint8Array, force: boolean): Promise<void> {
  const target = writeTarget(path);
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  // A name near the 255-byte limit leaves no room for the temp file's additions: then a short temp name.
  const long = Buffer.byteLength(basename(target)) + tag.length + 2 > 255;
  const tmp = join(dirname(target), long ? `.cm-${tag}` : `.${basename(target)}.${tag}`);
  pendingTemps.add(tmp);
  try {
    await writeFile(tmp, bytes, { flag: 'wx' });
    if (force) {
      await rename(tmp, target);
    } else {
      await link(tmp, target); // fails with EEXIST instead of replacing a file that appeared meanwhile
      await unlink(tmp);
    }
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new InputError(`${path}: already exists (use --force to overwrite)`);
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') throw new InputError(`${path}: cannot write (permission denied)`);
    if (code === 'ENOENT') throw new InputError(`${path}: folder ${dirname(path)} does not exist`);
    throw new InputError(`${path}: cannot write (${writeProblem(e)})`);
  } finally {
    pendingTemps.delete(tmp);
  }
}

/** Exit status when stdout's reader has gone (EPIPE): 128 + SIGPIPE, as a Unix filter killed by SIGPIPE reports. */
export const EXIT_BROKEN_PIPE = 141;

let stdoutFailure: Error | undefined;

/**
 * Catch stdout's write errors (instead of Node's crash with a stack trace): a closed pipe (`| head -c 10`) stops the
 * run at once and silently, like any filter killed by SIGPIPE; any other failure (a full disk, /dev/full) is kept
 * for stdoutProblem and fails the writes that meet it.
 */
export function guardStdout(): void {
  const onError = (e: NodeJS.ErrnoException): void => {
    if (e.code === 'EPIPE') brokenPipe();
    stdoutFailure ??= e;
  };
  process.stdout.on('error', onError);
  // stderr is where failures are said: if it is gone too, there is nobody to tell.
  process.stderr.on('error', () => undefined);
}

/** The first error writing to stdout, as one line (undefined while stdout is fine). */
export function stdoutProblem(): string | undefined {
  return stdoutFailure && `stdout: cannot write (${writeProblem(stdoutFailure)})`;
}

function brokenPipe(): never {
  removePendingTemps();
  process.exit(EXIT_BROKEN_PIPE);
}

/** Write bytes to stdout and wait until they are handed to the OS (never exit before that: it truncates). */
export function writeStdout(bytes: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stdoutFailure) return reject(new InputError(stdoutProblem() as string));
    process.stdout.write(bytes, (err) => {
      if (!err) return resolve();
      if ((err as NodeJS.ErrnoException).code === 'EPIPE') brokenPipe();
      stdoutFailure ??= err;
      reject(new InputError(`stdout: cannot write (${writeProblem(err)})`));
    });
  });
}

function writeProblem(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') return 'no space left on device';
  if (code === 'EDQUOT') return 'disk quota exceeded';
  if (code === 'EIO') return 'input/output error';
  if (code === 'EFBIG') return 'file too large';
  if (code === 'ENAMETOOLONG') return 'file name too long';
  return (e instanceof Error ? e.message : String(e)).replace(/^\w+: /, '');
}

/** Write one output: to stdout, or atomically to its file (its folder made first when `create`, for --out-dir). */
export async function writeOutput(path: string, bytes: Uint8Array, force: boolean, create = false): Promise<void> {
  if (path === STDOUT) await writeStdout(bytes);
  else await writeAtomic(path, bytes, force, create);
}
