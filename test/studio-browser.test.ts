/**
 * The studio in headless Chromium (Debian's chromium, driven by playwright-core): open the page, load an image, paint
 * a stroke with the mouse, run inpaint, see the progress and the result, use the before/after slider, download the
 * result and the mask, and check that the result keeps every pixel outside the painted mask. Screenshots go to
 * $CM_SCREENSHOTS (default: a temporary folder, printed).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TINY_MODEL } from './helpers/paths.js';
import { startStudio, type RunningStudio } from './helpers/studio.js';

const CHROMIUM = [process.env.CM_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find(
  (p): p is string => p !== undefined && p !== '' && existsSync(p),
);
if (!CHROMIUM) {
  console.warn('studio-browser.test.ts: skipped: no chromium binary (apt-get install chromium, or set CM_CHROMIUM to one)');
}

describe.skipIf(!CHROMIUM)('the studio in a browser', () => {
  let studio: RunningStudio;
  let dir: string;
  let shots: string;
  let browser: import('playwright-core').Browser;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cm-browser-'));
    shots = process.env.CM_SCREENSHOTS ?? join(dir, 'screenshots');
    mkdirSync(shots, { recursive: true });
    const w = 120;
    const h = 96;
    const raw = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = (y * w + x) * 3;
        raw[i] = (x * 2 + ((x * y) % 23)) & 255;
        raw[i + 1] = (y * 2 + 40) & 255;
        raw[i + 2] = (128 + 60 * Math.sin(x / 7) * Math.cos(y / 5)) & 255;
      }
    }
    writeFileSync(join(dir, 'photo.png'), await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer());
    studio = await startStudio(['--model', TINY_MODEL, '--device', 'cpu']);
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await studio?.stop();
    console.info(`studio-browser.test.ts: screenshots in ${shots}`);
  });

  test('paint, run inpaint, compare, download: every pixel outside the painted mask kept', async () => {
    const page = await browser.newPage({ viewport: { width: 1100, height: 720 }, acceptDownloads: true });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(studio.url);
    // Every text the status line shows, in order (the progress passes quickly on the tiny model).
    await page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { seen: string[] }).seen = seen;
      const el = document.getElementById('status') as HTMLElement;
      new MutationObserver(() => seen.push(el.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
    });
    await page.setInputFiles('#file', join(dir, 'photo.png'));
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.includes('120x96'));
    expect(await page.isEnabled('#run')).toBe(true);

    // A stroke across the middle of the picture, with the mouse.
    const box = (await page.locator('#view').boundingBox()) as { x: number; y: number; width: number; height: number };
    const cx = box.x + box.width / 2;
    const cy = box.y + box.height / 2;
    await page.fill('#seed', '11');
    await page.mouse.move(cx - 150, cy - 40);
    await page.mouse.down();
    await page.mouse.move(cx + 120, cy + 30, { steps: 12 });
    await page.mouse.up();
    await page.screenshot({ path: join(shots, 'painted.png') });

    await page.click('#run');
    await page.waitForFunction(() => /done in/.test(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 60_000 });
    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
    expect(seen.some((s) => /^inpaint: step \d+\/\d+( \(scale \d+ of \d+, coarse to fine\))?$/.test(s))).toBe(true);
    const progress = await page.evaluate(() => {
      const p = document.getElementById('progress') as HTMLProgressElement;
      return { value: p.value, max: p.max };
    });
    expect(progress.max).toBeGreaterThan(0);
    expect(progress.value).toBe(progress.max);
    expect(await page.isVisible('#compare')).toBe(true);
    await page.screenshot({ path: join(shots, 'result.png') });

    // The slider: before on its left, after on its right; moving it changes what the canvas shows.
    const canvasBefore = await page.locator('#view').screenshot();
    const slider = (await page.locator('#compare').boundingBox()) as { x: number; y: number; width: number; height: number };
    await page.mouse.click(slider.x + slider.width * 0.9, slider.y + slider.height / 2);
    const canvasAfter = await page.locator('#view').screenshot();
    expect(Buffer.compare(canvasBefore, canvasAfter)).not.toBe(0);
    await page.screenshot({ path: join(shots, 'slider.png') });

    const [resultDownload] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    expect(resultDownload.suggestedFilename()).toBe('photo.inpaint.png');
    const resultPath = join(dir, 'downloaded.png');
    await resultDownload.saveAs(resultPath);
    const [maskDownload] = await Promise.all([page.waitForEvent('download'), page.click('#downloadMask')]);
    expect(maskDownload.suggestedFilename()).toBe('photo.mask.png');
    const maskPath = join(dir, 'mask.png');
    await maskDownload.saveAs(maskPath);

    const decode = async (p: string) => (await sharp(readFileSync(p)).removeAlpha().raw().toBuffer({ resolveWithObject: true }));
    const [src, out, mask] = await Promise.all([decode(join(dir, 'photo.png')), decode(resultPath), decode(maskPath)]);
    expect([out.info.width, out.info.height]).toEqual([120, 96]);
    expect([mask.info.width, mask.info.height]).toEqual([120, 96]);
    let painted = 0;
    let changed = 0;
    for (let p = 0; p < 120 * 96; p++) {
      const fill = mask.data[p * mask.info.channels] === 255;
      if (fill) painted++;
      else expect(mask.data[p * mask.info.channels]).toBe(0);
      for (let c = 0; c < 3; c++) {
        const i = p * 3 + c;
        if (!fill) expect(out.data[i]).toBe(src.data[i]);
        else if (out.data[i] !== src.data[i]) changed++;
      }
    }
    // The stroke was painted (a good share of the picture, not all of it) and filled.
    expect(painted).toBeGreaterThan(500);
    expect(painted).toBeLessThan(120 * 96 * 0.8);
    expect(changed).toBeGreaterThan(100);
    expect(errors).toEqual([]);
  }, 120_000);

  test('undo, redo, eraser, uploaded masks, and the mask kept for an image of the same size only', async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 700 }, acceptDownloads: true });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(studio.url);
    const maskPixels = async (): Promise<{ white: number; width: number; height: number }> => {
      const [d] = await Promise.all([page.waitForEvent('download'), page.click('#downloadMask')]);
      const path = join(dir, `m-${Date.now()}.png`);
      await d.saveAs(path);
      const { data, info } = await sharp(readFileSync(path)).greyscale().raw().toBuffer({ resolveWithObject: true });
      return { white: data.filter((v) => v === 255).length, width: info.width, height: info.height };
    };
    await page.setInputFiles('#file', join(dir, 'photo.png'));
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.includes('120x96'));
    const box = (await page.locator('#view').boundingBox()) as { x: number; y: number; width: number; height: number };
    const [cx, cy] = [box.x + box.width / 2, box.y + box.height / 2];
    const stroke = async (dx0: number, dx1: number): Promise<void> => {
      await page.mouse.move(cx + dx0, cy);
      await page.mouse.down();
      await page.mouse.move(cx + dx1, cy, { steps: 8 });
      await page.mouse.up();
    };
    expect((await maskPixels()).white).toBe(0);
    await stroke(-200, 200);
    const painted = (await maskPixels()).white;
    expect(painted).toBeGreaterThan(300);
    await page.click('#undo');
    expect((await maskPixels()).white).toBe(0);
    await page.click('#redo');
    expect((await maskPixels()).white).toBe(painted);
    // The eraser takes part of it back; [ makes the brush smaller.
    await page.click('#eraser');
    await stroke(-200, 0);
    const erased = (await maskPixels()).white;
    expect(erased).toBeGreaterThan(0);
    expect(erased).toBeLessThan(painted);
    await page.keyboard.press('[');
    expect(Number(await page.inputValue('#size'))).toBeLessThan(40);

    // Another image of the same size keeps the mask; one of another size starts with none.
    writeFileSync(join(dir, 'same.png'), await sharp({ create: { width: 120, height: 96, channels: 3, background: '#336699' } }).png().toBuffer());
    await page.setInputFiles('#file', join(dir, 'same.png'));
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.includes('mask kept'));
    expect((await maskPixels()).white).toBe(erased);
    writeFileSync(join(dir, 'other.png'), await sharp({ create: { width: 64, height: 64, channels: 3, background: '#663399' } }).png().toBuffer());
    await page.setInputFiles('#file', join(dir, 'other.png'));
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.includes('64x64'));
    expect(await maskPixels()).toEqual({ white: 0, width: 64, height: 64 });

    // An uploaded mask (white = fill) comes back as it was.
    const raw = Buffer.alloc(64 * 64);
    for (let y = 10; y < 30; y++) for (let x = 5; x < 50; x++) raw[y * 64 + x] = 255;
    writeFileSync(join(dir, 'upload-mask.png'), await sharp(raw, { raw: { width: 64, height: 64, channels: 1 } }).png().toBuffer());
    await page.setInputFiles('#maskFile', join(dir, 'upload-mask.png'));
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.includes('mask loaded'));
    expect(await maskPixels()).toEqual({ white: 20 * 45, width: 64, height: 64 });
    await page.click('#clear');
    expect((await maskPixels()).white).toBe(0);
    expect(errors).toEqual([]);
  }, 120_000);

  test('stroke sends the painted strokes; superres comes back at 4x', async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 700 }, acceptDownloads: true });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(studio.url);
    await page.setInputFiles('#file', join(dir, 'photo.png'));
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.includes('120x96'));
    const result = async (): Promise<Buffer> => {
      // The status of the run before is no answer to this one.
      await page.evaluate(() => {
        (document.getElementById('status') as HTMLElement).textContent = '';
      });
      await page.click('#run');
      await page.waitForFunction(() => /done in/.test(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 60_000 });
      const [d] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
      const path = join(dir, `r-${Date.now()}.png`);
      await d.saveAs(path);
      return readFileSync(path);
    };
    await page.selectOption('#task', 'stroke');
    expect(await page.getAttribute('#paint', 'aria-pressed')).toBe('true');
    await page.fill('#seed', '4');
    await page.fill('#strength', '0.3');
    const plain = await result();
    // A white band painted with the Strokes tool changes the result where it was painted.
    await page.locator('#colour').evaluate((el: HTMLInputElement) => {
      el.value = '#ffffff';
    });
    const box = (await page.locator('#view').boundingBox()) as { x: number; y: number; width: number; height: number };
    await page.mouse.move(box.x + box.width / 2 - 150, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width / 2 + 150, box.y + box.height / 2, { steps: 8 });
    await page.mouse.up();
    const painted = await result();
    const mean = async (png: Buffer): Promise<number> => {
      const { data } = await sharp(png).extract({ left: 40, top: 44, width: 40, height: 8 }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      return data.reduce((a, v) => a + v, 0) / data.length;
    };
    expect(await mean(painted)).toBeGreaterThan((await mean(plain)) + 30);
    expect(await page.textContent('#download')).toBe('Download result');

    await page.selectOption('#task', 'superres');
    await page.selectOption('#scale', '4');
    const big = await sharp(await result()).metadata();
    expect([big.width, big.height]).toEqual([480, 384]);
    expect(errors).toEqual([]);
  }, 120_000);
});
