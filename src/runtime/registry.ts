/**
 * Model names: `--model NAME` looks for NAME.onnx in the package's models/ folder (shipped models), then in fixtures/
 * (the tiny test model); anything with a slash or an .onnx ending is a path.
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
  return undefined;
}

/** Every installed model: name and path, shipped models first. */
export function installedModels(): { name: string; path: string }[] {
  const seen = new Set<string>();
  const out: { name: string; path: string }[] = [];
  for (const dir of MODEL_DIRS) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir).sort()) {
      if (!f.endsWith('.onnx')) continue;
      const name = basename(f, '.onnx');
      if (seen.has(name)) continue;
      seen.add(name);
      out.push({ name, path: join(dir, f) });
    }
  }
  return out;
}
