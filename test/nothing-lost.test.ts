/**
 * Nothing lost, nothing stuck (issue 18), end to end on the built binary and the tiny model: an output that is also an
 * input of the same run is refused (templates, --out-dir on the input folder, -o naming an input, links, masks,
 * mirrored trees); a signal ends the run within a second while a silent writer holds stdin or a named pipe open;
 * an image whose edit would not fit in memory is refused from its header, before it is decoded; error lines stay
 * one line whatever a file name holds; failed files' --json records have no output; a failed file leaves no empty
 * mirrored folder.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncOptions } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { estimatePeak, machineMemory } from '../src/commands/memory.js';
import { CM_BIN, TINY_MODEL } from './helpers/paths.js';

let dir: string;
const at = (...p: string[]): string => join(dir, ...p);

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

function cm(args: string[], options: SpawnSyncOptions = {}): Run {
  const start = Date.now();
  const r = spawnSync(process.execPath, [CM_BIN, ...args, '--model', TINY_MODEL, '--device', 'cpu', '-q'], { cwd: dir, timeout: 60_000, killSignal: 'SIGKILL', ...options });
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr), seconds: (Date.now() - start) / 1000 };
}

const lines = (s: string): string[] => s.split('\n').filter(Boolean);
const records = (r: Run): Record<string, unknown>[] => lines(r.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);

/** Every file under a folder, relative, sorted (folders end in /). */
function tree(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(`${p}/`, ...tree(root, p));
    else out.push(p);
  }
  return out.sort();
}

