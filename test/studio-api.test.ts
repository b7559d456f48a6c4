/**
 * The studio's HTTP API against the built CLI's server on port 0: every status it answers with, the known data kept
 * exactly, the CLI's own results and wording, size limits, same-origin only, nothing served but its own assets, and
 * edits one at a time in the order they came.
 */
import { spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CM_BIN, ROOT, TINY_MODEL } from './helpers/paths.js';
import { startStudio, type RunningStudio } from './helpers/studio.js';

const MAX_PIXELS = 20_000;
let studio: RunningStudio;
let dir: string;
let image: Buffer;
let mask: Buffer;

/** A PNG of deterministic texture. */
async function texture(w: number, h: number, seed = 1): Promise<Buffer> {
  const raw = Buffer.alloc(w * h * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (Math.sin(i * 0.37 + seed) * 60 + ((i * 7919 + seed * 104729) % 97)) & 255;
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}

async function rectMask(w: number, h: number, x0: number, y0: number, x1: number, y1: number): Promise<Buffer> {
  const raw = Buffer.alloc(w * h);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) raw[y * w + x] = 255;
  return sharp(raw, { raw: { width: w, height: h, channels: 1 } }).png().toBuffer();
}

async function pixels(png: Buffer): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

function form(fields: Record<string, string | [Buffer, string]>): FormData {
  const f = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (typeof v === 'string') f.append(k, v);
    else f.append(k, new Blob([new Uint8Array(v[0])], { type: 'image/png' }), v[1]);
  }
  return f;
}

async function post(fields: Record<string, string | [Buffer, string]>, headers: Record<string, string> = {}, base = studio.url): Promise<Response> {
  return fetch(`${base}api/v1/edit`, { method: 'POST', body: form(fields), headers });
}

/** A raw GET with the path exactly as written (no client-side normalisation). */
function rawGet(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const u = new URL(studio.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method: 'GET', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-studio-'));
  image = await texture(80, 64);
  mask = await rectMask(80, 64, 20, 12, 52, 40);
  studio = await startStudio(['--model', TINY_MODEL, '--device', 'cpu', '--max-pixels', String(MAX_PIXELS)]);
}, 60_000);

afterAll(async () => {
  const code = await studio?.stop();
  expect(code).toBe(0);
  // One line on stdout, and nothing else ever.
  expect(studio.stdout()).toMatch(/^cm studio: http:\/\/127\.0\.0\.1:\d+\/\n$/);
});

