#!/usr/bin/env node
// The README's pictures: before/after of each task on a public-domain photo, and a screenshot of the studio.
//
//   node docs/make-examples.mjs [PHOTO] [--no-screenshot]
//
// docs/examples/photo.jpg and photo-mask.png are the README's first command's input.
// PHOTO defaults to scikit-image's chelsea.png (Stefan van der Walt, CC0; Debian's python3-skimage has it at
// /usr/lib/python3/dist-packages/skimage/data/chelsea.png). Writes small JPEGs to docs/examples/ with the default
// model and fixed seeds; the screenshot needs chromium (playwright-core drives /usr/bin/chromium).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CM = join(ROOT, 'bin', 'cm.js');
const OUT = join(ROOT, 'docs', 'examples');
const args = process.argv.slice(2);
const photo = args.find((a) => !a.startsWith('--')) ?? '/usr/lib/python3/dist-packages/skimage/data/chelsea.png';
if (!existsSync(photo)) {
  console.error(`make-examples: ${photo}: no such file (install python3-skimage, or name a photo)`);
  process.exit(3);
}
mkdirSync(OUT, { recursive: true });
const tmp = mkdtempSync(join(tmpdir(), 'cm-examples-'));
const at = (name) => join(tmp, name);

function cm(...argv) {
  const r = spawnSync(process.execPath, [CM, ...argv, '--seed', '1', '--force', '-q'], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`cm ${argv.join(' ')}: exit ${r.status}`);
}

/** Seeded Gaussian noise (Box-Muller on a small LCG): the same noisy input on every machine. */
function gaussian(seed) {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 1) / 4294967297;
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/** Before and after side by side (the before enlarged by nearest neighbours to the after's size), as a small JPEG. */
async function pair(before, after, name) {
  const { width, height } = await sharp(after).metadata();
  const left = await sharp(before).resize(width, height, { kernel: 'nearest' }).png().toBuffer();
  const right = await sharp(after).png().toBuffer();
  const gap = 6;
  await sharp({ create: { width: 2 * width + gap, height, channels: 3, background: '#ffffff' } })
    .composite([{ input: left, left: 0, top: 0 }, { input: right, left: width + gap, top: 0 }])
    .jpeg({ quality: 82, mozjpeg: true })
    .toFile(join(OUT, `${name}.jpg`));
  console.log(`docs/examples/${name}.jpg`);
}

// The photo at 448x296 (multiples of 8; superres's input is a quarter of it).
await sharp(photo).resize(448, 296, { fit: 'cover' }).removeAlpha().png().toFile(at('photo.png'));
await sharp(at('photo.png')).jpeg({ quality: 85, mozjpeg: true }).toFile(join(OUT, 'photo.jpg'));

// inpaint: an ellipse over the cat's collar side of the picture.
const { width: W, height: H } = await sharp(at('photo.png')).metadata();
const mask = Buffer.alloc(W * H);
for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) if (((x - 120) / 46) ** 2 + ((y - 200) / 30) ** 2 <= 1) mask[y * W + x] = 255;
await sharp(mask, { raw: { width: W, height: H, channels: 1 } }).png().toFile(at('mask.png'));
await sharp(at('mask.png')).png({ palette: true, colours: 2 }).toFile(join(OUT, 'photo-mask.png'));
cm('inpaint', at('photo.png'), '--mask', at('mask.png'), '-o', at('inpaint.png'));
// Shown with the hole tinted red (the mask as the overlay's alpha).
const tint = Buffer.alloc(W * H * 4);
for (let p = 0; p < W * H; p++) tint.set([255, 60, 60, Math.round(mask[p] * 0.6)], p * 4);
const shown = await sharp(at('photo.png'))
  .composite([{ input: tint, raw: { width: W, height: H, channels: 4 } }])
  .png()
  .toBuffer();
await pair(shown, at('inpaint.png'), 'inpaint');

// colorize: the photo's gray version.
await sharp(at('photo.png')).grayscale().png().toFile(at('gray.png'));
cm('colorize', at('gray.png'), '-o', at('colorize.png'));
await pair(at('gray.png'), at('colorize.png'), 'colorize');

// superres x4: from the photo box-shrunk by 4 (shown enlarged by nearest neighbours on the left).
await sharp(at('photo.png')).resize(W / 4, H / 4, { kernel: 'cubic' }).png().toFile(at('small.png'));
cm('superres', at('small.png'), '-x', '4', '-o', at('superres.png'));
await pair(at('small.png'), at('superres.png'), 'superres');

// denoise: Gaussian noise of sigma 25 (0-255 units), seeded.
{
  const { data, info } = await sharp(at('photo.png')).raw().toBuffer({ resolveWithObject: true });
  const z = gaussian(7);
  const noisy = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) noisy[i] = Math.max(0, Math.min(255, Math.round(data[i] + 25 * z())));
  await sharp(noisy, { raw: { width: info.width, height: info.height, channels: info.channels } }).png().toFile(at('noisy.png'));
  cm('denoise', at('noisy.png'), '--noise', '25', '-o', at('denoise.png'));
  await pair(at('noisy.png'), at('denoise.png'), 'denoise');
}

// stroke: a rough painting of the photo (blurred, few colours), at --strength 0.3 (the default 0.6 asks the small
// model to invent more than it can: a texture of fur colours).
await sharp(at('photo.png')).blur(5).png({ palette: true, colours: 10, dither: 0 }).toFile(at('strokes-palette.png'));
await sharp(at('strokes-palette.png')).removeAlpha().png().toFile(at('strokes.png'));
cm('stroke', at('strokes.png'), '--strength', '0.3', '-o', at('stroke.png'));
await pair(at('strokes.png'), at('stroke.png'), 'stroke');

if (!args.includes('--no-screenshot')) await screenshot();
rmSync(tmp, { recursive: true, force: true });

/** The studio with the photo, a painted mask, the inpainted result and the slider half-way. */
async function screenshot() {
  const { chromium } = await import('playwright-core');
  const child = spawn(process.execPath, [CM, 'studio', '--port', '0', at('photo.png')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      const m = /cm studio: (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`cm studio exited ${code}`)));
  });
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 640 } });
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.includes('448x296'));
    const box = await page.locator('#view').boundingBox();
    // The same place as the inpaint example, painted with the mouse in image coordinates.
    const fit = Math.min(box.width / W, box.height / H) * 0.95;
    const ox = box.x + (box.width - W * fit) / 2;
    const oy = box.y + (box.height - H * fit) / 2;
    await page.fill('#size', '30');
    await page.dispatchEvent('#size', 'input');
    await page.fill('#seed', '1');
    await page.mouse.move(ox + 85 * fit, oy + 195 * fit);
    await page.mouse.down();
    for (const [x, y] of [[100, 185], [140, 185], [155, 200], [140, 215], [100, 215], [85, 205], [120, 200]]) await page.mouse.move(ox + x * fit, oy + y * fit, { steps: 6 });
    await page.mouse.up();
    await page.click('#run');
    await page.waitForFunction(() => /done in/.test(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 300_000 });
    const slider = await page.locator('#compare').boundingBox();
    await page.mouse.click(slider.x + slider.width * 0.35, slider.y + slider.height / 2);
    const png = await page.screenshot();
    await sharp(png).jpeg({ quality: 80, mozjpeg: true }).toFile(join(OUT, 'studio.jpg'));
    console.log('docs/examples/studio.jpg');
  } finally {
    await browser.close();
    child.kill('SIGTERM');
  }
}