async function image(path: string, w: number, h: number, shift = 0): Promise<void> {
  const d = Buffer.alloc(w * h * 3);
  for (let i = 0; i < d.length; i++) d[i] = (i * 7 + shift) % 256;
  await sharp(d, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-nothing-lost-'));
  await image(at('0.png'), 64, 64, 0);
  await image(at('1.png'), 48, 48, 1);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('an output that is also an input of the run: refused for that file (exit 3), even with --force', () => {
  const snapshot = (...files: string[]): Buffer[] => files.map((f) => readFileSync(at(f)));

  test("-o '{i}.png': 1.png's output is 0.png, an input read later (it used to be replaced first)", () => {
    const before = snapshot('0.png', '1.png');
    const r = cm(['colorize', '1.png', '0.png', '-o', '{i}.png', '--force', '--batch', '1', '--json']);
    expect(r.status).toBe(3);
    expect(lines(r.stderr)).toEqual([
      'cm: 1.png: its output 0.png is an input of this run: an input is never replaced, even with --force (name another output)',
      'cm: 0.png: its output 1.png is an input of this run: an input is never replaced, even with --force (name another output)',
      'cm: 2 files: 0 done, 2 failed',
    ]);
    expect(snapshot('0.png', '1.png')).toEqual(before);
    expect(records(r).map((x) => [x.input, x.status, x.output])).toEqual([
      ['1.png', 'error', null],
      ['0.png', 'error', null],
    ]);
  });

  test('-o naming the input itself (editing in place): refused; another name works', () => {
    const before = snapshot('0.png');
    const r = cm(['colorize', '0.png', '-o', '0.png', '--force']);
    expect(r.status).toBe(3);
    expect(r.stderr).toBe('cm: 0.png: its output 0.png is the input itself: an input is never replaced, even with --force (name another output)\n');
    expect(snapshot('0.png')).toEqual(before);
    expect(cm(['colorize', '0.png', '-o', '0-colour.png']).status).toBe(0);
  });

  test('through a symbolic link or another spelling of the path: the same file, refused', () => {
    symlinkSync('1.png', at('link-to-1.png'));
    const before = snapshot('0.png', '1.png');
    const r = cm(['colorize', '0.png', '1.png', '-o', 'link-to-{stem}.png', '--force']);
    expect(r.status).toBe(3);
    // 0.png's output link-to-0.png is a new file: written; 1.png's leads to 1.png itself
    expect(lines(r.stderr)[0]).toBe(
      'cm: 1.png: its output link-to-1.png is the input itself: an input is never replaced, even with --force (name another output)',
    );
    expect(existsSync(at('link-to-0.png'))).toBe(true);
    const spelled = cm(['colorize', '0.png', '-o', `../${dir.split('/').pop()}/./0.png`, '--force']);
    expect(spelled.status).toBe(3);
    expect(spelled.stderr).toMatch(/is the input itself/);
    expect(snapshot('0.png', '1.png')).toEqual(before);
    expect(readlinkSync(at('link-to-1.png'))).toBe('1.png');
  });

  test('--out-dir on the input folder with a name that gives the inputs\' own names: every file refused', async () => {
    mkdirSync(at('photos'));
    await image(at('photos', 'a.png'), 32, 32, 3);
    await image(at('photos', 'b.png'), 32, 32, 4);
    const before = tree(at('photos')).map((f) => readFileSync(at('photos', f)));
    const r = cm(['colorize', 'photos', '--out-dir', 'photos', '--name', '{stem}.{ext}', '--force']);
    expect(r.status).toBe(3);
    expect(lines(r.stderr).slice(0, 2)).toEqual([
      'cm: photos/a.png: its output photos/a.png is the input itself: an input is never replaced, even with --force (name another output)',
      'cm: photos/b.png: its output photos/b.png is the input itself: an input is never replaced, even with --force (name another output)',
    ]);
    expect(tree(at('photos')).map((f) => readFileSync(at('photos', f)))).toEqual(before);
    // the default name is no input: written beside them
    expect(cm(['colorize', 'photos', '--out-dir', 'photos']).status).toBe(0);
    expect(tree(at('photos'))).toEqual(['a.colorize.png', 'a.png', 'b.colorize.png', 'b.png']);
  });

  test("-r mirrored onto the tree itself: a file whose output is an earlier run's output, found as an input, is refused", async () => {
    mkdirSync(at('tree', 'sub'), { recursive: true });
    await image(at('tree', 'sub', 'x.png'), 32, 32, 5);
    await image(at('tree', 'sub', 'x.colorize.png'), 32, 32, 6);
    const before = readFileSync(at('tree', 'sub', 'x.colorize.png'));
    // x.png's output tree/sub/x.colorize.png is also an input (an earlier run's output, found by the walk)
    const r = cm(['colorize', 'tree', '-r', '--out-dir', 'tree', '--force', '--json']);
    expect(r.status).toBe(3);
    expect(lines(r.stderr)[0]).toBe(
      'cm: tree/sub/x.png: its output tree/sub/x.colorize.png is an input of this run: an input is never replaced, even with --force (name another output)',
    );
    expect(readFileSync(at('tree', 'sub', 'x.colorize.png'))).toEqual(before);
    expect(records(r).map((x) => [x.input, x.status]).sort()).toEqual([
      ['tree/sub/x.colorize.png', 'ok'],
      ['tree/sub/x.png', 'error'],
    ]);
    // resuming with --skip-existing skips it instead: its output exists, and nothing is replaced
    const resumed = cm(['colorize', 'tree', '-r', '--out-dir', 'tree', '--skip-existing', '--json']);
    expect(resumed.status).toBe(0);
    expect(records(resumed).map((x) => [x.input, x.status]).sort()).toEqual([
      ['tree/sub/x.colorize.colorize.png', 'ok'],
      ['tree/sub/x.colorize.png', 'skipped'],
      ['tree/sub/x.png', 'skipped'],
    ]);
    expect(readFileSync(at('tree', 'sub', 'x.colorize.png'))).toEqual(before);
  });

  test("inpaint: the mask is an input too", async () => {
    await sharp(Buffer.alloc(64 * 64, 255), { raw: { width: 64, height: 64, channels: 1 } }).png().toFile(at('mask.png'));
    const before = snapshot('mask.png');
    const r = cm(['inpaint', '0.png', '--mask', 'mask.png', '-o', 'mask.png', '--force']);
    expect(r.status).toBe(3);
    expect(r.stderr).toBe('cm: 0.png: its output mask.png is a mask of this run: an input is never replaced, even with --force (name another output)\n');
    expect(snapshot('mask.png')).toEqual(before);
  });
});

/** Resolves when `text` has appeared on the child's stderr. */
function stderrOf(child: ChildProcess): { text: () => string; seen: (part: string) => Promise<void> } {
  let text = '';
  const waiters: [string, () => void][] = [];
  child.stderr?.on('data', (d: Buffer) => {
    text += d.toString();
    for (const [part, resolve] of waiters) if (text.includes(part)) resolve();
  });
  return { text: () => text, seen: (part) => new Promise((resolve) => (text.includes(part) ? resolve() : waiters.push([part, resolve]))) };
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; at: number }> {
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, at: Date.now() })));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A writer that holds a pipe open and never writes, for as long as the test wants. */
function silentWriter(): ChildProcess {
  return spawn('sleep', ['120'], { stdio: ['ignore', 'pipe', 'ignore'] });
}