describe('the page and its assets', () => {
  test('GET / is the page, /app.js its script; nothing is loaded from elsewhere', async () => {
    const page = await fetch(studio.url);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.text();
    expect(html).toContain('<script type="module" src="/app.js">');
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    const js = await fetch(`${studio.url}app.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect(await js.text()).toContain('/api/v1/edit');
  });

  test.each(['/nope', '/../package.json', '/%2e%2e/%2e%2e/package.json', '/app.js/../../package.json', '/..%2fpackage.json', '//etc/passwd', '/api/v1/inputs/0', '/api/v2/models', '/dist/cli.js', '/src/cli.ts'])(
    'GET %s is 404 with a JSON error',
    async (path) => {
      const r = await rawGet(path);
      expect(r.status).toBe(404);
      expect(JSON.parse(r.body).error).toMatch(/^not found|^no input 0/);
      expect(r.body).not.toContain('"version"');
    },
  );
});

describe('GET /api/v1/models', () => {
  test('names the model, the tasks and the limits', async () => {
    const r = await fetch(`${studio.url}api/v1/models`);
    expect(r.status).toBe(200);
    const j = await r.json();
    expect(j.model.file).toBe('tiny-random.onnx');
    expect(j.model.resolution).toBe(64);
    expect(j.tasks.map((t: { name: string }) => t.name)).toEqual(['inpaint', 'colorize', 'superres', 'stroke', 'denoise']);
    expect(j.limits.maxPixels).toBe(MAX_PIXELS);
  });
});

describe('POST /api/v1/edit', () => {
  test('inpaint keeps every unmasked pixel, and answers as the CLI does for the same seed', async () => {
    const r = await post({ task: 'inpaint', image: [image, 'img.png'], mask: [mask, 'mask.png'], options: JSON.stringify({ seed: 7, steps: 2, refineTs: '36,39' }) });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('image/png');
    expect(r.headers.get('x-cm-seed')).toBe('7');
    const plan = JSON.parse(r.headers.get('x-cm-plan') as string);
    expect(plan).toMatchObject({ task: 'inpaint', seed: 7, evaluations: 2, device: 'cpu', refine: [36, 39] });
    const png = Buffer.from(await r.arrayBuffer());
    const [src, out] = [await pixels(image), await pixels(png)];
    expect([out.width, out.height]).toEqual([80, 64]);
    let changed = 0;
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 80; x++) {
        const hole = x >= 20 && x < 52 && y >= 12 && y < 40;
        for (let c = 0; c < 3; c++) {
          const i = (y * 80 + x) * 3 + c;
          if (!hole) expect(out.data[i]).toBe(src.data[i]);
          else if (out.data[i] !== src.data[i]) changed++;
        }
      }
    }
    expect(changed).toBeGreaterThan(100);
    // The CLI, same model, seed and plan: the same bytes.
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dir, 'img.png'), image);
    writeFileSync(join(dir, 'mask.png'), mask);
    const cli = spawnSync(process.execPath, [CM_BIN, 'inpaint', join(dir, 'img.png'), '--mask', join(dir, 'mask.png'), '--model', TINY_MODEL, '--device', 'cpu', '--seed', '7', '--steps', '2', '--refine-ts', '36,39', '-o', '-', '-q'], { cwd: ROOT });
    expect(cli.status).toBe(0);
    expect(Buffer.compare(cli.stdout, png)).toBe(0);
  });

  test('superres keeps every patch mean (within the 8-bit rounding)', async () => {
    const low = await texture(24, 16, 3);
    const r = await post({ task: 'superres', image: [low, 'low.png'], options: JSON.stringify({ scale: 4, seed: 1 }) });
    expect(r.status).toBe(200);
    const [src, out] = [await pixels(low), await pixels(Buffer.from(await r.arrayBuffer()))];
    expect([out.width, out.height]).toEqual([96, 64]);
    let worst = 0;
    for (let y = 0; y < 16; y++) {
      for (let x = 0; x < 24; x++) {
        for (let c = 0; c < 3; c++) {
          let sum = 0;
          for (let dy = 0; dy < 4; dy++) for (let dx = 0; dx < 4; dx++) sum += out.data[((y * 4 + dy) * 96 + x * 4 + dx) * 3 + c];
          worst = Math.max(worst, Math.abs(sum / 16 - src.data[(y * 24 + x) * 3 + c]));
        }
      }
    }
    expect(worst).toBeLessThanOrEqual(0.5 + 1e-9);
  });

  test.each([
    ['a bad image', { task: 'colorize', image: [Buffer.from('not an image at all'), 'junk.png'] }, /^junk\.png: cannot decode image/],
    ['a mask of another size', { task: 'inpaint', mask: 'small' }, /^mask\.png: 8x8 does not match image img\.png 80x64 \(use --resize-mask\)$/],
    ['no mask for inpaint', { task: 'inpaint' }, /^inpaint needs a mask/],
    ['an unknown task', { task: 'paint' }, /^Expected one of inpaint, colorize, superres, stroke, denoise for task but received paint$/],
    ['a bad scale', { task: 'superres', options: '{"scale":3}' }, /^Expected one of 2, 4, 8 for --scale but received 3$/],
    ['a bad tile', { task: 'colorize', options: '{"tile":7}' }, /^Expected a multiple of 8 between 8 and 4096 for --tile but received 7$/],
    ['a bad seed', { task: 'colorize', options: '{"seed":-1}' }, /^Expected an integer between 0 and \d+ for --seed but received -1$/],
    ['an unknown option', { task: 'colorize', options: '{"sclae":2}' }, /^unknown option "sclae"/],
    ['options that are not JSON', { task: 'colorize', options: '{scale:2' }, /^Expected a JSON object for options/],
    ['a bad refinement plan', { task: 'inpaint', mask: 'full', options: '{"refineTs":"39"}' }, /^Expected at least two indices for --refine-ts/],
    ['a refinement plan for colorize', { task: 'colorize', options: '{"refineTs":"37,39"}' }, /^--refine-ts is for inpaint only/],
    ['quality with steps', { task: 'colorize', options: '{"quality":"fast","steps":2}' }, /^--quality picks one of the model's stored plans: give it, or --steps, not both$/],
  ])('400 for %s, in the CLI\'s words', async (_what, fields, message) => {
    const f: Record<string, string | [Buffer, string]> = { image: [image, 'img.png'], ...(fields as Record<string, string | [Buffer, string]>) };
    if (f.mask === 'small') f.mask = [await rectMask(8, 8, 0, 0, 4, 4), 'mask.png'];
    if (f.mask === 'full') f.mask = [mask, 'mask.png'];
    const r = await post(f);
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    expect((await r.json()).error).toMatch(message);
  });

  test('413 for an image over --max-pixels, before it is decoded', async () => {
    const big = await texture(200, 200);
    const r = await post({ task: 'colorize', image: [big, 'big.png'] });
    expect(r.status).toBe(413);
    expect((await r.json()).error).toMatch(/^big\.png: cannot decode image \(larger than the pixel limit: 200x200 is more than --max-pixels 20000\)$/);
  });

  test('413 for a request over the byte limit, answered from its length alone', async () => {
    const u = new URL(studio.url);
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        { host: u.hostname, port: u.port, path: '/api/v1/edit', method: 'POST', headers: { 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(4 * 2 ** 30) } },
        (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.write('--x\r\n');
    });
    expect(r.status).toBe(413);
    expect(JSON.parse(r.body).error).toMatch(/more than the limit of \d+/);
  });

  test('403 for another origin (another tab\'s page), and for another Host (DNS rebinding)', async () => {
    const r = await post({ task: 'colorize', image: [image, 'img.png'] }, { Origin: 'http://evil.example' });
    expect(r.status).toBe(403);
    expect((await r.json()).error).toMatch(/cross-origin/);
    const own = new URL(studio.url);
    const ok = await fetch(`${studio.url}api/v1/models`, { headers: { Origin: `http://${own.host}` } });
    expect(ok.status).toBe(200);
    const rebound = await rawGet('/api/v1/models', { Host: `evil.example:${own.port}` });
    expect(rebound.status).toBe(403);
    const page = await rawGet('/', { Host: 'attacker.test' });
    expect(page.status).toBe(403);
  });

  test('two edits at once are served one after the other, in the order they came', async () => {
    const events: string[] = [];
    const listen = (job: string) => {
      const controller = new AbortController();
      const done = (async () => {
        const r = await fetch(`${studio.url}api/v1/progress/${job}`, { signal: controller.signal });
        const reader = (r.body as ReadableStream<Uint8Array>).getReader();
        let text = '';
        for (;;) {
          const { value, done: end } = await reader.read();
          if (end) break;
          text += Buffer.from(value).toString('utf8');
          let at: number;
          while ((at = text.indexOf('\n\n')) >= 0) {
            const chunk = text.slice(0, at);
            text = text.slice(at + 2);
            const data = chunk.split('\n').find((l) => l.startsWith('data: '));
            if (data) events.push(`${job}:${JSON.parse(data.slice(6)).event}`);
          }
        }
      })().catch(() => undefined);
      return { done, stop: () => controller.abort() };
    };
    const a = listen('jobA');
    const b = listen('jobB');
    await new Promise((r) => setTimeout(r, 200));
    const pa = post({ task: 'colorize', job: 'jobA', image: [image, 'a.png'], options: '{"seed":1}' });
    await new Promise((r) => setTimeout(r, 50));
    const pb = post({ task: 'colorize', job: 'jobB', image: [image, 'b.png'], options: '{"seed":2}' });
    const [ra, rb] = await Promise.all([pa, pb]);
    expect([ra.status, rb.status]).toEqual([200, 200]);
    await Promise.all([a.done, b.done]);
    const order = events.filter((e) => /:(start|done)$/.test(e));
    expect(order).toEqual(['jobA:start', 'jobA:done', 'jobB:start', 'jobB:done']);
    expect(events).toContain('jobB:queued');
    expect(events.filter((e) => e === 'jobA:step').length).toBeGreaterThan(0);
  });

  test('a client that goes away cancels its edit at the next model call, and the next edit runs', async () => {
    const events: string[] = [];
    const controller = new AbortController();
    const sse = await fetch(`${studio.url}api/v1/progress/jobC`);
    const reader = (sse.body as ReadableStream<Uint8Array>).getReader();
    const read = (async () => {
      let text = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString('utf8');
        for (const m of text.matchAll(/data: (.*)\n\n/g)) events.push(JSON.parse(m[1]).event);
        text = text.slice(text.lastIndexOf('\n\n') + 2);
        if (events.includes('step')) controller.abort();
      }
    })();
    const big = await texture(140, 140, 9);
    const cancelled = await fetch(`${studio.url}api/v1/edit`, {
      method: 'POST',
      body: form({ task: 'denoise', job: 'jobC', image: [big, 'big.png'], options: '{"noise":30,"steps":8,"samples":8}' }),
      signal: controller.signal,
    }).catch((e: unknown) => e);
    expect(cancelled).toBeInstanceOf(Error);
    await read;
    expect(events).toContain('step');
    expect(events[events.length - 1]).toBe('cancelled');
    expect(events).not.toContain('done');
    const next = await post({ task: 'colorize', image: [image, 'img.png'], options: '{"seed":3}' });
    expect(next.status).toBe(200);
  });

  test('the images named on the command line are the only files it reads', async () => {
    const r = await fetch(`${studio.url}api/v1/inputs`);
    expect(await r.json()).toEqual({ inputs: [] });
  });
});

