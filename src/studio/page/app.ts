/**
 * The studio's page script (compiled by tsc to /app.js; no libraries). Three canvases at the image's size hold the
 * image, the mask (opaque where the model fills) and the coloured strokes; the visible canvas draws them zoomed and
 * panned, with the result beside the original under a before/after slider. Edits go to POST /api/v1/edit; their
 * steps come back as server-sent events on /api/v1/progress/JOB.
 */

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing`);
  return el as T;
};

const view = $<HTMLCanvasElement>('view');
const ctx = view.getContext('2d') as CanvasRenderingContext2D;
const main = $<HTMLElement>('main');
const statusEl = $<HTMLSpanElement>('status');
const progressEl = $<HTMLProgressElement>('progress');
const taskEl = $<HTMLSelectElement>('task');
const sizeEl = $<HTMLInputElement>('size');
const compareEl = $<HTMLInputElement>('compare');
const runEl = $<HTMLButtonElement>('run');
const cancelEl = $<HTMLButtonElement>('cancel');
const downloadEl = $<HTMLAnchorElement>('download');
const downloadMaskEl = $<HTMLAnchorElement>('downloadMask');

type Tool = 'brush' | 'eraser' | 'paint';
type Layer = 'mask' | 'strokes';

interface Doc {
  name: string;
  /** The file's own bytes, sent as they are (no re-encoding). */
  file: Blob;
  width: number;
  height: number;
  image: HTMLCanvasElement;
}

const MASK_COLOUR = 'rgba(255, 70, 70, 1)';
const HISTORY = 40;

let doc: Doc | undefined;
const mask = document.createElement('canvas');
const strokes = document.createElement('canvas');
let result: { canvas: HTMLCanvasElement; url: string; name: string } | undefined;
let tool: Tool = 'brush';
let zoom = 1;
let panX = 0;
let panY = 0;
let undoStack: { layer: Layer; data: ImageData }[] = [];
let redoStack: { layer: Layer; data: ImageData }[] = [];
let running: AbortController | undefined;
let spaceDown = false;

function layerCanvas(layer: Layer): HTMLCanvasElement {
  return layer === 'mask' ? mask : strokes;
}

function say(text: string, error = false): void {
  statusEl.textContent = text;
  statusEl.classList.toggle('error', error);
}

// ---- drawing the view

function resizeView(): void {
  const r = view.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  view.width = Math.max(1, Math.round(r.width * dpr));
  view.height = Math.max(1, Math.round(r.height * dpr));
  render();
}

function fit(): void {
  if (!doc) return;
  const r = view.getBoundingClientRect();
  zoom = Math.min(r.width / doc.width, r.height / doc.height) * 0.95;
  panX = (r.width - doc.width * zoom) / 2;
  panY = (r.height - doc.height * zoom) / 2;
  render();
}

function render(): void {
  const dpr = window.devicePixelRatio || 1;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, view.width, view.height);
  if (!doc) return;
  ctx.setTransform(zoom * dpr, 0, 0, zoom * dpr, panX * dpr, panY * dpr);
  ctx.imageSmoothingEnabled = zoom < 1;
  ctx.drawImage(doc.image, 0, 0);
  if (result) {
    // After on the right of the slider, before on the left.
    const x = (Number(compareEl.value) / 1000) * doc.width;
    ctx.save();
    ctx.beginPath();
    ctx.rect(x, 0, doc.width - x, doc.height);
    ctx.clip();
    ctx.drawImage(result.canvas, 0, 0, doc.width, doc.height);
    ctx.restore();
    ctx.fillStyle = '#fff';
    ctx.fillRect(x - 1 / zoom, 0, 2 / zoom, doc.height);
  }
  // The mask and strokes over the original (left of the slider once there is a result, so the result shows clean).
  ctx.save();
  if (result) {
    ctx.beginPath();
    ctx.rect(0, 0, (Number(compareEl.value) / 1000) * doc.width, doc.height);
    ctx.clip();
  }
  ctx.globalAlpha = 0.45;
  ctx.drawImage(mask, 0, 0);
  ctx.globalAlpha = 1;
  ctx.drawImage(strokes, 0, 0);
  ctx.restore();
  ctx.strokeStyle = 'rgba(255,255,255,0.25)';
  ctx.lineWidth = 1 / zoom;
  ctx.strokeRect(0, 0, doc.width, doc.height);
}

// ---- opening images and masks

async function decode(blob: Blob): Promise<HTMLCanvasElement> {
  const bitmap = await createImageBitmap(blob);
  const c = document.createElement('canvas');
  c.width = bitmap.width;
  c.height = bitmap.height;
  (c.getContext('2d') as CanvasRenderingContext2D).drawImage(bitmap, 0, 0);
  bitmap.close();
  return c;
}

async function openImage(file: Blob, name: string): Promise<void> {
  let image: HTMLCanvasElement;
  try {
    image = await decode(file);
  } catch {
    say(`${name}: this browser cannot show that image (not an image, or a format it does not decode)`, true);
    return;
  }
  const sameSize = doc !== undefined && doc.width === image.width && doc.height === image.height;
  doc = { name, file, width: image.width, height: image.height, image };
  if (!sameSize) {
    for (const c of [mask, strokes]) {
      c.width = image.width;
      c.height = image.height;
    }
    undoStack = [];
    redoStack = [];
  }
  clearResult();
  $('drop').classList.add('hidden');
  runEl.disabled = false;
  downloadMaskEl.setAttribute('aria-disabled', 'false');
  fit();
  say(`${name}: ${image.width}x${image.height}${sameSize ? ' (mask kept: same size)' : ''}`);
}

async function uploadMask(file: Blob, name: string): Promise<void> {
  if (!doc) return say('Open an image first, then its mask.', true);
  let m: HTMLCanvasElement;
  try {
    m = await decode(file);
  } catch {
    return say(`${name}: this browser cannot show that image`, true);
  }
  pushUndo('mask');
  const t = document.createElement('canvas');
  t.width = doc.width;
  t.height = doc.height;
  const tc = t.getContext('2d') as CanvasRenderingContext2D;
  tc.imageSmoothingEnabled = false;
  tc.drawImage(m, 0, 0, doc.width, doc.height);
  const src = tc.getImageData(0, 0, doc.width, doc.height);
  const mc = mask.getContext('2d') as CanvasRenderingContext2D;
  const out = mc.createImageData(doc.width, doc.height);
  for (let p = 0; p < src.data.length; p += 4) {
    const lum = 0.2989 * src.data[p] + 0.587 * src.data[p + 1] + 0.114 * src.data[p + 2];
    if ((lum * src.data[p + 3]) / 255 >= 127.5) {
      out.data[p] = 255;
      out.data[p + 1] = 70;
      out.data[p + 2] = 70;
      out.data[p + 3] = 255;
    }
  }
  mc.putImageData(out, 0, 0);
  render();
  say(`${name}: mask loaded${m.width !== doc.width || m.height !== doc.height ? ` (resized from ${m.width}x${m.height})` : ''}`);
}

// ---- painting

function pushUndo(layer: Layer): void {
  const c = layerCanvas(layer);
  undoStack.push({ layer, data: (c.getContext('2d') as CanvasRenderingContext2D).getImageData(0, 0, c.width, c.height) });
  if (undoStack.length > HISTORY) undoStack.shift();
  redoStack = [];
}

function swapHistory(from: typeof undoStack, to: typeof undoStack): void {
  const entry = from.pop();
  if (!entry) return;
  const c = layerCanvas(entry.layer);
  const cc = c.getContext('2d') as CanvasRenderingContext2D;
  to.push({ layer: entry.layer, data: cc.getImageData(0, 0, c.width, c.height) });
  cc.putImageData(entry.data, 0, 0);
  render();
}

function toImage(e: PointerEvent | WheelEvent): { x: number; y: number } {
  const r = view.getBoundingClientRect();
  return { x: (e.clientX - r.left - panX) / zoom, y: (e.clientY - r.top - panY) / zoom };
}

/** The layer the current tool paints on: strokes for the stroke tool (and the eraser while the task is stroke). */
function targetLayer(): Layer {
  if (tool === 'paint') return 'strokes';
  if (tool === 'eraser' && taskEl.value === 'stroke') return 'strokes';
  return 'mask';
}

let drag: { mode: 'paint' | 'pan'; last: { x: number; y: number }; layer: Layer } | undefined;

function paintSegment(layer: Layer, a: { x: number; y: number }, b: { x: number; y: number }): void {
  const c = (layerCanvas(layer).getContext('2d') as CanvasRenderingContext2D);
  c.save();
  c.globalCompositeOperation = tool === 'eraser' ? 'destination-out' : 'source-over';
  c.strokeStyle = layer === 'mask' ? MASK_COLOUR : $<HTMLInputElement>('colour').value;
  c.fillStyle = c.strokeStyle;
  c.lineWidth = Number(sizeEl.value);
  c.lineCap = 'round';
  c.lineJoin = 'round';
  c.beginPath();
  c.moveTo(a.x, a.y);
  c.lineTo(b.x, b.y);
  c.stroke();
  c.restore();
}

view.addEventListener('pointerdown', (e) => {
  if (!doc) return;
  view.setPointerCapture(e.pointerId);
  const p = toImage(e);
  if (e.button === 1 || spaceDown) {
    drag = { mode: 'pan', last: { x: e.clientX, y: e.clientY }, layer: 'mask' };
    return;
  }
  if (e.button !== 0) return;
  const layer = targetLayer();
  pushUndo(layer);
  drag = { mode: 'paint', last: p, layer };
  paintSegment(layer, p, p);
  render();
});

view.addEventListener('pointermove', (e) => {
  if (!drag) return;
  if (drag.mode === 'pan') {
    panX += e.clientX - drag.last.x;
    panY += e.clientY - drag.last.y;
    drag.last = { x: e.clientX, y: e.clientY };
  } else {
    const p = toImage(e);
    paintSegment(drag.layer, drag.last, p);
    drag.last = p;
  }
  render();
});

for (const type of ['pointerup', 'pointercancel'] as const) view.addEventListener(type, () => (drag = undefined));

view.addEventListener(
  'wheel',
  (e) => {
    e.preventDefault();
    if (e.ctrlKey || e.metaKey) {
      const r = view.getBoundingClientRect();
      const mx = e.clientX - r.left;
      const my = e.clientY - r.top;
      const factor = Math.exp(-e.deltaY * 0.002);
      const next = Math.min(32, Math.max(0.02, zoom * factor));
      panX = mx - ((mx - panX) * next) / zoom;
      panY = my - ((my - panY) * next) / zoom;
      zoom = next;
      render();
    } else {
      setSize(Number(sizeEl.value) * (e.deltaY < 0 ? 1.15 : 1 / 1.15));
    }
  },
  { passive: false },
);

function setSize(v: number): void {
  const s = Math.round(Math.min(Number(sizeEl.max), Math.max(Number(sizeEl.min), v)));
  sizeEl.value = String(s);
  $('sizeText').textContent = String(s);
}

function setTool(t: Tool): void {
  tool = t;
  for (const id of ['brush', 'eraser', 'paint']) $(id).setAttribute('aria-pressed', String(id === t));
}

// ---- the edit

function clearResult(): void {
  if (result) URL.revokeObjectURL(result.url);
  result = undefined;
  $('compareBox').classList.add('hidden');
  downloadEl.setAttribute('aria-disabled', 'true');
  downloadEl.removeAttribute('href');
}

function isEmpty(c: HTMLCanvasElement): boolean {
  const d = (c.getContext('2d') as CanvasRenderingContext2D).getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return false;
  return true;
}

/** The mask as the CLI takes it: white = fill, black = keep, where the painted mask is at least half opaque. */
function maskPng(): Promise<Blob> {
  const c = document.createElement('canvas');
  c.width = mask.width;
  c.height = mask.height;
  const cc = c.getContext('2d') as CanvasRenderingContext2D;
  const src = (mask.getContext('2d') as CanvasRenderingContext2D).getImageData(0, 0, mask.width, mask.height);
  const out = cc.createImageData(mask.width, mask.height);
  for (let p = 0; p < src.data.length; p += 4) {
    const v = src.data[p + 3] >= 128 ? 255 : 0;
    out.data[p] = v;
    out.data[p + 1] = v;
    out.data[p + 2] = v;
    out.data[p + 3] = 255;
  }
  cc.putImageData(out, 0, 0);
  return new Promise((resolve, reject) => c.toBlob((b) => (b ? resolve(b) : reject(new Error('no PNG'))), 'image/png'));
}

function canvasPng(c: HTMLCanvasElement): Promise<Blob> {
  return new Promise((resolve, reject) => c.toBlob((b) => (b ? resolve(b) : reject(new Error('no PNG'))), 'image/png'));
}

function options(): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const task = taskEl.value;
  const num = (id: string): number | undefined => {
    const v = $<HTMLInputElement>(id).value.trim();
    return v === '' ? undefined : Number(v);
  };
  if (task === 'superres') o.scale = Number($<HTMLSelectElement>('scale').value);
  if (task === 'denoise') o.noise = num('noise');
  if (task === 'stroke') o.strength = num('strength');
  const quality = $<HTMLSelectElement>('quality').value;
  if (quality !== 'default') o.quality = quality;
  o.seed = num('seed');
  return o;
}

function stem(name: string): string {
  return name.replace(/\.[^.]*$/, '') || 'image';
}

async function run(): Promise<void> {
  if (!doc || running) return;
  const d = doc;
  const task = taskEl.value;
  if (task === 'inpaint' && isEmpty(mask)) return say('Paint the part to fill first (or upload a mask).', true);
  // Running from the click on (the status says so at once; a second click does nothing).
  const controller = new AbortController();
  running = controller;
  runEl.disabled = true;
  cancelEl.classList.remove('hidden');
  progressEl.value = 0;
  progressEl.removeAttribute('data-done');
  say(`${task}: starting...`);
  const job = `j${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  let events: EventSource | undefined;
  const started = performance.now();
  try {
    const form = new FormData();
    form.append('task', task);
    form.append('job', job);
    form.append('image', d.file, d.name);
    if (task === 'inpaint') form.append('mask', await maskPng(), 'mask.png');
    if (task === 'stroke' && !isEmpty(strokes)) form.append('strokes', await canvasPng(strokes), 'strokes.png');
    form.append('options', JSON.stringify(options()));
    const source = new EventSource(`/api/v1/progress/${job}`);
    events = source;
    source.onmessage = (m) => {
      const e = JSON.parse(m.data) as { event: string; step?: number; steps?: number; ahead?: number; level?: number; levels?: number };
      if (e.event === 'queued' && e.ahead) say(`${task}: waiting for ${e.ahead} edit${e.ahead > 1 ? 's' : ''} before this one`);
      if (e.event === 'start') say(`${task}: loading and preparing...`);
      if (e.event === 'step' && e.step !== undefined && e.steps !== undefined) {
        progressEl.max = e.steps;
        progressEl.value = Math.min(e.step, e.steps);
        say(`${task}: step ${e.step}/${e.steps}${e.level !== undefined ? ` (scale ${e.level} of ${e.levels}, coarse to fine)` : ''}`);
      }
    };
    await new Promise<void>((resolve) => {
      source.onopen = () => resolve();
      setTimeout(resolve, 1500);
    });
    const res = await fetch('/api/v1/edit', { method: 'POST', body: form, signal: controller.signal });
    if (!res.ok) {
      const body = (await res.json().catch(() => ({ error: `HTTP ${res.status}` }))) as { error?: string };
      say(`${task}: ${body.error ?? `HTTP ${res.status}`}`, true);
      return;
    }
    const blob = await res.blob();
    const canvas = await decode(blob);
    clearResult();
    const name = `${stem(d.name)}.${task}.png`;
    result = { canvas, url: URL.createObjectURL(blob), name };
    downloadEl.href = result.url;
    downloadEl.download = name;
    downloadEl.setAttribute('aria-disabled', 'false');
    $('compareBox').classList.remove('hidden');
    compareEl.value = '500';
    progressEl.value = progressEl.max;
    progressEl.setAttribute('data-done', 'true');
    const seed = res.headers.get('X-Cm-Seed');
    const warnings = res.headers.get('X-Cm-Warnings');
    say(`${task}: done in ${((performance.now() - started) / 1000).toFixed(1)} s, seed ${seed}, ${canvas.width}x${canvas.height}${warnings ? ` (${decodeURIComponent(warnings)})` : ''}`);
    render();
  } catch (e) {
    if (controller.signal.aborted) say(`${task}: cancelled`);
    else say(`${task}: ${e instanceof Error ? e.message : String(e)}`, true);
  } finally {
    events?.close();
    running = undefined;
    runEl.disabled = false;
    cancelEl.classList.add('hidden');
  }
}

