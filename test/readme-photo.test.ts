/**
 * The README's first command: inpaint the committed public-domain photo (docs/examples/photo.jpg) with its mask and
 * the default model; every pixel outside the mask comes back exactly, the ellipse is filled.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { expect, test } from 'vitest';
import { CM_BIN, ROOT } from './helpers/paths.js';

test("the README's first command keeps every unmasked pixel of the photo and fills the ellipse", async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'cm-readme-')), 'cat.inpaint.png');
  const photo = join(ROOT, 'docs', 'examples', 'photo.jpg');
  const maskPath = join(ROOT, 'docs', 'examples', 'photo-mask.png');
  const r = spawnSync(process.execPath, [CM_BIN, 'inpaint', photo, '--mask', maskPath, '-o', out, '--force', '--seed', '0', '-q'], { cwd: ROOT, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const decode = async (p: string) => sharp(readFileSync(p)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const [src, res] = [await decode(photo), await decode(out)];
  const mask = await sharp(readFileSync(maskPath)).greyscale().raw().toBuffer();
  expect([res.info.width, res.info.height]).toEqual([src.info.width, src.info.height]);
  let holes = 0;
  let changed = 0;
  for (let p = 0; p < mask.length; p++) {
    const fill = mask[p] > 127;
    if (fill) holes++;
    for (let c = 0; c < 3; c++) {
      const i = p * 3 + c;
      if (!fill) expect(res.data[i]).toBe(src.data[i]);
      else if (res.data[i] !== src.data[i]) changed++;
    }
  }
  expect(holes).toBeGreaterThan(3000);
  expect(changed).toBeGreaterThan(holes);
}, 120_000);
