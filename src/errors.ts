/**
 * Typed errors: each known failure carries its exit code, and the one top-level handler in cli.ts prints
 * `cm: <message>` and sets process.exitCode. Anything else is a bug (exit 1).
 */
export class CmError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad flags or a bad combination of them (exit 2). */
export class UsageError extends CmError {
  constructor(message: string) {
    super(message, 2);
  }
}

/** A bad input or output file: missing, unreadable, corrupt, wrong size, already there (exit 3). */
export class InputError extends CmError {
  constructor(message: string) {
    super(message, 3);
  }
}

/** A missing, broken or non-`cm` model, or one that fails to run (exit 4). */
export class ModelError extends CmError {
  constructor(message: string) {
    super(message, 4);
  }
}

/**
 * A bad value of one named parameter of the pipeline (tile, steps, ts, strength, ...): `option` names it, and
 * `wording` words the problem for any name of it. The message names it as the CLI's flag (--tile), so that the CLI,
 * its --json records and the studio's 400 answers all say the same sentence; the studio adds `option` to its answer.
 */
export class OptionError extends UsageError {
  constructor(
    readonly option: string,
    readonly wording: (name: string) => string,
  ) {
    super(wording(flagOf(option)));
  }
}

/** An error's message with an OptionError's parameter named as `name` says (the CLI: --kebab-case flags). */
export function messageNaming(e: unknown, name: (option: string) => string): string {
  if (e instanceof OptionError) return e.wording(name(e.option));
  return e instanceof Error ? e.message : String(e);
}

/** The CLI's name of a pipeline parameter: tile -> --tile, maxPixels -> --max-pixels. */
export function flagOf(option: string): string {
  return `--${option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

export const EXIT_UNEXPECTED = 1;
