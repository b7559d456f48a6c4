/**
 * Where results go: output names, format from the extension, atomic writes (a temp file in the target folder, then a
 * rename or a no-clobber link) and stdout. A failed run leaves no partial file and never overwrites one without --force.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { link, rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { InputError, UsageError } from '../errors.js';
import type { ImageFormat } from './image.js';

export const STDOUT = '-';

/** `<stem>.<task>.png` next to the input. */
export function defaultOutputPath(input: string, task: string): string {
  const stem = basename(input, extname(input));
  return join(dirname(input), `${stem}.${task}.png`);
}

/** Fill `{i}` in an output template; several outputs need it. */
export function expandOutput(template: string, i: number, count: number): string {
  if (template === STDOUT) {
    if (count > 1) throw new UsageError(`-o - writes one image, but this run makes ${count}: use a file template with {i}`);
    return STDOUT;
  }
  if (count > 1 && !template.includes('{i}')) {
    throw new UsageError(`-o ${template}: this run writes ${count} images; put {i} in the name, e.g. out-{i}.png`);
  }
  return template.replaceAll('{i}', String(i));
}

export function formatOf(path: string): ImageFormat {
  if (path === STDOUT) return 'png';
  const ext = extname(path).toLowerCase();
  if (ext === '.png') return 'png';
  if (ext === '.jpg' || ext === '.jpeg') return 'jpg';
  if (ext === '.webp') return 'webp';
  throw new UsageError(`${path}: unknown output format "${ext || '(none)'}" (use .png, .jpg or .webp)`);
}

/** Fail before any work when an output cannot be written: its folder is missing, or it exists and --force is off. */
export function checkOutput(path: string, force: boolean): void {
  if (path === STDOUT) return;
  const dir = dirname(path);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new InputError(`${path}: folder ${dir} does not exist`);
  if (existsSync(path)) {
    if (statSync(path).isDirectory()) throw new InputError(`${path}: is a directory`);
    if (!force) throw new InputError(`${path}: already exists (use --force to overwrite)`);
  }
}

/** Write bytes to path atomically; without force, an existing file is never replaced (checked again at the end). */
export async function writeAtomic(path: string, bytes: Uint8Array, force: boolean): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, bytes, { flag: 'wx' });
    if (force) {
      await rename(tmp, path);
    } else {
      await link(tmp, path); // fails with EEXIST instead of replacing a file that appeared meanwhile
      await unlink(tmp);
    }
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new InputError(`${path}: already exists (use --force to overwrite)`);
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') throw new InputError(`${path}: cannot write (permission denied)`);
    if (code === 'ENOENT') throw new InputError(`${path}: folder ${dirname(path)} does not exist`);
    throw new InputError(`${path}: cannot write (${(e as Error).message})`);
  }
}

/** Write bytes to stdout and wait until they are handed to the OS (never exit before that: it truncates). */
export function writeStdout(bytes: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(bytes, (err) => (err ? reject(err) : resolve()));
  });
}

export async function writeOutput(path: string, bytes: Uint8Array, force: boolean): Promise<void> {
  if (path === STDOUT) await writeStdout(bytes);
  else await writeAtomic(path, bytes, force);
}
