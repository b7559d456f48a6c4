/**
 * Hostile inputs, full disks and broken pipes (issue 13), end to end on the built binary and the tiny model: devices,
 * named pipes, endless stdin, truncated GIFs, absurd flags and metadata, broken models, /dev/full, closed pipes,
 * device nodes as outputs, and --progress json's stderr. Each ends in one line and its exit code, quickly, with
 * nothing written.
 */
import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CM_BIN, ROOT, TINY_MODEL } from './helpers/paths.js';

let dir: string;
const at = (...p: string[]): string => join(dir, ...p);
const BAD_MODELS = join(ROOT, 'fixtures', 'bad');

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  seconds: number;
}

/** The binary, killed (SIGKILL: a hang must not survive the test) after `timeout` ms. */
function run(args: string[], options: SpawnSyncOptions = {}, timeout = 40_000): Run {
  const start = Date.now();
  const r = spawnSync(process.execPath, [CM_BIN, ...args], { cwd: dir, timeout, killSignal: 'SIGKILL', maxBuffer: 64 << 20, ...options });
  return { status: r.status, signal: r.signal, stdout: r.stdout as Buffer, stderr: String(r.stderr), seconds: (Date.now() - start) / 1000 };
}

/** On the tiny model, on the CPU, quietly. */
function cm(args: string[], options: SpawnSyncOptions = {}, timeout?: number): Run {
  const model = args.includes('--model') ? [] : ['--model', TINY_MODEL];
  return run([...args, ...model, '--device', 'cpu', '-q'], options, timeout);
}

const lines = (s: string): string[] => s.split('\n').filter(Boolean);

/** Exactly one stderr line, `cm: ` and the message. */
function oneLine(r: Run, message: string | RegExp): void {
  expect(lines(r.stderr)).toHaveLength(1);
  if (typeof message === 'string') expect(r.stderr).toBe(`cm: ${message}\n`);
  else expect(r.stderr).toMatch(message);
}

function files(): string[] {
  return readdirSync(dir).sort();
}

async function image(path: string, w: number, h: number): Promise<void> {
  const d = Buffer.alloc(w * h * 3);
  for (let i = 0; i < d.length; i++) d[i] = (i * 7) % 256;
  await sharp(d, { raw: { width: w, height: h, channels: 3 } }).toFile(path);
}

