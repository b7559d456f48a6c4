/**
 * Everything a command says on stderr (warnings, the device line, progress) and the --json records on stdout.
 * Progress is an ora spinner only when stderr is a TTY; nothing but images and JSON records goes to stdout.
 */
import ora, { type Ora } from 'ora';

export interface OutputRecord {
  input: string | null;
  output: string | null;
  task: string;
  model: string | null;
  device: string | null;
  evaluations: number | null;
  ts: number[] | null;
  seed: number | null;
  seconds: number;
  status: 'ok' | 'error' | 'skipped';
  error?: string;
  /** With --shard: "I/N". */
  shard?: string;
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
    private readonly progressJson = false,
  ) {}

  /** A file that failed: always said, one line. */
  failure(message: string): void {
    this.pause(() => process.stderr.write(`cm: ${message}\n`));
  }

  /** A --progress json event on stderr. */
  event(e: Record<string, unknown>): void {
    if (this.progressJson) process.stderr.write(`${JSON.stringify(e)}\n`);
  }

  warn(message: string): void {
    if (this.quiet) return;
    this.pause(() => process.stderr.write(`cm: warning: ${message}\n`));
  }

  info(message: string): void {
    if (this.quiet) return;
    this.pause(() => process.stderr.write(`cm: ${message}\n`));
  }

  progress(text: string): void {
    if (this.quiet || !spinnerWanted()) return;
    if (this.spinner) this.spinner.text = text;
    else this.spinner = ora({ text, stream: process.stderr, discardStdin: false }).start();
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
