/** Starting `cm studio` (the built CLI) on a free port for tests, and ending it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { CM_BIN, ROOT } from './paths.js';

export interface RunningStudio {
  url: string;
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  stop(): Promise<number | null>;
}

export function startStudio(args: string[]): Promise<RunningStudio> {
  const child = spawn(process.execPath, [CM_BIN, 'studio', '--port', '0', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cm studio did not start: ${err}`)), 30_000);
    child.on('exit', (code) => reject(new Error(`cm studio exited ${code}: ${err}`)));
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /^cm studio: (http:\/\/[0-9.]+:\d+\/)\n/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        url: m[1],
        child,
        stdout: () => out,
        stderr: () => err,
        stop: () =>
          new Promise((done) => {
            if (child.exitCode !== null) return done(child.exitCode);
            child.once('exit', (code) => done(code));
            child.kill('SIGTERM');
          }),
      });
    });
  });
}
