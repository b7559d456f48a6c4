/**
 * Batches and pipelines, end to end on the built binary: a corpus of bad inputs made here, partial failure, resuming,
 * never overwriting, mirrored folders, --batch invariance, progress events, and Ctrl-C.
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CM_BIN, TINY_MODEL } from './helpers/paths.js';

let dir: string;
const at = (...p: string[]): string => join(dir, ...p);

function cm(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const model = args.includes('--model') ? [] : ['--model', TINY_MODEL];
  const r = spawnSync(process.execPath, [CM_BIN, ...args, ...model, '--device', 'cpu', '-q'], { cwd: dir });
  return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** Every file below a folder, relative to it. */
function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else out.push(relative(root, join(d, e.name)));
    }
  };
  walk(root);
  return out.sort();
}

async function image(path: string, w: number, h: number, shift = 0): Promise<void> {
  const d = Buffer.alloc(w * h * 3);
  for (let i = 0; i < d.length; i++) d[i] = (i * 7 + shift * 31) % 256;
  await sharp(d, { raw: { width: w, height: h, channels: 3 } }).toFile(path);
}

/** A PNG whose header claims 100000 x 100000 pixels (valid signature and CRCs, a tiny compressed body). */
function hugePng(): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(100000, 0);
  ihdr.writeUInt32BE(100000, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const chunk = (type: string, data: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const idat = chunk('IDAT', deflateSync(Buffer.alloc(1000)));
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), idat, chunk('IEND', Buffer.alloc(0))]);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-batch-'));
  mkdirSync(at('bad'));
  await image(at('ok.png'), 64, 64);
  await image(at('ok.jpg'), 64, 64);
  const png = readFileSync(at('ok.png'));
  const jpg = readFileSync(at('ok.jpg'));
  writeFileSync(at('bad', 'empty.png'), Buffer.alloc(0));
  writeFileSync(at('bad', 'truncated.png'), png.subarray(0, png.length >> 1));
  writeFileSync(at('bad', 'truncated.jpg'), jpg.subarray(0, jpg.length >> 1));
  writeFileSync(at('bad', 'text.png'), 'hello\n');
  writeFileSync(at('bad', 'huge.png'), hugePng());
  writeFileSync(at('bad', 'garbage.onnx'), 'no model here');
  const m = Buffer.alloc(64 * 64, 0).fill(255, 64 * 20, 64 * 40);
  await sharp(m, { raw: { width: 64, height: 64, channels: 1 } }).png().toFile(at('mask.png'));
  await sharp(m.subarray(0, 32 * 32), { raw: { width: 32, height: 32, channels: 1 } }).png().toFile(at('mask32.png'));
  mkdirSync(at('batch'));
  for (let i = 0; i < 20; i++) {
    const name = at('batch', `img${String(i).padStart(2, '0')}.png`);
    if (i % 7 === 3) writeFileSync(name, i === 3 ? Buffer.alloc(0) : png.subarray(0, 100));
    else await image(name, 64, 64, i);
  }
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('bad inputs: documented exit code, one line naming the file, no output or temp file', () => {
  test.each([
    ['zero-byte file', ['colorize', 'bad/empty.png'], 3, 'bad/empty.png: empty file'],
    ['truncated PNG', ['colorize', 'bad/truncated.png'], 3, 'bad/truncated.png: cannot decode image'],
    ['truncated JPEG', ['colorize', 'bad/truncated.jpg'], 3, 'bad/truncated.jpg: cannot decode image'],
    ['text file named .png', ['colorize', 'bad/text.png'], 3, 'bad/text.png: cannot decode image (not a supported image format)'],
    ['PNG claiming 100000x100000', ['colorize', 'bad/huge.png'], 3, 'bad/huge.png: cannot decode image (larger than the pixel limit)'],
    ['mask of the wrong size', ['inpaint', 'ok.png', '--mask', 'mask32.png'], 3, 'mask32.png: 32x32 does not match image ok.png 64x64'],
    ['mask that is a directory without a match', ['inpaint', 'ok.png', '--mask', 'bad'], 3, 'ok.png: no mask named ok.* in bad'],
    ['garbage .onnx', ['colorize', 'ok.png', '--model', 'bad/garbage.onnx'], 4, 'bad/garbage.onnx: not an ONNX model'],
  ])('%s', (_what, args, code, message) => {
    const before = tree(dir);
    const r = cm(args);
    expect(r.status).toBe(code);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(r.stderr).toContain(`cm: ${message}`);
    expect(tree(dir)).toEqual(before);
  });

  test('an unwritable output folder', () => {
    // As root, permissions do not stop writes; /proc refuses new files for everyone.
    const r = cm(['colorize', 'ok.png', '--out-dir', '/proc/cm-test-out']);
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/^cm: \/proc\/cm-test-out\/ok\.colorize\.png: cannot (create folder|write)/);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  });

  test('--max-pixels refuses larger images', () => {
    const r = cm(['colorize', 'ok.png', '--max-pixels', '1000', '-o', 'mp.png']);
    expect(r.status).toBe(3);
    expect(r.stderr).toBe('cm: ok.png: cannot decode image (larger than the pixel limit)\n');
    expect(existsSync(at('mp.png'))).toBe(false);
  });
});

