/**
 * Everything a command says on stderr (warnings, the device line, progress) and the --json records on stdout.
 * Progress is an ora spinner only when stderr is a TTY; nothing but images and JSON records goes to stdout.
 * With --progress json every stderr line is a JSON object: failures, warnings and the device and summary lines too.
 */
import ora, { type Ora } from 'ora';

let jsonStderr = false;

/** From here on, every line cm writes to stderr is a JSON object (--progress json). */
export function setJsonStderr(on: boolean): void {
  jsonStderr = on;
}

const SHORT_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

/**
 * Text as one line, whatever file names it holds: control characters (a newline, a carriage return, an escape
 * sequence) and the Unicode line and paragraph separators written as JSON escapes (\n, \r, \u001b, \u2028).
 */
export function oneLine(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => SHORT_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * One line on stderr: `cm: <message>` (`cm: warning: <message>` for warnings), or with --progress json
 * {"event": kind, "message": ..., ...extra}.
 */
export function sayOnStderr(kind: 'error' | 'warning' | 'info', message: string, extra: Record<string, unknown> = {}): void {
  if (jsonStderr) process.stderr.write(`${JSON.stringify({ event: kind, message, ...extra })}\n`);
  else process.stderr.write(`cm: ${kind === 'warning' ? 'warning: ' : ''}${oneLine(message)}\n`);
}

export interface OutputRecord {
  input: string | null;
  output: string | null;
  task: string;
  model: string | null;
  device: string | null;
  evaluations: number | null;
  ts: number[] | null;
  start?: string;
  eta?: number;
  samples?: number;
  seed: number | null;
  seconds: number;
  status: 'ok' | 'error' | 'skipped';
  error?: string;
  /** With --shard: "I/N". */
  shard?: string;
  /** Model tiles evaluated and skipped as settled (--flat-below), over all steps. */
  tiles?: { run: number; skipped: number };
}

/**
 * A spinner only on a real terminal: stderr a TTY of known width (ora loops forever clearing lines on a terminal
 * that reports 0 columns, as `script` gives) and not TERM=dumb.
 */
function spinnerWanted(): boolean {
  const err = process.stderr;
  return err.isTTY === true && (err.columns ?? 0) > 0 && process.env.TERM !== 'dumb';
}

export class Reporter {
  private spinner: Ora | undefined;

  constructor(
    private readonly quiet: boolean,
    private readonly json: boolean,
    readonly progressJson = false,
  ) {}

  /**
   * A file that failed: always said, one line. With --progress json the file's own event (status error, with the
   * message) is that line.
   */
  failure(message: string): void {
    if (this.progressJson) return;
    this.pause(() => sayOnStderr('error', message));
  }

  /** A --progress json event on stderr. */
  event(e: Record<string, unknown>): void {
    if (this.progressJson) process.stderr.write(`${JSON.stringify(e)}\n`);
  }

  warn(message: string): void {
    if (this.quiet) return;
    this.pause(() => sayOnStderr('warning', message));
  }

  /** A plain line (the device line, the summary), or with --progress json the event given. */
  info(message: string, event?: Record<string, unknown>): void {
    if (this.quiet) return;
    if (this.progressJson && event) return this.event(event);
    this.pause(() => sayOnStderr('info', message));
  }

  progress(line: string): void {
    if (this.quiet || this.progressJson || !spinnerWanted()) return;
    const text = oneLine(line);
    if (this.spinner) this.spinner.text = text;
    else this.spinner = ora({ text, stream: process.stderr, discardStdin: false, isEnabled: process.stderr.isTTY ? undefined : true }).start();
  }

  done(): void {
    this.spinner?.stop();
    this.spinner = undefined;
  }

  record(r: OutputRecord): void {
    if (this.json) process.stdout.write(`${JSON.stringify(r)}\n`);
  }

  private pause(write: () => void): void {
    if (!this.spinner) return write();
    this.spinner.clear();
    write();
    this.spinner.render();
  }
}