describe('a model that cannot load', () => {
  let broken: RunningStudio;
  beforeAll(async () => {
    broken = await startStudio(['--model', join(tmpdir(), 'cm-no-such-model.onnx'), '--device', 'cpu']);
  }, 60_000);
  afterAll(async () => {
    await broken?.stop();
  });

  test('503 with the reason', async () => {
    const r = await post({ task: 'colorize', image: [image, 'img.png'] }, {}, broken.url);
    expect(r.status).toBe(503);
    expect((await r.json()).error).toMatch(/cm-no-such-model\.onnx/);
    const m = await (await fetch(`${broken.url}api/v1/models`)).json();
    expect(m.model).toBeNull();
    expect(m.error).toMatch(/cm-no-such-model\.onnx/);
  });
});

describe('the images named on the command line', () => {
  test('are listed by name and served by index; nothing else', async () => {
    const s = await startStudio(['--model', TINY_MODEL, join(ROOT, 'fixtures', 'demo.png')]);
    try {
      const list = await (await fetch(`${s.url}api/v1/inputs`)).json();
      expect(list).toEqual({ inputs: [{ index: 0, name: 'demo.png' }] });
      const r = await fetch(`${s.url}api/v1/inputs/0`);
      expect(Buffer.compare(Buffer.from(await r.arrayBuffer()), readFileSync(join(ROOT, 'fixtures', 'demo.png')))).toBe(0);
      expect((await fetch(`${s.url}api/v1/inputs/1`)).status).toBe(404);
    } finally {
      await s.stop();
    }
  }, 60_000);
});

