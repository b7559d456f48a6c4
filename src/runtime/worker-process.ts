/**
 * Starting the inference worker process (worker.ts) and collecting what it prints on stderr. bin/cm.js starts one
 * before it loads the CLI when the command will run a model (`prestartWorker`): node and onnxruntime then boot in the
 * worker while the CLI loads (each takes 0.2-0.4 s on a loaded 2-core machine), and loadModel adopts it. A worker that
 * is never adopted (a usage error, every output already there) is killed when the CLI exits. No onnxruntime here.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TASK_NAMES } from '../pipeline/registry.js';
import { STDERR_MARK } from './worker-protocol.js';

/** The last lines a process wrote on stderr (bounded), with a wait for the worker's marker line. */
export class StderrTail {
  private lines: string[] = [];
  private partial = '';
  private marks = 0;
  private waiters: (() => void)[] = [];
  private echo = false;

  /** From now on copy every line to our stderr (--debug), starting with those already collected. */
  echoToStderr(): void {
    if (this.echo) return;
    this.echo = true;
    for (const line of this.lines) process.stderr.write(`${line}\n`);
  }

  push(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) {
      if (line === STDERR_MARK) {
        this.marks++;
        for (const w of this.waiters.splice(0)) w();
        continue;
      }
      if (this.echo) process.stderr.write(`${line}\n`);
      this.lines.push(line);
      if (this.lines.length > 200) this.lines.shift();
    }
  }

  /** Resolves once the marker has come (or after `ms`, or at once when it already has). */
  mark(ms: number): Promise<void> {
    if (this.marks > 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  text(): string {
    return [...this.lines, this.partial].join('\n');
  }

  /** The last line that says something, for a worker that died. */
  last(): string | undefined {
    return [...this.lines, this.partial].map((l) => l.trim()).filter((l) => l !== '').pop();
  }
}

export interface WorkerProcess {
  child: ChildProcess;
  tail: StderrTail;
  /** Stop killing it when this process exits (it has exited, or was killed on purpose). */
  release(): void;
}

/** The worker's entry: dist/runtime/worker.js beside this file, or the built one when running from the sources (tests). */
function workerPath(): string {
  const beside = fileURLToPath(new URL('./worker.js', import.meta.url));
  return existsSync(beside) ? beside : fileURLToPath(new URL('../../dist/runtime/worker.js', import.meta.url));
}

/**
 * A new worker process. Nothing of it keeps this process alive (the caller refs the IPC channel while a request is
 * pending), and it is killed when this process exits.
 */
export function spawnWorker(): WorkerProcess {
  const child = fork(workerPath(), [], {
    serialization: 'advanced',
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    execArgv: [],
    env: { ...process.env, ORT_DISABLE_TELEMETRY: process.env.ORT_DISABLE_TELEMETRY ?? '1' },
  });
  const tail = new StderrTail();
  for (const stream of [child.stderr, child.stdout]) {
    stream?.setEncoding('utf8').on('data', (d: string) => tail.push(d));
    (stream as unknown as { unref?: () => void } | null)?.unref?.();
  }
  child.unref();
  child.channel?.unref();
  const kill = (): void => {
    child.kill('SIGKILL');
  };
  process.on('exit', kill);
  const release = (): void => {
    process.off('exit', kill);
  };
  child.once('exit', release);
  // A worker that cannot start (fork failed) reports through loadModel's own 'error' listener; keep Node from throwing.
  child.on('error', () => undefined);
  return { child, tail, release };
}

let prestarted: WorkerProcess | undefined;

/** The commands that run a model: every task, and the studio; others (models, --help, --version) never start a worker. */
const MODEL_COMMANDS: readonly string[] = [...TASK_NAMES, 'studio'];

/** Start a worker now when the command line will run a model in one (see the module comment). */
export function prestartWorker(argv: readonly string[]): void {
  if (prestarted || process.env.CM_INFERENCE === 'inline') return;
  const command = argv.find((a) => !a.startsWith('-'));
  if (command === undefined || !MODEL_COMMANDS.includes(command)) return;
  if (argv.some((a) => a === '--help' || a === '-h' || a === '--version')) return;
  prestarted = spawnWorker();
}

/** The prestarted worker if it is still alive, else a new one. */
export function takeWorker(): WorkerProcess {
  const w = prestarted;
  prestarted = undefined;
  if (w && w.child.exitCode === null && w.child.signalCode === null && w.child.connected) return w;
  if (w) {
    w.child.kill('SIGKILL');
    w.release();
  }
  return spawnWorker();
}