describe('a batch with bad files', () => {
  test('20 images, 3 bad: 17 outputs, exit 3, the summary says 3 failed, --json has 20 records', () => {
    const r = cm(['colorize', 'batch', '--out-dir', 'out20', '--json', '--batch', '4']);
    expect(r.status).toBe(3);
    const records = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(records).toHaveLength(20);
    expect(records.filter((x) => x.status === 'error').map((x) => x.input)).toEqual(['batch/img03.png', 'batch/img10.png', 'batch/img17.png']);
    expect(tree(at('out20'))).toHaveLength(17);
    expect(r.stderr).toMatch(/20 files: 17 done, 3 failed\n$/);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(4);
  });

  test('--skip-existing resumes; without --force nothing is overwritten', () => {
    mkdirSync(at('resume'));
    writeFileSync(at('resume', 'img00.colorize.png'), 'keep me');
    const r = cm(['colorize', 'batch/img00.png', 'batch/img01.png', '--out-dir', 'resume', '--skip-existing', '--json']);
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n').map((l) => JSON.parse(l).status)).toEqual(['skipped', 'ok']);
    expect(readFileSync(at('resume', 'img00.colorize.png'), 'utf8')).toBe('keep me');
    const again = cm(['colorize', 'batch/img00.png', 'batch/img01.png', '--out-dir', 'resume']);
    expect(again.status).toBe(3);
    expect(again.stderr).toContain('resume/img00.colorize.png: already exists (use --force to overwrite)');
    expect(readFileSync(at('resume', 'img00.colorize.png'), 'utf8')).toBe('keep me');
    expect(tree(at('resume')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('folders, masks and names', () => {
  test('--recursive mirrors the input tree under --out-dir, masks matched by stem', async () => {
    mkdirSync(at('tree', 'sub'), { recursive: true });
    mkdirSync(at('masks'));
    await image(at('tree', 'one.png'), 64, 64, 1);
    await image(at('tree', 'sub', 'two.jpg'), 64, 64, 2);
    cpSync(at('mask.png'), at('masks', 'one.png'));
    cpSync(at('mask.png'), at('masks', 'two.png'));
    const r = cm(['inpaint', 'tree', '-r', '--mask', 'masks', '--out-dir', 'mirror', '--name', '{stem}-{task}.{ext}', '--format', 'webp']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(tree(at('mirror'))).toEqual(['one-inpaint.webp', 'sub/two-inpaint.webp']);
    expect((await sharp(at('mirror', 'sub', 'two-inpaint.webp')).metadata()).format).toBe('webp');
    // without -r only the top level
    const flat = cm(['inpaint', 'tree', '--mask', 'masks', '--out-dir', 'flat']);
    expect(flat.status).toBe(0);
    expect(tree(at('flat'))).toEqual(['one.inpaint.png']);
  });

  test('-o with several inputs needs a template; {scale} names superres outputs', () => {
    expect(cm(['colorize', 'ok.png', 'ok.jpg', '-o', 'x.png']).stderr).toMatch(/use --out-dir, or put \{i\} or \{stem\}/);
    const r = cm(['superres', 'ok.png', '-x', '2', '-o', '{stem}.x{scale}.png']);
    expect(r.status).toBe(0);
    expect(existsSync(at('ok.x2.png'))).toBe(true);
  });

  test('inputs that map to one output are reported, not overwritten', () => {
    const r = cm(['colorize', 'ok.png', 'ok.jpg', '--out-dir', 'same']);
    expect(r.status).toBe(3);
    expect(r.stderr).toContain('ok.jpg: its output same/ok.colorize.png is also the output of ok.png');
    expect(tree(at('same'))).toEqual(['ok.colorize.png']);
  });
});

describe('orientation and metadata', () => {
  test('EXIF orientation is applied; --keep-metadata keeps EXIF and the ICC profile, otherwise they are dropped', async () => {
    const d = Buffer.alloc(64 * 32 * 3);
    for (let i = 0; i < d.length; i++) d[i] = (i * 5) % 256;
    await sharp(d, { raw: { width: 64, height: 32, channels: 3 } })
      .withMetadata({ orientation: 6 })
      .withIccProfile('p3')
      .withExif({ IFD0: { Copyright: 'cm-test-copyright' } })
      .jpeg()
      .toFile(at('rotated.jpg'));
    expect(cm(['colorize', 'rotated.jpg', '-o', 'kept.png', '--keep-metadata']).status).toBe(0);
    expect(cm(['colorize', 'rotated.jpg', '-o', 'plain.png']).status).toBe(0);
    const kept = await sharp(at('kept.png')).metadata();
    const plain = await sharp(at('plain.png')).metadata();
    expect([kept.width, kept.height, plain.width, plain.height]).toEqual([32, 64, 32, 64]);
    expect(kept.orientation ?? 1).toBe(1);
    expect(kept.exif?.toString('latin1')).toContain('cm-test-copyright');
    expect(kept.icc?.length).toBeGreaterThan(0);
    expect(plain.exif).toBeUndefined();
    expect(plain.icc).toBeUndefined();
  });
});

describe('batching and progress', () => {
  test('--batch 3 gives the same bytes as one image at a time', () => {
    const inputs = ['batch/img00.png', 'batch/img01.png', 'batch/img02.png', 'batch/img04.png'];
    expect(cm(['inpaint', ...inputs, '--mask', 'mask.png', '--out-dir', 'b1', '--seed', '11']).status).toBe(0);
    expect(cm(['inpaint', ...inputs, '--mask', 'mask.png', '--out-dir', 'b3', '--seed', '11', '--batch', '3']).status).toBe(0);
    for (const f of tree(at('b1'))) expect(readFileSync(at('b3', f)).equals(readFileSync(at('b1', f)))).toBe(true);
    expect(tree(at('b3'))).toHaveLength(4);
  });

  test('--progress json: one line per step and per file on stderr', () => {
    const r = spawnSync(process.execPath, [CM_BIN, 'colorize', 'ok.png', 'batch/img01.png', '--out-dir', 'pj', '--progress', 'json', '--model', TINY_MODEL, '--device', 'cpu', '--steps', '3'], { cwd: dir });
    expect(r.status).toBe(0);
    const events = r.stderr.toString().trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    expect(events.filter((e) => e.event === 'step')).toHaveLength(6);
    expect(events.filter((e) => e.event === 'file').map((e) => [e.input, e.status, e.done, e.total])).toEqual([
      ['ok.png', 'ok', 1, 2],
      ['batch/img01.png', 'ok', 2, 2],
    ]);
    expect(r.stdout.length).toBe(0);
  });
});

const hasScript = spawnSync('script', ['--version']).status === 0;

describe.runIf(hasScript)('on a terminal (under script(1))', () => {
  test.each([
    ['80 columns', 'stty cols 80; '],
    ['a terminal that reports 0 columns', ''],
  ])('the spinner runs on %s and the batch completes', (_what, stty) => {
    const out = `tty-${stty ? 'wide' : 'zero'}`;
    const cmd = `${stty}${JSON.stringify(process.execPath)} ${JSON.stringify(CM_BIN)} colorize ok.png batch/img01.png --out-dir ${out} --model ${JSON.stringify(TINY_MODEL)} --device cpu`;
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { cwd: dir, timeout: 30_000 });
    expect(r.status).toBe(0);
    expect(tree(at(out))).toEqual(['img01.colorize.png', 'ok.colorize.png']);
    // Both images share the model calls: the line names the first and counts the other.
    if (stty) expect(r.stdout.toString()).toContain('[1/2] ok.png (+1): step 0/');
  });

  test('the spinner keeps moving during a long model call (the model runs in a worker)', () => {
    // One call of 256 images on one thread takes seconds; ora redraws its frame every 80 ms while the event loop is free
    // (with the model in the CLI's own process, CM_INFERENCE=inline, it draws 1 or 2). TERM is set so that ora draws its
    // Unicode spinner (every 80 ms) and not the one for the Linux console (every 130 ms), whatever CI's TERM is; CI is
    // taken out because ora (through is-interactive) does not animate at all where the variable CI is set, as on CI.
    const cmd = `stty cols 80; ${JSON.stringify(process.execPath)} ${JSON.stringify(CM_BIN)} generate -n 256 --steps 1 --threads 1 --out-dir spin --model ${JSON.stringify(TINY_MODEL)} --device cpu`;
    const started = Date.now();
    const { CI: _ci, ...inherited } = process.env;
    const env = { ...inherited, TERM: 'xterm-256color' };
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { cwd: dir, timeout: 120_000, env });
    const seconds = (Date.now() - started) / 1000;
    expect(r.status).toBe(0);
    const out = r.stdout.toString();
    // Any spinner frame: ora draws braille dots, or "-\\|/" where the terminal is not taken to do Unicode (TERM=linux).
    const frames = (out.match(/\S(\x1b\[\d+m)? \[0\/256\] generate: step 0\/1/g) ?? []).length;
    console.info(`spinner frames drawn during the first model call: ${frames} (run: ${seconds.toFixed(1)} s)`);
    expect(frames).toBeGreaterThan(10);
  });
});

/** The inference worker processes of the cm process `pid` (its children running runtime/worker.js). */
function workersOf(pid: number | undefined): string[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const ppid = Number(readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
        return ppid === pid && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('runtime/worker.js');
      } catch {
        return false;
      }
    });
}

/** Every process running runtime/worker.js. */
function allWorkers(): string[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('runtime/worker.js');
      } catch {
        return false;
      }
    });
}

describe('Ctrl-C and the inference worker', () => {
  test('SIGINT during a batch stops it, exits 130, keeps the finished outputs and leaves no temp files', async () => {
    const child = spawn(process.execPath, [CM_BIN, 'colorize', 'batch', '--out-dir', 'interrupted', '--progress', 'json', '--steps', '4', '--model', TINY_MODEL, '--device', 'cpu'], { cwd: dir });
    let stderr = '';
    const code = await new Promise<number | null>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes('"event":"file"') && !child.killed) child.kill('SIGINT');
      });
      child.on('close', (c) => resolve(c));
    });
    expect(code).toBe(130);
    // --progress json: the interruption is said as JSON objects too, like every other stderr line
    const events = stderr.trim().split('\n').map((l) => JSON.parse(l));
    expect(events.filter((e) => e.event === 'warning').map((e) => e.message)).toEqual([expect.stringMatching(/^interrupted: stopping \(Ctrl-C again to stop at once\)/)]);
    expect(events.at(-1)).toEqual({ event: 'error', message: 'interrupted', exit: 130 });
    const written = existsSync(at('interrupted')) ? tree(at('interrupted')) : [];
    expect(written.filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(written.length).toBeLessThan(17);
    for (const f of written) expect((await sharp(at('interrupted', f)).metadata()).format).toBe('png');
  });

  test('SIGINT during a long model call exits 130 at once: the worker is killed, no output, no temp file', async () => {
    // One call of 256 images on one thread: seconds of work in a single session.run.
    mkdirSync(at('long'));
    // --debug: the device line is said even where CUDA was never set up (it marks the model as loaded).
    const args = ['generate', '-n', '256', '--steps', '1', '--threads', '1', '--out-dir', 'long', '--model', TINY_MODEL, '--device', 'auto', '--debug'];
    const child = spawn(process.execPath, [CM_BIN, ...args], { cwd: dir });
    let stderr = '';
    let sentAt = 0;
    let workersAtSignal: string[] = [];
    const code = await new Promise<number | null>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        // The device line comes once the model has loaded; the sampler's first call starts right after it.
        if (stderr.includes('cm: device') && sentAt === 0) {
          sentAt = -1;
          setTimeout(() => {
            workersAtSignal = workersOf(child.pid);
            sentAt = Date.now();
            child.kill('SIGINT');
          }, 700);
        }
      });
      child.on('close', (c) => resolve(c));
    });
    const latency = Date.now() - sentAt;
    console.info(`SIGINT during a model call: exit after ${latency} ms`);
    expect(code).toBe(130);
    // (--debug adds onnxruntime's own log lines from the worker: only cm's lines are checked)
    expect(stderr.split('\n').filter((l) => l.startsWith('cm: ')).at(-1)).toBe('cm: interrupted');
    // The uninterrupted call takes 6-13 s on a 2-core machine; the in-process session would have run to its end.
    expect(latency).toBeLessThan(3000);
    expect(tree(at('long'))).toEqual([]);
    // The inference worker was running when the signal came, and is gone now.
    expect(workersAtSignal).toHaveLength(1);
    expect(allWorkers()).not.toContain(workersAtSignal[0]);
  });

  test('a worker that dies during a call is one model error naming the model (exit 4), no output', async () => {
    // --progress json: the device event marks the model as loaded (the human device line is only said with --debug
    // where CUDA was never set up).
    const child = spawn(process.execPath, [CM_BIN, 'generate', '-n', '256', '--steps', '1', '--threads', '1', '--out-dir', 'killed', '--model', TINY_MODEL, '--device', 'auto', '--progress', 'json'], { cwd: dir });
    let stderr = '';
    let killed = false;
    const code = await new Promise<number | null>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes('"event":"device"') && !killed) {
          killed = true;
          setTimeout(() => {
            for (const pid of workersOf(child.pid)) process.kill(Number(pid), 'SIGKILL');
          }, 700);
        }
      });
      child.on('close', (c) => resolve(c));
    });
    expect(code).toBe(4);
    const events = stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(events.filter((e) => e.event === 'error')).toEqual([{ event: 'error', message: `${TINY_MODEL}: the inference process stopped (SIGKILL)`, exit: 4 }]);
    expect(existsSync(at('killed')) ? tree(at('killed')) : []).toEqual([]);
  });

  test('a worker started for a command that ends early (usage error, nothing to do) does not outlive it', () => {
    const tag = `cm-test-${process.pid}-${Date.now()}`;
    const tagged = (): string[] =>
      readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p))
        .filter((p) => {
          try {
            return readFileSync(`/proc/${p}/environ`, 'utf8').includes(`CM_TEST_TAG=${tag}`);
          } catch {
            return false;
          }
        });
    const env = { ...process.env, CM_TEST_TAG: tag };
    mkdirSync(at('early'));
    writeFileSync(at('early', 'ok.colorize.png'), 'done before');
    for (const args of [['colorize', 'ok.png', '--batch', '0'], ['colorize', 'ok.png', '--out-dir', 'early', '--skip-existing']]) {
      const r = spawnSync(process.execPath, [CM_BIN, ...args, '--model', TINY_MODEL, '--device', 'cpu', '-q'], { cwd: dir, env });
      expect(r.status, r.stderr.toString()).toBe(args.includes('--batch') ? 2 : 0);
      expect(tagged()).toEqual([]);
    }
  });
});
