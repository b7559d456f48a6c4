// Hole masks of bench:inpaint and the --fill calibration beyond bench/lib/data.mjs's families: an "object" of about
// S x S (a blob whose radius wobbles by a fifth around S/2, like a removed object's outline) at a seeded position.
import { makeMask, MASK_FAMILIES } from './data.mjs';
import { rng } from './images.mjs';

export const HOLE_FAMILIES = ['box', 'strokes', 'object64', 'object100'];

/** 1 = hole. box and strokes as bench:quality makes them; objectS: the blob, inside the image with a margin. */
export function makeHole(family, w, h, seed) {
  const m = /^object(\d+)$/.exec(family);
  if (!m) {
    if (!MASK_FAMILIES.includes(family)) throw new Error(`unknown hole family ${family}`);
    return makeMask(family, w, h, seed);
  }
  const s = Number(m[1]);
  const g = rng(seed);
  const margin = Math.max(4, Math.round(s / 4));
  const cx = margin + s / 2 + g.uniform() * Math.max(0, w - s - 2 * margin);
  const cy = margin + s / 2 + g.uniform() * Math.max(0, h - s - 2 * margin);
  const k = 2 + g.int(3);
  const phase = g.uniform() * 2 * Math.PI;
  const mask = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      const r = (s / 2) * (0.8 + 0.2 * Math.sin(k * Math.atan2(dy, dx) + phase));
      if (dx * dx + dy * dy <= r * r) mask[y * w + x] = 1;
    }
  }
  return mask;
}
