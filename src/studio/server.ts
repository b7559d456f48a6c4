/**
 * The studio's HTTP server (node:http): its own page and script, and the API (GET /api/v1/models, POST /api/v1/edit,
 * GET /api/v1/progress/JOB as server-sent events, GET /api/v1/inputs[/N] for the images named on the command line).
 * Edits run through the pipeline (src/pipeline/edit.ts) on the same inference worker as the CLI, one at a time, in the
 * order they came. Thin: decoding, building and sampling are the library's; this file only speaks HTTP. It reads only
 * the model and the files named on the command line, and writes nothing.
 */
import { randomInt } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CmError, InputError, ModelError, OptionError, UsageError } from '../errors.js';
import { decodeMask, decodePicture, encodePicture, preloadImageCodec, type DecodeOptions, type Picture } from '../io/image.js';
import { DEFAULT_MAX_PIXELS, inputByteLimit } from '../io/read.js';
import { edit, taskSampling, taskTiling } from '../pipeline/edit.js';
import { QUALITIES, samplingRecord } from '../pipeline/policy.js';
import { IMAGE_TASKS, type ImageTaskName } from '../pipeline/registry.js';
import { IMAGE_TASK_SPECS } from '../pipeline/tasks.js';
import { MAX_SEED } from '../rng.js';
import { loadModel, readModelFile, type DeviceChoice, type LoadedModel, type ModelFile } from '../runtime/model.js';
import { installedModels, resolveModel } from '../runtime/registry.js';
import { Tensor } from '../tensor.js';
import { callPixelsBound, checkMemory, memoryBudget, type MemoryTask } from '../commands/memory.js';
import { parseOptions, type StudioEditOptions } from './options.js';
import { PAGE_HTML } from './html.js';

export interface StudioOptions {
  host: string;
  port: number;
  /** --model: a path or an installed name (default: the default model). */
  model?: string;
  device: DeviceChoice;
  gpuId?: number;
  threads: number;
  maxPixels?: number;
  maxMemory?: string;
  /** Images named on the command line: the only files the page may open from disk. */
  inputs: string[];
  debug?: boolean;
}

export interface Studio {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** An error answered with a status of its own (413: over a size limit). */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const JOB_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** Progress of at most this many jobs is kept (the oldest finished ones go first). */
const MAX_JOBS = 64;

interface Job {
  last?: Record<string, unknown>;
  listeners: Set<ServerResponse>;
  finished: boolean;
}

/** The page's script, built by tsc from src/studio/page (dist/studio/page/app.js). */
function pageScript(): Buffer {
  const beside = fileURLToPath(new URL('./page/app.js', import.meta.url));
  const built = fileURLToPath(new URL('../../dist/studio/page/app.js', import.meta.url));
  const path = existsSync(beside) ? beside : built;
  if (!existsSync(path)) throw new ModelError(`the studio's page is not built (${path}): run npm run build`);
  return readFileSync(path);
}

/** The model, loaded on the first edit and kept; a model that cannot load is said again on each request (503). */
class ModelSlot {
  private file: ModelFile | undefined;
  private loaded: Promise<LoadedModel> | undefined;

  constructor(private readonly o: StudioOptions) {}

  async readFile(): Promise<ModelFile> {
    if (this.file) return this.file;
    const path = resolveModel(this.o.model);
    if (path === undefined) {
      throw new ModelError(
        this.o.model === undefined
          ? 'no default model installed (models/default.onnx or fixtures/tiny-random.onnx): pass --model PATH'
          : `${this.o.model}: no installed model of that name (see: cm models), and not a path`,
      );
    }
    this.file = await readModelFile(path);
    return this.file;
  }

  async model(): Promise<LoadedModel> {
    if (!this.loaded) {
      this.loaded = (async () => {
        const file = await this.readFile();
        const [model] = await Promise.all([
          loadModel(file, { device: this.o.device, gpuId: this.o.gpuId, threads: this.o.threads, debug: this.o.debug }),
          preloadImageCodec(),
        ]);
        return model;
      })();
      this.loaded.catch(() => {
        this.loaded = undefined;
      });
    }
    return this.loaded;
  }

