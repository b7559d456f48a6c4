/**
 * The options JSON of POST /api/v1/edit: the CLI's knobs by their camelCase names (scale, noise, strength, quality,
 * seed, steps, ts, refineTs, eta, samples, views, start, strategy, fill, tile, overlap, resizeMask), checked as the CLI
 * checks its flags and refused in its words.
 */
import { OptionError } from '../errors.js';
import { checkKnobs, QUALITIES, type SamplingOptions, type TilingOptions } from '../pipeline/policy.js';
import type { ImageTaskName } from '../pipeline/registry.js';
import { FILLS } from '../editing/inpaint.js';
import { STRATEGIES, type TaskOptions } from '../pipeline/tasks.js';
import { START_KINDS } from '../sampler/sample.js';

export type StudioEditOptions = TaskOptions & SamplingOptions & TilingOptions & { seed?: number };

const NUMBERS = ['scale', 'noise', 'strength', 'seed', 'steps', 'eta', 'samples', 'tile', 'overlap'] as const;
const BOOLEANS = ['views', 'resizeMask'] as const;
const CHOICES: Record<string, readonly string[]> = { quality: QUALITIES, start: START_KINDS, strategy: STRATEGIES, fill: FILLS };
const STRINGS = ['ts', 'refineTs'] as const;
const KNOWN: readonly string[] = [...NUMBERS, ...BOOLEANS, ...Object.keys(CHOICES), ...STRINGS];

/** The options of one edit, or an OptionError naming the first bad one. */
export function parseOptions(task: ImageTaskName, text: string): StudioEditOptions {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new OptionError('options', () => `Expected a JSON object for options but received ${JSON.stringify(text.slice(0, 80))}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new OptionError('options', () => `Expected a JSON object for options but received ${JSON.stringify(value)}`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if (v === null || v === undefined) continue;
    if (!KNOWN.includes(key)) throw new OptionError(key, () => `unknown option "${key}" (known: ${KNOWN.join(', ')})`);
    if ((NUMBERS as readonly string[]).includes(key) && typeof v !== 'number') {
      throw new OptionError(key, (flag) => `Expected a number for ${flag} but received ${JSON.stringify(v)}`);
    }
    if ((BOOLEANS as readonly string[]).includes(key) && typeof v !== 'boolean') {
      throw new OptionError(key, (flag) => `Expected true or false for ${flag} but received ${JSON.stringify(v)}`);
    }
    if ((STRINGS as readonly string[]).includes(key) && typeof v !== 'string') {
      throw new OptionError(key, (flag) => `Expected a string for ${flag} but received ${JSON.stringify(v)}`);
    }
    const choices = CHOICES[key];
    if (choices && !choices.includes(v as string)) {
      throw new OptionError(key, (flag) => `Expected one of ${choices.join(', ')} for ${flag} but received ${String(v)}`);
    }
    out[key] = v;
  }
  const options = out as StudioEditOptions;
  if (options.refineTs !== undefined && task !== 'inpaint') throw new OptionError('refineTs', (flag) => `${flag} is for inpaint only (its finer levels of coarse to fine)`);
  checkKnobs(options);
  if (task === 'denoise' && options.noise === undefined) throw new OptionError('noise', (flag) => `denoise needs ${flag} (the noise's standard deviation, 0-255)`);
  return options;
}