// ---- wiring

function showKnobs(): void {
  for (const el of document.querySelectorAll<HTMLElement>('[data-for]')) el.classList.toggle('hidden', el.dataset.for !== taskEl.value);
  if (taskEl.value === 'stroke' && tool === 'brush') setTool('paint');
  if (taskEl.value !== 'stroke' && tool === 'paint') setTool('brush');
}

$<HTMLInputElement>('file').addEventListener('change', (e) => {
  const f = (e.target as HTMLInputElement).files?.[0];
  if (f) void openImage(f, f.name);
  (e.target as HTMLInputElement).value = '';
});
$<HTMLInputElement>('maskFile').addEventListener('change', (e) => {
  const f = (e.target as HTMLInputElement).files?.[0];
  if (f) void uploadMask(f, f.name);
  (e.target as HTMLInputElement).value = '';
});
main.addEventListener('dragover', (e) => {
  e.preventDefault();
  main.classList.add('dragging');
});
main.addEventListener('dragleave', () => main.classList.remove('dragging'));
main.addEventListener('drop', (e) => {
  e.preventDefault();
  main.classList.remove('dragging');
  const f = e.dataTransfer?.files?.[0];
  if (f) void openImage(f, f.name);
});
$('brush').addEventListener('click', () => setTool('brush'));
$('eraser').addEventListener('click', () => setTool('eraser'));
$('paint').addEventListener('click', () => setTool('paint'));
$('undo').addEventListener('click', () => swapHistory(undoStack, redoStack));
$('redo').addEventListener('click', () => swapHistory(redoStack, undoStack));
$('clear').addEventListener('click', () => {
  if (!doc) return;
  for (const layer of ['mask', 'strokes'] as const) {
    pushUndo(layer);
    const c = layerCanvas(layer);
    (c.getContext('2d') as CanvasRenderingContext2D).clearRect(0, 0, c.width, c.height);
  }
  render();
});
$('fit').addEventListener('click', fit);
sizeEl.addEventListener('input', () => setSize(Number(sizeEl.value)));
compareEl.addEventListener('input', render);
taskEl.addEventListener('change', showKnobs);
runEl.addEventListener('click', () => void run());
cancelEl.addEventListener('click', () => running?.abort());
downloadMaskEl.addEventListener('click', async (e) => {
  e.preventDefault();
  if (!doc) return;
  const url = URL.createObjectURL(await maskPng());
  const a = document.createElement('a');
  a.href = url;
  a.download = `${stem(doc.name)}.mask.png`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
});
window.addEventListener('keydown', (e) => {
  if (e.target instanceof HTMLInputElement && e.target.type !== 'range') return;
  if (e.key === ' ') spaceDown = true;
  else if (e.key === '[') setSize(Number(sizeEl.value) / 1.2);
  else if (e.key === ']') setSize(Number(sizeEl.value) * 1.2);
  else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'z') {
    e.preventDefault();
    if (e.shiftKey) swapHistory(redoStack, undoStack);
    else swapHistory(undoStack, redoStack);
  } else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'y') swapHistory(redoStack, undoStack);
  else if (e.key === 'b') setTool('brush');
  else if (e.key === 'e') setTool('eraser');
  else if (e.key === 'p') setTool('paint');
});
window.addEventListener('keyup', (e) => {
  if (e.key === ' ') spaceDown = false;
});
window.addEventListener('resize', resizeView);

/** The images named on the command line: buttons that open them. */
async function listInputs(): Promise<void> {
  const res = await fetch('/api/v1/inputs');
  const { inputs } = (await res.json()) as { inputs: { index: number; name: string }[] };
  const box = $('inputs');
  for (const input of inputs) {
    const b = document.createElement('button');
    b.textContent = input.name;
    b.title = `Open ${input.name}`;
    b.addEventListener('click', async () => {
      const r = await fetch(`/api/v1/inputs/${input.index}`);
      if (!r.ok) return say(((await r.json()) as { error: string }).error, true);
      await openImage(await r.blob(), input.name);
    });
    box.append(b);
  }
  if (inputs.length > 0 && !doc) (box.firstElementChild as HTMLButtonElement).click();
}

showKnobs();
resizeView();
void listInputs();