describe('a signal while cm waits on a writer that never writes: exit 130 within a second', () => {
  test.each(['SIGTERM', 'SIGINT'] as const)('stdin from a silent pipe, %s', async (signal) => {
    const writer = silentWriter();
    try {
      // --device auto --debug: the device line says that the model is up; the next thing cm does is read stdin.
      const child = spawn(process.execPath, [CM_BIN, 'colorize', '-', '-o', 'stdin-out.png', '--model', TINY_MODEL, '--device', 'auto', '--debug'], {
        cwd: dir,
        stdio: [writer.stdout!, 'pipe', 'pipe'],
      });
      const err = stderrOf(child);
      const exit = exitOf(child);
      await err.seen('cm: device');
      await sleep(500);
      const sent = Date.now();
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const { code, at: ended } = await exit;
      clearTimeout(timer);
      console.info(`${signal} during a stalled stdin read: exit after ${ended - sent} ms`);
      expect(code).toBe(130);
      expect(lines(err.text()).filter((l) => l.startsWith('cm: ')).slice(-2)).toEqual(['cm: warning: interrupted: stopping (Ctrl-C again to stop at once)', 'cm: interrupted']);
      // the writer is still there, silent: cm did not wait for it (a second is the promise; a loaded machine gets 3)
      expect(writer.exitCode).toBeNull();
      expect(ended - sent).toBeLessThan(3000);
      expect(existsSync(at('stdin-out.png'))).toBe(false);
    } finally {
      writer.kill('SIGKILL');
    }
  });

  test.each(['SIGTERM', 'SIGINT'] as const)('a named pipe after a written file, %s: the file written before is kept, no temp file', async (signal) => {
    const fifo = at(`fifo-${signal}.png`);
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    // A child process holds the pipe open for writing (O_RDWR: no wait for a reader) and never writes.
    const writer = spawn('sh', ['-c', `exec 3<>"${fifo}"; exec sleep 120`], { stdio: 'ignore' });
    const out = `fifo-out-${signal}`;
    try {
      const holds = (): boolean => {
        try {
          return readdirSync(`/proc/${writer.pid}/fd`).some((fd) => readlinkSync(`/proc/${writer.pid}/fd/${fd}`) === fifo);
        } catch {
          return false;
        }
      };
      while (!holds()) await sleep(50);
      const child = spawn(process.execPath, [CM_BIN, 'colorize', '0.png', fifo, '--out-dir', out, '--batch', '1', '--json', '--model', TINY_MODEL, '--device', 'cpu', '-q'], { cwd: dir });
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      const err = stderrOf(child);
      const exit = exitOf(child);
      // 0.png's output is written before the pipe is read
      while (!stdout.includes('"status":"ok"') && child.exitCode === null) await sleep(50);
      await sleep(500);
      const sent = Date.now();
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const { code, at: ended } = await exit;
      clearTimeout(timer);
      console.info(`${signal} during a stalled named-pipe read: exit after ${ended - sent} ms`);
      expect(code).toBe(130);
      expect(err.text()).toBe('cm: interrupted\n');
      expect(ended - sent).toBeLessThan(3000);
      expect(tree(at(out))).toEqual(['0.colorize.png']);
      expect(lines(stdout).map((l) => JSON.parse(l)).map((x) => [x.input, x.status, x.output, x.error])).toEqual([
        ['0.png', 'ok', join(out, '0.colorize.png'), undefined],
        [fifo, 'error', null, 'interrupted'],
      ]);
    } finally {
      writer.kill('SIGKILL');
    }
  });
});

