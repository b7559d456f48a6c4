/**
 * Model names: `--model NAME` looks for NAME.onnx in the package's models/ folder (shipped models), then in fixtures/
 * (the tiny test model); anything with a slash or an .onnx ending is a path, and so is a bare name that is no installed
 * model but names an existing file.
 */
import { existsSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const MODEL_DIRS = [join(ROOT, 'models'), join(ROOT, 'fixtures')];

/** The trained default when it has landed, otherwise the tiny random-weight test model. */
export const DEFAULT_MODEL_NAMES = ['default', 'tiny-random'];

export function isModelPath(spec: string): boolean {
  return spec.includes('/') || spec.includes('\\') || spec.endsWith('.onnx');
}

/** A path for --model, or undefined when no model of that name is installed. */
export function resolveModel(spec: string | undefined): string | undefined {
  if (spec !== undefined && isModelPath(spec)) return spec;
  for (const name of spec === undefined ? DEFAULT_MODEL_NAMES : [spec]) {
    for (const dir of MODEL_DIRS) {
      const p = join(dir, `${name}.onnx`);
      if (existsSync(p)) return p;
    }
  }
  // A bare name that is no installed model but names something here is taken as a path (a file, or a pipe that
  // readModelFile refuses with its own message).
  if (spec !== undefined && existsSync(spec)) return spec;
  return undefined;
}

/**
 * Every installed model (name and path): the shipped ones in models/, and the test model when it is the default. An
 * int8 variant beside its float model (NAME-int8.onnx, runtime/precision.ts) is no model of its own: --precision picks it.
 */
export function installedModels(): { name: string; path: string }[] {
  const [shipped] = MODEL_DIRS;
  const out = existsSync(shipped)
    ? readdirSync(shipped)
        .filter((f) => f.endsWith('.onnx') && !(f.endsWith('-int8.onnx') && existsSync(join(shipped, f.replace(/-int8\.onnx$/, '.onnx')))))
        .sort()
        .map((f) => ({ name: basename(f, '.onnx'), path: join(shipped, f) }))
    : [];
  const fallback = resolveModel(undefined);
  if (fallback !== undefined && !out.some((m) => m.path === fallback)) out.push({ name: basename(fallback, '.onnx'), path: fallback });
  return out;
}