  /** After a model failure: the next edit starts a new worker. */
  async reset(): Promise<void> {
    const old = this.loaded;
    this.loaded = undefined;
    await old?.then((m) => m.dispose()).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.reset();
  }
}

export async function startStudio(o: StudioOptions): Promise<Studio> {
  const maxPixels = o.maxPixels ?? DEFAULT_MAX_PIXELS;
  const partBytes = inputByteLimit(maxPixels);
  // The image, a mask or strokes of as many bytes, and the form's own bytes.
  const bodyBytes = 3 * partBytes + (1 << 20);
  const budget = memoryBudget(o.maxMemory);
  const script = pageScript();
  const page = Buffer.from(PAGE_HTML);
  const slot = new ModelSlot(o);
  const jobs = new Map<string, Job>();
  let queue: Promise<void> = Promise.resolve();
  let waiting = 0;
  let port = 0;

  const publish = (id: string | undefined, event: Record<string, unknown>, finished = false): void => {
    if (id === undefined) return;
    const job = jobOf(id);
    job.last = event;
    job.finished ||= finished;
    for (const res of job.listeners) {
      res.write(`data: ${JSON.stringify(event)}\n\n`);
      if (finished) res.end();
    }
    if (finished) job.listeners.clear();
  };
  const jobOf = (id: string): Job => {
    let job = jobs.get(id);
    if (!job) {
      job = { listeners: new Set(), finished: false };
      jobs.set(id, job);
      if (jobs.size > MAX_JOBS) {
        for (const [k, j] of jobs) {
          if (jobs.size <= MAX_JOBS) break;
          if (j.finished || j.listeners.size === 0) jobs.delete(k);
        }
      }
    }
    return job;
  };

  /** Same-origin only: the Host must be this server's, and an Origin (a browser's request) the same. */
  const allowed = (req: IncomingMessage): boolean => {
    const host = req.headers.host ?? '';
    const own = [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];
    const wildcard = o.host === '0.0.0.0' || o.host === '::';
    if (!wildcard && !own.includes(host) && host !== `${hostForUrl(o.host)}:${port}`) return false;
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${host}`) return false;
    if (req.headers['sec-fetch-site'] === 'cross-site') return false;
    return true;
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) sendError(res, 500, `unexpected error: ${e instanceof Error ? e.message : String(e)}`);
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cache-Control', 'no-store');
    if (!allowed(req)) return sendError(res, 403, 'cross-origin requests are refused: open the studio at its own address');
    const url = new URL(req.url ?? '/', 'http://studio');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const route = (m: string, p: string | RegExp): boolean => method === m && (typeof p === 'string' ? path === p : p.test(path));
    if (route('GET', '/') || route('GET', '/index.html')) {
      res.setHeader('Content-Security-Policy', "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'");
      res.setHeader('X-Frame-Options', 'DENY');
      return send(res, 200, 'text/html; charset=utf-8', page);
    }
    if (route('GET', '/app.js')) return send(res, 200, 'text/javascript; charset=utf-8', script);
    if (route('GET', '/api/v1/models')) return sendJson(res, 200, await modelsAnswer());
    if (route('GET', '/api/v1/inputs')) return sendJson(res, 200, { inputs: o.inputs.map((p, index) => ({ index, name: basename(p) })) });
    if (route('GET', /^\/api\/v1\/inputs\/\d{1,6}$/)) return sendInput(res, Number(path.slice('/api/v1/inputs/'.length)));
    if (route('GET', /^\/api\/v1\/progress\/[^/]+$/)) return progress(req, res, decodeURIComponent(path.slice('/api/v1/progress/'.length)));
    if (route('POST', '/api/v1/edit')) return editRequest(req, res);
    drain(req);
    return sendError(res, 404, `not found: ${method} ${path.length > 200 ? `${path.slice(0, 200)}...` : path}`);
  }

  async function modelsAnswer(): Promise<Record<string, unknown>> {
    const tasks = IMAGE_TASKS.map((name) => ({ name, needsMask: IMAGE_TASK_SPECS[name].needsMask ?? false }));
    const installed = installedModels().map((m) => m.name);
    try {
      const file = await slot.readFile();
      const card = file.card;
      return {
        model: { name: card.name, file: basename(file.path), resolution: card.resolution, license: card.license, trainedOn: card.trainedOn, taskPlans: Object.keys(card.taskPlans) },
        installed,
        tasks,
        qualities: QUALITIES,
        limits: { maxPixels, maxImageBytes: partBytes, maxRequestBytes: bodyBytes },
      };
    } catch (e) {
      return { model: null, error: e instanceof Error ? e.message : String(e), installed, tasks, qualities: QUALITIES, limits: { maxPixels, maxImageBytes: partBytes, maxRequestBytes: bodyBytes } };
    }
  }

  async function sendInput(res: ServerResponse, index: number): Promise<void> {
    const path = o.inputs[index];
    if (path === undefined) return sendError(res, 404, `no input ${index} (the studio was started with ${o.inputs.length})`);
    try {
      const s = await stat(path);
      if (!s.isFile()) return sendError(res, 400, `${path}: not a file`);
      if (s.size > partBytes) return sendError(res, 413, `${path}: larger than the input limit of ${Math.floor(partBytes / 2 ** 20)} MiB (raise --max-pixels to allow more)`);
      return send(res, 200, 'application/octet-stream', await readFile(path), { 'X-Cm-Name': encodeURIComponent(basename(path)) });
    } catch (e) {
      return sendError(res, 400, `${path}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  function progress(req: IncomingMessage, res: ServerResponse, id: string): void {
    if (!JOB_ID.test(id)) return sendError(res, 400, 'Expected a job id of 1-64 letters, digits, _ or - in the progress path');
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
    res.write(': cm studio progress\n\n');
    const job = jobOf(id);
    if (job.last) res.write(`data: ${JSON.stringify(job.last)}\n\n`);
    if (job.finished) return void res.end();
    job.listeners.add(res);
    req.on('close', () => job.listeners.delete(res));
  }

  async function editRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A client that goes away (the page's cancel aborts its fetch) cancels its edit, queued or running.
    const controller = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) controller.abort(new Error('cancelled'));
    });
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > bodyBytes) {
      res.setHeader('Connection', 'close');
      return sendError(res, 413, `the request has ${declared} bytes, more than the limit of ${bodyBytes} (three images of the input limit; raise --max-pixels to allow more)`);
    }
    let form: FormData;
    try {
      const body = await readBody(req, bodyBytes);
      form = await new Request('http://studio/', { method: 'POST', headers: { 'content-type': req.headers['content-type'] ?? '' }, body: new Uint8Array(body) }).formData();
    } catch (e) {
      if (e instanceof HttpError) {
        res.setHeader('Connection', 'close');
        return sendError(res, e.status, e.message);
      }
      return sendError(res, 400, 'the request is not multipart/form-data (fields task, image, mask, strokes, options)');
    }
    const jobField = form.get('job');
    const job = typeof jobField === 'string' && JOB_ID.test(jobField) ? jobField : undefined;
    let parsed: { task: ImageTaskName; options: StudioEditOptions; image: Blob; mask?: Blob; strokes?: Blob };
    try {
      parsed = parseForm(form, partBytes);
    } catch (e) {
      publish(job, { event: 'error', error: messageOf(e) }, true);
      return sendError(res, statusOf(e), messageOf(e), optionOf(e));
    }
    waiting++;
    publish(job, { event: 'queued', ahead: waiting - 1 });
    const turn = queue.then(() => {
      waiting--;
      return run(parsed, job, controller.signal);
    });
    queue = turn.then(
      () => undefined,
      () => undefined,
    );
    try {
      const { png, headers } = await turn;
      publish(job, { event: 'done' }, true);
      if (!res.destroyed) send(res, 200, 'image/png', png, headers);
    } catch (e) {
      if (controller.signal.aborted) {
        publish(job, { event: 'cancelled' }, true);
        if (!res.destroyed) sendError(res, 499, 'cancelled');
        return;
      }
      publish(job, { event: 'error', error: messageOf(e) }, true);
      if (!res.destroyed) sendError(res, statusOf(e), messageOf(e), optionOf(e));
    }
  }

  async function run(
    p: { task: ImageTaskName; options: StudioEditOptions; image: Blob; mask?: Blob; strokes?: Blob },
    job: string | undefined,
    signal: AbortSignal,
  ): Promise<{ png: Buffer; headers: Record<string, string> }> {
    signal.throwIfAborted();
    const spec = IMAGE_TASK_SPECS[p.task];
    const { options } = p;
    let model: LoadedModel;
    try {
      model = await slot.model();
    } catch (e) {
      throw e instanceof CmError && !(e instanceof ModelError) ? e : new HttpError(503, `the model cannot load: ${messageOf(e)}`);
    }
    signal.throwIfAborted();
    const tiling = taskTiling(options, model.card, model.device);
    // The plan's samples (a task's stored default may combine several), for the memory estimate as the CLI makes it.
    const { samples } = taskSampling(spec, options, model.card);
    const memory = { samples, callPixels: callPixelsBound(tiling), modelBytes: await modelBytes(model.path), processes: model.parallel };
    const label = (p.image as File).name || 'image';
    const pixelLimit = ({ label: l, width, height }: { label: string; width: number; height: number }): void => {
      if (width * height > maxPixels) throw new HttpError(413, `${l}: cannot decode image (larger than the pixel limit: ${width}x${height} is more than --max-pixels ${maxPixels})`);
    };
    const beforeDecode = ({ label: l, width, height, bytes }: { label: string; width: number; height: number; bytes: number }): void => {
      pixelLimit({ label: l, width, height });
      try {
        const size = spec.outputSize?.(options, width, height, l) ?? { width, height };
        checkMemory(l, spec.name as MemoryTask, size, { ...memory, pixels: size.width * size.height, fileBytes: bytes }, budget, spec.memoryHints?.(options));
      } catch (e) {
        throw e instanceof InputError ? new HttpError(413, e.message) : e;
      }
    };
    // The pixel limit is checked here from the header (413); sharp's own limit (which refuses with a 400's wording)
    // is never the lower one.
    const sharpLimit = Math.max(maxPixels, DEFAULT_MAX_PIXELS);
    const picture = await decodePicture(label, Buffer.from(await p.image.arrayBuffer()), { maxPixels: sharpLimit, beforeDecode });
    const mask = p.mask ? await decodeMask((p.mask as File).name || 'mask', Buffer.from(await p.mask.arrayBuffer()), { maxPixels: sharpLimit, beforeDecode: pixelLimit }) : undefined;
    const input = p.strokes ? await withStrokes(picture, p.strokes, sharpLimit, pixelLimit) : picture;
    const seed = options.seed ?? randomInt(0, MAX_SEED);
    publish(job, { event: 'start', task: p.task });
    let result;
    try {
      result = await edit(model, { task: p.task, inputs: { picture: input, mask }, options, seed }, {
        signal,
        onStep: (e) => {
          // Coarse to fine says which level (1 = coarsest) the step is of.
          const { level, levels } = e as { level?: number; levels?: number };
          const where = typeof level === 'number' && typeof levels === 'number' && levels > 1 ? { level: level + 1, levels } : {};
          publish(job, { event: 'step', step: e.step, steps: e.steps, sigma: e.sigma, ...where });
        },
      });
    } catch (e) {
      if (e instanceof ModelError) {
        await slot.reset();
        throw new HttpError(503, `the model failed: ${e.message}`);
      }
      throw e;
    }
    const png = await encodePicture(result.image, 0, 'png', { alpha: result.alpha });
    const record = { task: p.task, seed, model: basename(model.path), device: model.device, ...samplingRecord(result.sampling, { refine: p.task === 'inpaint' }) };
    return {
      png,
      headers: {
        'X-Cm-Seed': String(seed),
        'X-Cm-Plan': JSON.stringify(record),
        ...(result.warnings.length ? { 'X-Cm-Warnings': encodeURIComponent(result.warnings.join('\n')) } : {}),
      },
    };
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://${hostForUrl(o.host === '0.0.0.0' || o.host === '::' ? '127.0.0.1' : o.host)}:${port}/`,
    port,
    async close() {
      for (const job of jobs.values()) for (const r of job.listeners) r.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await slot.close();
    },
  };
}