describe('memory: an edit that would not fit is refused before decoding (exit 3)', () => {
  const big = (): string => at('zeros-16000.png');
  beforeAll(async () => {
    // 16000 x 16000 zeros: a few hundred KB of PNG, under the default --max-pixels, 256 megapixels to edit
    await sharp({ create: { width: 16000, height: 16000, channels: 3, background: '#000' } })
      .toColourspace('b-w')
      .png()
      .toFile(big());
  }, 120_000);

  test('the 16000 x 16000 PNG with --max-memory 4G: one line with the need and how to lower it, at once', () => {
    expect(statSync(big()).size).toBeLessThan(1 << 20);
    const timed = existsSync('/usr/bin/time');
    const args = ['colorize', big(), '-o', 'zeros-out.png', '--max-memory', '4G'];
    const r = timed
      ? spawnSync('/usr/bin/time', ['-f', 'maxrss-kb %M', process.execPath, CM_BIN, ...args, '--model', TINY_MODEL, '--device', 'cpu', '-q'], { cwd: dir, timeout: 60_000 })
      : spawnSync(process.execPath, [CM_BIN, ...args, '--model', TINY_MODEL, '--device', 'cpu', '-q'], { cwd: dir, timeout: 60_000 });
    const stderr = String(r.stderr);
    // (GNU time adds its own lines: the peak, and "Command exited with non-zero status 3")
    const said = lines(stderr).filter((l) => l.startsWith('cm: '));
    expect(lines(stderr).filter((l) => !l.startsWith('cm: ') && !l.startsWith('maxrss-kb') && !l.startsWith('Command exited'))).toEqual([]);
    expect(r.status).toBe(3);
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(
      /^cm: .*zeros-16000\.png: colorize of 16000x16000 needs about \d+\.\d GiB of memory, more than --max-memory 4G: it fits with an image of at most \d+\.\d megapixels \(resize or split it\), or a larger --max-memory$/,
    );
    expect(existsSync(at('zeros-out.png'))).toBe(false);
    // Refused from the header: the 768 MB of decoded pixels (and the GBs of tensors after them) never existed.
    if (timed) expect(Number(/maxrss-kb (\d+)/.exec(stderr)?.[1]) * 1024).toBeLessThan(400 << 20);
  });

  test('without --max-memory the machine\'s memory is the budget: refused where it does not fit', () => {
    const need = estimatePeak('colorize', { pixels: 16000 * 16000, fileBytes: statSync(big()).size, samples: 1, callPixels: 4 * 192 * 192, modelBytes: 0 });
    if (need <= machineMemory()) {
      console.info(`skipped: this machine has ${machineMemory()} bytes, enough for the 16000 x 16000 edit (it would run for hours)`);
      return;
    }
    const r = cm(['colorize', big(), '-o', 'zeros-out.png']);
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/needs about \d+\.\d GiB of memory, more than the \d+\.\d GiB this machine has: it fits with an image of at most \d+\.\d megapixels \(resize or split it\), or a larger --max-memory if there is swap\n$/);
    expect(lines(r.stderr)).toHaveLength(1);
  });

  test('superres: the output size counts, and -x is one way to lower it', async () => {
    await image(at('small.png'), 1000, 1000);
    const r = cm(['superres', 'small.png', '-x', '8', '-o', 'sr-out.png', '--max-memory', '1G']);
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/^cm: small\.png: superres of 8000x8000 needs about .* a smaller -x, or a larger --max-memory\n$/);
  });

  test.each(['4000', '4X', '-1G', '0.5K', 'lots'])('--max-memory %s: a usage error (exit 2)', (value) => {
    const r = cm(['colorize', '0.png', '-o', 'mm.png', '--max-memory', value]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`cm: Expected a size of at least 1M such as 4G or 512M for --max-memory but received ${value}\n`);
  });

  test('--max-memory that fits: the edit runs; one that does not fit even the model calls: only the other ways', () => {
    expect(cm(['colorize', '0.png', '-o', 'mm-ok.png', '--max-memory', '4G']).status).toBe(0);
    const r = cm(['colorize', '0.png', '-o', 'mm-low.png', '--max-memory', '64M', '--batch', '64']);
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/^cm: 0\.png: colorize of 64x64 needs about [\d.]+ GiB of memory, more than --max-memory 64M: it fits with a smaller --batch or --tile, or a larger --max-memory\n$/);
    expect(existsSync(at('mm-low.png'))).toBe(false);
  });
});

describe('error lines and records', () => {
  test('a file name with a newline, a tab and an escape sequence: still one line, escaped as JSON does', () => {
    const name = 'bad\nname\t\u001b[31m.png';
    writeFileSync(at(name), 'not an image');
    const r = cm(['colorize', name, '0.png', '--out-dir', 'escaped']);
    expect(r.status).toBe(3);
    expect(lines(r.stderr)).toEqual(['cm: bad\\nname\\t\\u001b[31m.png: cannot decode image (not a supported image format)', 'cm: 2 files: 1 done, 1 failed']);
    // --progress json: JSON escapes it anyway
    const j = cm(['colorize', name, '-o', 'escaped.png', '--progress', 'json']);
    const events = lines(j.stderr).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.filter((e) => e.event === 'file')).toEqual([expect.objectContaining({ input: name, status: 'error', output: null })]);
  });

  test('--json: a failed file has output null; a written one names its file', () => {
    const r = cm(['colorize', '0.png', 'missing.png', '--out-dir', 'recs', '--json']);
    expect(r.status).toBe(3);
    expect(records(r).map((x) => [x.input, x.status, x.output])).toEqual([
      ['0.png', 'ok', join('recs', '0.colorize.png')],
      ['missing.png', 'error', null],
    ]);
  });

  test('-r: a file that fails leaves no empty mirrored folder (nor --out-dir, when nothing is written)', async () => {
    mkdirSync(at('mirror-in', 'good'), { recursive: true });
    mkdirSync(at('mirror-in', 'bad', 'deeper'), { recursive: true });
    await image(at('mirror-in', 'good', 'g.png'), 32, 32);
    writeFileSync(at('mirror-in', 'bad', 'deeper', 'b.png'), 'not an image');
    const r = cm(['colorize', 'mirror-in', '-r', '--out-dir', 'mirror-out']);
    expect(r.status).toBe(3);
    expect(tree(at('mirror-out'))).toEqual(['good/', 'good/g.colorize.png']);
    const none = cm(['colorize', 'mirror-in/bad', '-r', '--out-dir', 'mirror-none']);
    expect(none.status).toBe(3);
    expect(existsSync(at('mirror-none'))).toBe(false);
  });
});