function mkfifo(path: string): void {
  const r = spawnSync('mkfifo', [path]);
  if (r.status !== 0) throw new Error(`mkfifo ${path} failed: ${r.stderr}`);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-hostile-'));
  await image(at('img.png'), 64, 64);
  await image(at('low16.png'), 16, 16);
  await image(at('-dash.png'), 64, 64);
  // An animated GIF of three 64x64 frames: whole, cut off in its last frame, and without only its trailer byte.
  const frames = Buffer.alloc(64 * 192 * 3);
  for (let i = 0; i < frames.length; i++) frames[i] = (i * 13 + Math.floor(i / 12288) * 80) % 256;
  const gif = await sharp(frames, { raw: { width: 64, height: 192, channels: 3, pageHeight: 64 } }).gif().toBuffer();
  writeFileSync(at('anim.gif'), gif);
  writeFileSync(at('cut.gif'), gif.subarray(0, gif.length - Math.floor(gif.length / 4)));
  writeFileSync(at('no-trailer.gif'), gif.subarray(0, gif.length - 1));
  mkfifo(at('fifo.png'));
  mkfifo(at('fifo.onnx'));
  mkfifo(at('modelpipe'));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('what is not a regular file, or never ends, is refused at once (exit 3)', () => {
  test.each(['/dev/zero', '/dev/urandom'])('%s as an input: refused without reading it', (dev) => {
    const r = cm(['colorize', dev, '-o', 'dev.png']);
    expect(r.status).toBe(3);
    oneLine(r, `${dev}: is a character device, not an image file`);
    expect(existsSync(at('dev.png'))).toBe(false);
  });

  test('stdin from /dev/zero stops at the byte limit that --max-pixels sets', () => {
    const zero = openSync('/dev/zero', 'r');
    try {
      const r = cm(['colorize', '-', '-o', 'z.png', '--max-pixels', '1000'], { stdio: [zero, 'pipe', 'pipe'] });
      expect(r.status).toBe(3);
      // 4 bytes a pixel of --max-pixels, plus 16 MiB
      oneLine(r, /^cm: stdin: more data than the input limit of 16\.0 MiB \(4 bytes a pixel of --max-pixels, plus 16 MiB; raise --max-pixels to allow more\)\n$/);
      expect(existsSync(at('z.png'))).toBe(false);
    } finally {
      closeSync(zero);
    }
  });

  test('a file over the byte limit is refused by its size, before it is read', () => {
    writeFileSync(at('sparse.png'), readFileSync(at('img.png')));
    truncateSync(at('sparse.png'), 40 << 20); // 40 MiB, sparse: nothing to read but zeros
    const r = cm(['colorize', 'sparse.png', '-o', 'sparse-out.png', '--max-pixels', '4096']);
    expect(r.status).toBe(3);
    oneLine(r, /^cm: sparse\.png: is 40\.0 MiB, over the input limit of 16\.0 MiB \(4 bytes a pixel/);
    rmSync(at('sparse.png'));
  });

  test('a file over 64 KiB with too many pixels is refused from its header', async () => {
    const d = randomBytes(400 * 400 * 3); // noise: a PNG of about 480 KB
    await sharp(d, { raw: { width: 400, height: 400, channels: 3 } }).png().toFile(at('noisy.png'));
    expect(statSync(at('noisy.png')).size).toBeGreaterThan(64 << 10);
    const r = cm(['colorize', 'noisy.png', '-o', 'noisy-out.png', '--max-pixels', '1000']);
    expect(r.status).toBe(3);
    oneLine(r, 'noisy.png: cannot decode image (larger than the pixel limit)');
    writeFileSync(at('noise.png'), d);
    const garbage = cm(['colorize', 'noise.png', '-o', 'noisy-out.png']);
    expect(garbage.status).toBe(3);
    oneLine(garbage, 'noise.png: cannot decode image (not a supported image format)');
  });

  test('a named pipe with no writer: exit 3 at once', () => {
    const r = cm(['colorize', 'fifo.png', '-o', 'fifo-out.png']);
    expect(r.status).toBe(3);
    oneLine(r, 'fifo.png: a named pipe with no writer (nothing to read)');
    expect(r.seconds).toBeLessThan(30);
  });

  test('a pipe with a writer is read like stdin (process substitution, /dev/stdin)', () => {
    const r = spawnSync('bash', ['-c', `${JSON.stringify(process.execPath)} ${JSON.stringify(CM_BIN)} colorize <(cat img.png) -o sub.png --model ${JSON.stringify(TINY_MODEL)} --device cpu -q`], { cwd: dir, timeout: 40_000 });
    expect([r.status, String(r.stderr)]).toEqual([0, '']);
    expect(existsSync(at('sub.png'))).toBe(true);
    // (a shell's pipe: Node's own child stdin is a socket, which /dev/stdin cannot reopen)
    const piped = spawnSync('bash', ['-c', `cat img.png | ${JSON.stringify(process.execPath)} ${JSON.stringify(CM_BIN)} colorize /dev/stdin -o devstdin.png --model ${JSON.stringify(TINY_MODEL)} --device cpu -q`], { cwd: dir, timeout: 40_000 });
    expect([piped.status, String(piped.stderr)]).toEqual([0, '']);
    expect(existsSync(at('devstdin.png'))).toBe(true);
  });

  test('Ctrl-C always works, even while a pipe keeps cm waiting for data', async () => {
    mkfifo(at('slow.png'));
    // A writer that holds the pipe open and never writes (O_RDWR opens a FIFO without waiting for a reader).
    const writer = openSync(at('slow.png'), constants.O_RDWR | constants.O_NONBLOCK);
    try {
      const child = spawn(process.execPath, [CM_BIN, 'colorize', 'slow.png', '-o', 'slow-out.png', '--model', TINY_MODEL, '--device', 'cpu', '-q'], { cwd: dir });
      const fifo = at('slow.png');
      // Wait until cm has the pipe open, then Ctrl-C twice.
      const opened = (): boolean => {
        try {
          return readdirSync(`/proc/${child.pid}/fd`).some((fd) => {
            try {
              return readlinkSync(`/proc/${child.pid}/fd/${fd}`) === fifo;
            } catch {
              return false;
            }
          });
        } catch {
          return false;
        }
      };
      const deadline = Date.now() + 30_000;
      while (!opened() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(opened()).toBe(true);
      const code = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      child.kill('SIGINT');
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      expect(await code).toBe(130);
      clearTimeout(timer);
      expect(existsSync(at('slow-out.png'))).toBe(false);
    } finally {
      closeSync(writer);
    }
  });

  test('a named pipe as --model: exit 4 at once (opening it would wait for ever)', () => {
    const r = cm(['colorize', 'img.png', '-o', 'mf.png', '--model', 'fifo.onnx']);
    expect(r.status).toBe(4);
    oneLine(r, 'fifo.onnx: is a named pipe, not a model file');
  });

  test('--model NAME that is no installed model but a file here is read as that file (a pipe: refused as one)', () => {
    const r = cm(['colorize', 'img.png', '-o', 'mf2.png', '--model', 'modelpipe']);
    expect(r.status).toBe(4);
    oneLine(r, 'modelpipe: is a named pipe, not a model file');
    expect(cm(['colorize', 'img.png', '-o', 'mf3.png', '--model', 'no-such-model']).stderr.toString()).toContain(
      'no-such-model: no installed model of that name (see: cm models), and not a path',
    );
  });

  test('an output name too long for the file system: said before the model runs', () => {
    const name = `${'a'.repeat(300)}.png`;
    const r = cm(['colorize', 'img.png', '-o', name]);
    expect(r.status).toBe(3);
    oneLine(r, `${name}: cannot write (file name too long)`);
    const events = cm(['colorize', 'img.png', '-o', name, '--progress', 'json']).stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(events.some((e) => e.event === 'step')).toBe(false);
    expect(events.some((e) => e.event === 'file' && e.status === 'error')).toBe(true);
  });

  test('- given for both the image and the mask: said plainly, not "no image data"', () => {
    const r = cm(['inpaint', '-', '--mask', '-', '-o', 'twice.png'], { input: readFileSync(at('img.png')) });
    expect(r.status).toBe(3);
    oneLine(r, 'stdin: already read for another input or the mask (- can stand for only one image)');
  });
});

describe('truncated GIFs', () => {
  test.each([
    ['cut off in its last frame', 'cut.gif', 'truncated GIF: cut off in frame 3'],
    ['missing only its trailer', 'no-trailer.gif', 'truncated GIF: no trailer after 3 frames'],
  ])('%s: exit 3 like the other truncated formats', (_what, file, problem) => {
    const r = cm(['colorize', file, '-o', 'gif-out.png']);
    expect(r.status).toBe(3);
    oneLine(r, `${file}: cannot decode image (${problem})`);
    expect(existsSync(at('gif-out.png'))).toBe(false);
  });

  test('the whole animated GIF still works (its first frame)', async () => {
    const r = cm(['colorize', 'anim.gif', '-o', 'anim-out.png']);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect((await sharp(at('anim-out.png')).metadata()).width).toBe(64);
  });
});

describe('absurd flags are usage errors (exit 2), in our wording', () => {
  const cores = availableParallelism();
  test.each([
    [['colorize', 'img.png', '--threads', '1000'], `Expected an integer between 0 and ${4 * cores} (4 per core) for --threads but received 1000`],
    [['colorize', 'img.png', '--threads', '100000'], `Expected an integer between 0 and ${4 * cores} (4 per core) for --threads but received 100000`],
    [['colorize', 'img.png', '--max-pixels', '1e20'], 'Expected an integer between 1 and 1000000000 for --max-pixels but received 100000000000000000000'],
    [['superres', 'img.png', '--max-output-pixels', '0'], 'Expected an integer between 1 and 1000000000 for --max-output-pixels but received 0'],
    [['superres', 'img.png', '-x', '3'], 'Expected one of 2, 4, 8 for --scale but received 3'],
    [['colorize', 'img.png', '--format', 'bmp'], 'Expected one of png, jpg, webp for --format but received bmp'],
    [['stroke', 'img.png', '--strength', '0.01'], '--strength 0.01 leaves 1 grid level, fewer than the default --steps 2 needs: use --strength 0.04 or more (or fewer --steps)'],
    [['stroke', 'img.png', '--strength', '0.01', '--steps', '3'], '--strength 0.01 leaves 1 grid level, fewer than --steps 3 needs: use --strength 0.07 or more (or fewer --steps)'],
    [['colorize'], 'colorize: name at least one input (an image file, a folder, or - for stdin)'],
  ])('%j', (args, message) => {
    const before = files();
    const r = cm(args);
    expect(r.status).toBe(2);
    oneLine(r, message);
    expect(files()).toEqual(before);
  });

  test('an invalid choice of --device too', () => {
    const r = run(['colorize', 'img.png', '--device', 'tpu']);
    expect(r.status).toBe(2);
    oneLine(r, 'Expected one of auto, cpu, cuda, webgpu for --device but received tpu');
  });

  test('the smallest --strength that the message offers does run', () => {
    const r = cm(['stroke', 'img.png', '--strength', '0.04', '-o', 'stroke-min.png']);
    expect([r.status, r.stderr]).toEqual([0, '']);
  });

  test('-- ends the options: a file named -dash.png is an input', async () => {
    const opts = ['--model', TINY_MODEL, '--device', 'cpu', '-q'];
    const r = run(['colorize', '-o', 'dash-out.png', ...opts, '--', '-dash.png']);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect((await sharp(at('dash-out.png')).metadata()).width).toBe(64);
    expect(run(['colorize', '--out-dir', 'dashdir', ...opts, '--', '-dash.png']).status).toBe(0);
    expect(readdirSync(at('dashdir'))).toEqual(['-dash.colorize.png']);
  });
});

describe('models that are absurd or broken: exit 4 naming the model', () => {
  test('cm.resolution 100000: the key and its allowed range', () => {
    const model = join(BAD_MODELS, 'huge-resolution.onnx');
    const r = cm(['colorize', 'img.png', '-o', 'res.png', '--model', model]);
    expect(r.status).toBe(4);
    oneLine(r, `${model}: expected an integer from 1 to 4096 for cm.resolution but found "100000"`);
  });

  test('NaN outputs are caught: no all-black image', () => {
    const model = join(BAD_MODELS, 'nan.onnx');
    for (const task of [['colorize', 'img.png'], ['generate']]) {
      const r = cm([...task, '-o', 'nan-out.png', '--model', model]);
      expect(r.status).toBe(4);
      oneLine(r, `${model}: output "denoised" is not finite (NaN at sigma 80): the model is broken`);
      expect(existsSync(at('nan-out.png'))).toBe(false);
    }
  });

  test("a model that fails at run time: our one line, none of onnxruntime's log", () => {
    const model = join(BAD_MODELS, 'fails-at-run.onnx');
    const r = cm(['colorize', 'img.png', '-o', 'fail-out.png', '--model', model]);
    expect(r.status).toBe(4);
    oneLine(r, /^cm: .*fails-at-run\.onnx: inference failed on cpu: .*The input tensor cannot be reshaped to the requested shape.*\n$/);
    expect(r.stderr).not.toContain('onnxruntime_src');
    expect(r.stderr).not.toContain('\u001b[');
    // --debug lets onnxruntime's own log through
    expect(cm(['colorize', 'img.png', '-o', 'fail-out.png', '--model', model, '--debug']).stderr).toContain('[E:onnxruntime');
  });
});

describe('stdout: full, closed, or wanted twice', () => {
  test('> /dev/full: one line, exit 3, no stack trace', () => {
    const full = openSync('/dev/full', 'w');
    try {
      const r = cm(['superres', '-', '-x', '2'], { stdio: ['pipe', full, 'pipe'], input: readFileSync(at('low16.png')) });
      expect(r.status).toBe(3);
      oneLine(r, 'stdout: cannot write (no space left on device)');
      const json = cm(['generate', '-n', '2', '-o', 'full-{i}.png', '--json'], { stdio: ['pipe', full, 'pipe'] });
      expect(json.status).toBe(3);
      oneLine(json, 'stdout: cannot write (no space left on device)');
    } finally {
      closeSync(full);
    }
  });

  test('a reader that goes away (| head -c 10): silent, exit 141 like a filter killed by SIGPIPE', async () => {
    const child = spawn(process.execPath, [CM_BIN, 'superres', '-', '-x', '8', '--model', TINY_MODEL, '--device', 'cpu', '-q'], { cwd: dir });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.destroy(); // the read end closes before the image comes
    child.stdin.end(readFileSync(at('low16.png')));
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    expect(code).toBe(141);
    expect(stderr).toBe('');
    // and through a real shell pipeline, the shell sees only head's output
    const piped = spawnSync('bash', ['-c', `set -o pipefail; ${JSON.stringify(process.execPath)} ${JSON.stringify(CM_BIN)} generate -n 64 -o 'p-{i}.png' --json --model ${JSON.stringify(TINY_MODEL)} --device cpu -q --force | head -c 10 >/dev/null; echo "rc=$?"`], { cwd: dir, timeout: 60_000 });
    expect(String(piped.stderr)).toBe('');
    expect(String(piped.stdout)).toMatch(/^rc=(0|141)\n$/);
  });

  test('--json with the image on stdout (stdin in, no -o): a usage error, nothing on stdout', () => {
    const r = cm(['superres', '-', '-x', '2', '--json'], { input: readFileSync(at('low16.png')) });
    expect(r.status).toBe(2);
    oneLine(r, '--json and the image both want stdout (stdin input without -o writes the image there): add -o FILE, or drop --json');
    expect(r.stdout.length).toBe(0);
  });
});

describe('outputs that are not regular files are never replaced, with or without --force', () => {
  test.each([
    ['/dev/null', '/dev/null', 'a character device'],
    ['a link to /dev/null', 'null-link.png', 'a character device'],
    ['a named pipe', 'out-fifo.png', 'a named pipe'],
  ])('%s', (_what, output, kind) => {
    if (output === 'null-link.png') symlinkSync('/dev/null', at(output));
    if (output === 'out-fifo.png') mkfifo(at(output));
    for (const force of [[], ['--force']]) {
      const r = cm(['colorize', 'img.png', '-o', output, '--format', 'png', ...force]);
      expect(r.status).toBe(3);
      oneLine(r, `${output}: exists and is ${kind}: refusing to replace it, even with --force (use -o - for stdout)`);
    }
    const s = statSync(output.startsWith('/') ? output : at(output));
    expect(s.isFile()).toBe(false);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  test('--force through a symbolic link replaces the file it points to; the link stays', () => {
    writeFileSync(at('target.png'), 'old');
    symlinkSync('target.png', at('link.png'));
    const r = cm(['colorize', 'img.png', '-o', 'link.png', '--force']);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(lstatSync(at('link.png')).isSymbolicLink()).toBe(true);
    expect(readFileSync(at('target.png')).subarray(1, 4).toString()).toBe('PNG');
  });
});

describe('more cases found on the way', () => {
  test('an output name near the 255-byte limit: its temp file still fits', () => {
    const name = `${'a'.repeat(245)}.png`;
    const r = cm(['colorize', 'img.png', '-o', name]);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    rmSync(at(name));
  });

  test('--out-dir that is a file: said so, not "does not exist"', () => {
    writeFileSync(at('plain-file'), 'x');
    const r = cm(['colorize', 'img.png', '--out-dir', 'plain-file']);
    expect(r.status).toBe(3);
    oneLine(r, 'plain-file/img.colorize.png: plain-file is not a folder');
  });

  const hasScript = spawnSync('script', ['--version']).status === 0;
  test.runIf(hasScript)('on a terminal: no image is written to it, and stdin is not waited on', () => {
    const bin = `${JSON.stringify(process.execPath)} ${JSON.stringify(CM_BIN)}`;
    const opts = `--model ${JSON.stringify(TINY_MODEL)} --device cpu -q`;
    const out = spawnSync('script', ['-qec', `${bin} colorize - ${opts} < img.png; echo "rc=$?"`, '/dev/null'], { cwd: dir, timeout: 40_000 });
    expect(String(out.stdout)).toMatch(/^cm: stdout is a terminal: redirect it \(> out\.png\), or name an output file with -o\r?\nrc=2\r?\n$/);
    const inp = spawnSync('script', ['-qec', `${bin} colorize - -o tty-in.png ${opts}; echo "rc=$?"`, '/dev/null'], { cwd: dir, timeout: 40_000, input: '' });
    expect(String(inp.stdout)).toMatch(/^cm: stdin: is a terminal, not an image \(pipe or redirect one into cm\)\r?\nrc=3\r?\n$/);
    expect(existsSync(at('tty-in.png'))).toBe(false);
  });
});

describe('the output size is checked up front (superres)', () => {
  test('a 4000x3000 photo at -x 8: refused in seconds, with the size and the flag', async () => {
    await sharp({ create: { width: 4000, height: 3000, channels: 3, background: '#808080' } }).jpeg().toFile(at('photo.jpg'));
    const r = cm(['superres', 'photo.jpg', '-x', '8']);
    expect(r.status).toBe(3);
    oneLine(r, 'photo.jpg: the x8 output would be 32000x24000 (768000000 pixels), more than --max-output-pixels 67108864 (raise it to allow)');
    expect(r.seconds).toBeLessThan(30);
    expect(existsSync(at('photo.superres.png'))).toBe(false);
  });

  test('--max-output-pixels lowers and raises the limit', () => {
    const low = cm(['superres', 'low16.png', '-x', '4', '-o', 'sr-limit.png', '--max-output-pixels', '4095']);
    expect(low.status).toBe(3);
    oneLine(low, 'low16.png: the x4 output would be 64x64 (4096 pixels), more than --max-output-pixels 4095 (raise it to allow)');
    expect(cm(['superres', 'low16.png', '-x', '4', '-o', 'sr-limit.png', '--max-output-pixels', '4096']).status).toBe(0);
  });
});

describe('--progress json: every stderr line is a JSON object', () => {
  const jsonLines = (stderr: string): Record<string, unknown>[] => lines(stderr).map((l) => JSON.parse(l) as Record<string, unknown>);

  test('device line, warnings, a failed file and the summary', async () => {
    await image(at('wide.png'), 80, 48);
    await sharp(Buffer.alloc(64 * 64), { raw: { width: 64, height: 64, channels: 1 } }).png().toFile(at('black.png'));
    // not -q, --device auto: the device line and the empty-mask warnings are said too
    const r = run(['inpaint', 'img.png', 'wide.png', 'missing.png', '--mask', 'black.png', '--resize-mask', '--out-dir', 'pj', '--progress', 'json', '--model', TINY_MODEL]);
    expect(r.status).toBe(3);
    const events = jsonLines(r.stderr);
    expect(events.filter((e) => e.event === 'device')).toEqual([expect.objectContaining({ device: 'cpu' })]);
    expect(events.filter((e) => e.event === 'warning').map((e) => e.message)).toEqual([expect.stringMatching(/^black\.png: the mask is empty/), expect.stringMatching(/^black\.png: the mask is empty/)]);
    expect(events.filter((e) => e.event === 'file').map((e) => [e.input, e.status, e.error])).toEqual([
      ['img.png', 'ok', undefined],
      ['wide.png', 'ok', undefined],
      ['missing.png', 'error', 'missing.png: no such file'],
    ]);
    expect(events.at(-1)).toEqual({ event: 'summary', task: 'inpaint', total: 3, done: 2, skipped: 0, failed: 1 });
  });

  test('a usage or model error that ends the run is a JSON object too', () => {
    const usage = run(['superres', 'img.png', '-x', '3', '--progress', 'json']);
    expect(usage.status).toBe(2);
    expect(jsonLines(usage.stderr)).toEqual([{ event: 'error', message: 'Expected one of 2, 4, 8 for --scale but received 3', exit: 2 }]);
    const model = run(['colorize', 'img.png', '--progress', 'json', '--model', 'none.onnx', '-o', 'pj.png']);
    expect(model.status).toBe(4);
    expect(jsonLines(model.stderr)).toEqual([{ event: 'error', message: 'none.onnx: no such file', exit: 4 }]);
  });
});

describe('--device webgpu says nothing of its own', () => {
  // With a Vulkan driver the run succeeds and Dawn's "Warning: maxDynamic..." lines are filtered out; without one it
  // fails with exactly our one line. Either way -q leaves nothing else.
  test('-q: nothing on stderr, or one error line when WebGPU cannot start', () => {
    const r = run(['colorize', 'img.png', '-o', 'gpu.png', '--model', TINY_MODEL, '--device', 'webgpu', '-q'], {}, 120_000);
    if (r.status === 0) expect(r.stderr).toBe('');
    else {
      expect(r.status).toBe(4);
      oneLine(r, /^cm: .*tiny-random\.onnx: cannot start the model on webgpu: /);
    }
  });

  test('on a machine without a Vulkan driver: exit 4 and exactly our one line, with or without -q', () => {
    const env = { ...process.env, VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json' };
    for (const quiet of [['-q'], []]) {
      const r = run(['colorize', 'img.png', '-o', 'nogpu.png', '--model', TINY_MODEL, '--device', 'webgpu', ...quiet], { env }, 120_000);
      expect(r.status).toBe(4);
      oneLine(r, /^cm: .*tiny-random\.onnx: cannot start the model on webgpu: .+\n$/);
      expect(existsSync(at('nogpu.png'))).toBe(false);
    }
  });

  test('without -q: at most one line', () => {
    const r = run(['colorize', 'img.png', '-o', 'gpu2.png', '--model', TINY_MODEL, '--device', 'webgpu'], {}, 120_000);
    expect([0, 4]).toContain(r.status);
    expect(lines(r.stderr).length).toBeLessThanOrEqual(1);
    expect(r.stderr).not.toMatch(/^Warning: /m);
  });
});

describe('a full disk (ENOSPC on a tiny tmpfs)', () => {
  // As root a tmpfs is mounted directly; otherwise inside a user and mount namespace (unshare -rm) where the kernel
  // allows it; else the test says why it cannot run.
  const probe = (prefix: string[]): boolean => {
    const d = mkdtempSync(join(tmpdir(), 'cm-probe-'));
    const r = spawnSync(prefix[0] ?? 'sh', [...prefix.slice(1), ...(prefix.length ? ['sh'] : []), '-c', `mount -t tmpfs -o size=64k tmpfs "${d}" && umount "${d}"`], { timeout: 10_000 });
    rmSync(d, { recursive: true, force: true });
    return r.status === 0;
  };
  const prefix = probe([]) ? [] : probe(['unshare', '-rm']) ? ['unshare', '-rm'] : undefined;
  if (prefix === undefined) console.log('skipping the tmpfs ENOSPC test: cannot mount a tmpfs here (not root, and no user namespaces)');

  test.runIf(prefix !== undefined)('exit 3, one line per file that did not fit, no temp file left', async () => {
    mkdirSync(at('many'));
    for (let i = 0; i < 6; i++) {
      const d = randomBytes(64 * 64 * 3); // noise: outputs of about 12 KiB each
      await sharp(d, { raw: { width: 64, height: 64, channels: 3 } }).png().toFile(at('many', `n${i}.png`));
    }
    mkdirSync(at('disk'));
    const script = [
      `mount -t tmpfs -o size=32k tmpfs disk || exit 99`,
      `${JSON.stringify(process.execPath)} ${JSON.stringify(CM_BIN)} colorize many --out-dir disk --model ${JSON.stringify(TINY_MODEL)} --device cpu -q`,
      'code=$?',
      'ls -a disk >&2',
      'umount disk',
      'exit $code',
    ].join('\n');
    const r = spawnSync(prefix![0] ?? 'sh', [...prefix!.slice(1), ...(prefix!.length ? ['sh'] : []), '-c', script], { cwd: dir, timeout: 120_000 });
    const err = String(r.stderr).split('\n').filter(Boolean);
    expect(r.status).toBe(3);
    const failures = err.filter((l) => l.startsWith('cm: '));
    const full = failures.filter((l) => /^cm: disk\/n\d\.colorize\.png: cannot write \(no space left on device\)$/.test(l));
    expect(full.length).toBeGreaterThan(0);
    expect(failures.at(-1)).toBe(`cm: 6 files: ${6 - full.length} done, ${full.length} failed`);
    expect(failures).toHaveLength(full.length + 1);
    const listed = err.filter((l) => !l.startsWith('cm: '));
    expect(listed.filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(listed.filter((f) => f.endsWith('.png'))).toHaveLength(6 - full.length);
  });
});