/** The model's bytes: the .onnx file and its external weights beside it (.onnx.data), if any (as the CLI counts them). */
async function modelBytes(path: string): Promise<number> {
  const size = async (p: string): Promise<number> => (await stat(p).catch(() => undefined))?.size ?? 0;
  return (await size(path)) + (await size(`${path}.data`));
}

/** IPv6 hosts in brackets. */
function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** The form's fields, checked: task, image (and mask for inpaint), strokes, options. */
function parseForm(form: FormData, partBytes: number): { task: ImageTaskName; options: StudioEditOptions; image: Blob; mask?: Blob; strokes?: Blob } {
  const task = form.get('task');
  if (typeof task !== 'string' || !(IMAGE_TASKS as readonly string[]).includes(task)) {
    throw new OptionError('task', () => `Expected one of ${IMAGE_TASKS.join(', ')} for task but received ${typeof task === 'string' ? task : 'none'}`);
  }
  const name = task as ImageTaskName;
  const file = (field: string): Blob | undefined => {
    const v = form.get(field);
    if (v === null) return undefined;
    if (typeof v === 'string') throw new InputError(`${field}: expected a file, not a text field`);
    if (v.size > partBytes) throw new HttpError(413, `${field}: more than the input limit of ${Math.floor(partBytes / 2 ** 20)} MiB (4 bytes a pixel of --max-pixels, plus 16 MiB; raise --max-pixels to allow more)`);
    if (v.size === 0) throw new InputError(`${field}: empty file`);
    return v;
  };
  const image = file('image');
  if (image === undefined) throw new InputError('image: missing (a file field named image)');
  const mask = file('mask');
  if (IMAGE_TASK_SPECS[name].needsMask && mask === undefined) throw new InputError(`${name} needs a mask: a file field named mask (white = fill)`);
  const strokes = file('strokes');
  const text = form.get('options');
  const options = parseOptions(name, typeof text === 'string' ? text : '{}');
  return { task: name, options, image, mask: IMAGE_TASK_SPECS[name].needsMask ? mask : undefined, strokes: name === 'stroke' ? strokes : undefined };
}

