/**
 * Turning the command line's inputs into a list of images: files as given, folders expanded (one level, or the whole
 * tree with --recursive, remembering each file's folder relative to the one named, so that --out-dir can mirror it),
 * "-" for stdin. Masks: one file for every image, or a folder searched by the image's stem.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join, relative } from 'node:path';
import { UsageError } from '../errors.js';

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.gif', '.avif', '.heic'];

export interface InputItem {
  /** The path to read, or "-" for stdin. */
  path: string;
  /** File name without extension ("stdin" for stdin). */
  stem: string;
  /** The folder of the file relative to the folder named on the command line ("" for files named directly). */
  relDir: string;
  /** The folder named on the command line that the file was found in (absent for files named directly, stdin). */
  root?: string;
}

function isImageName(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(extname(name).toLowerCase()) && !name.startsWith('.');
}

function walk(root: string, dir: string, recursive: boolean, out: InputItem[]): void {
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (recursive && !entry.name.startsWith('.')) walk(root, full, recursive, out);
    } else if (isImageName(entry.name)) {
      out.push({ path: full, stem: basename(entry.name, extname(entry.name)), relDir: relative(root, dir), root });
    }
  }
}

/**
 * Expand the inputs in command-line order. A path that does not exist stays in the list (it fails on its own, as one
 * bad file of the batch); a folder with no images adds nothing.
 */
export function expandInputs(specs: readonly string[], recursive: boolean): InputItem[] {
  const out: InputItem[] = [];
  if (specs.filter((s) => s === '-').length > 1) throw new UsageError('- (stdin) can be given only once');
  for (const spec of specs) {
    if (spec === '-') {
      out.push({ path: '-', stem: 'stdin', relDir: '' });
    } else if (existsSync(spec) && statSync(spec).isDirectory()) {
      walk(spec, spec, recursive, out);
    } else {
      out.push({ path: spec, stem: basename(spec, extname(spec)), relDir: '' });
    }
  }
  return out;
}

/**
 * The mask for an image: the --mask file itself, or, when --mask is a folder, the image in it (or in the same
 * relative sub-folder) whose stem is the image's stem. Undefined when the folder has none.
 */
export function maskFor(mask: string, item: InputItem): string | undefined {
  if (mask === '-' || !existsSync(mask) || !statSync(mask).isDirectory()) return mask;
  for (const dir of [join(mask, item.relDir), mask]) {
    if (!existsSync(dir)) continue;
    const hit = readdirSync(dir)
      .sort()
      .find((f) => isImageName(f) && basename(f, extname(f)) === item.stem);
    if (hit) return join(dir, hit);
  }
  return undefined;
}

