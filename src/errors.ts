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

export const EXIT_UNEXPECTED = 1;