/** The image with the strokes painted over it where they are opaque (the strokes' alpha), at the image's size. */
async function withStrokes(picture: Picture, strokes: Blob, maxPixels: number, beforeDecode: DecodeOptions['beforeDecode']): Promise<Picture> {
  const s = await decodePicture((strokes as File).name || 'strokes', Buffer.from(await strokes.arrayBuffer()), { maxPixels, beforeDecode });
  if (s.width !== picture.width || s.height !== picture.height) {
    throw new InputError(`${s.label}: ${s.width}x${s.height} does not match image ${picture.label} ${picture.width}x${picture.height}`);
  }
  const plane = picture.width * picture.height;
  const rgb = new Tensor(1, 3, picture.height, picture.width);
  const max = s.depth === 16 ? 65535 : 255;
  for (let p = 0; p < plane; p++) {
    const a = s.alpha ? s.alpha[p] / max : 1;
    for (let c = 0; c < 3; c++) rgb.data[c * plane + p] = a * s.rgb.data[c * plane + p] + (1 - a) * picture.rgb.data[c * plane + p];
  }
  return { ...picture, rgb };
}

/** The body, at most `limit` bytes (413 beyond). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    req.on('data', (c: Buffer) => {
      total += c.length;
      if (total > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new HttpError(413, `the request is larger than the limit of ${limit} bytes (three images of the input limit; raise --max-pixels to allow more)`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks, total)));
    req.on('error', reject);
  });
}

function drain(req: IncomingMessage): void {
  req.resume();
}

function statusOf(e: unknown): number {
  if (e instanceof HttpError) return e.status;
  if (e instanceof ModelError) return 503;
  if (e instanceof UsageError || e instanceof InputError) return 400;
  return 500;
}

function messageOf(e: unknown): string {
  if (e instanceof CmError || e instanceof HttpError) return e.message;
  return `unexpected error: ${e instanceof Error ? e.message : String(e)}`;
}

function optionOf(e: unknown): string | undefined {
  return e instanceof OptionError ? e.option : undefined;
}

function send(res: ServerResponse, status: number, type: string, body: Buffer, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': body.length, ...headers });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json; charset=utf-8', Buffer.from(JSON.stringify(value)));
}

function sendError(res: ServerResponse, status: number, error: string, option?: string): void {
  sendJson(res, status, option === undefined ? { error } : { error, option });
}