describe('the command line', () => {
  test('an image named that is not there: one line naming it, exit 3, no server', () => {
    const r = spawnSync(process.execPath, [CM_BIN, 'studio', '--port', '0', join(tmpdir(), 'cm-no-such-photo.png')], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^cm: .*cm-no-such-photo\.png: /);
  });

  test('a bad --port is a usage error', () => {
    const r = spawnSync(process.execPath, [CM_BIN, 'studio', '--port', '70000'], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('cm: Expected an integer between 0 and 65535 for --port but received 70000\n');
  });

  test('--host other than loopback 127.0.0.1: a warning, and the server answers on that address only', async () => {
    const s = await startStudio(['--model', TINY_MODEL, '--host', '127.0.0.2']);
    try {
      expect(s.url).toMatch(/^http:\/\/127\.0\.0\.2:\d+\/$/);
      await new Promise((r) => setTimeout(r, 200));
      expect(s.stderr()).toMatch(/^cm: warning: --host 127\.0\.0\.2: the studio is reachable from other machines/);
      expect((await fetch(`${s.url}api/v1/models`)).status).toBe(200);
      const port = new URL(s.url).port;
      expect(await fetch(`http://127.0.0.1:${port}/`).then((r) => r.status).catch(() => 'refused')).toBe('refused');
    } finally {
      await s.stop();
    }
  }, 60_000);
});
