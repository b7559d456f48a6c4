/**
 * Windows around the holes of an inpainting mask (ALGORITHMS.md section 5, the crop strategy): each connected hole
 * gets a square context window a few times its size (at least `minSide`), windows that overlap are merged, so a
 * small hole in a big photo is edited without touching the rest of the image. Pure.
 */
import type { Tensor } from '../tensor.js';

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

interface Box {
  x0: number;
  y0: number;
  x1: number; // exclusive
  y1: number;
}

/** The inclusive bounding box of the pixels where mask > 0 in a w x h plane, or undefined when there are none. */
export function maskBounds(mask: ArrayLike<number>, w: number, h: number): { x0: number; y0: number; x1: number; y1: number } | undefined {
  let x0 = w;
  let x1 = -1;
  let y0 = h;
  let y1 = -1;
  for (let p = 0; p < w * h; p++) {
    if (!(mask[p] > 0)) continue;
    const x = p % w;
    const y = (p - x) / w;
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, y);
    y1 = Math.max(y1, y);
  }
  return x1 < 0 ? undefined : { x0, y0, x1, y1 };
}

/** Bounding boxes of the 8-connected components of fill > 0 (image 0 of fill [N,1,H,W]). */
export function holeBoxes(fill: Tensor): Box[] {
  const { w, h } = fill;
  const seen = new Uint8Array(w * h);
  const boxes: Box[] = [];
  const stack: number[] = [];
  for (let p0 = 0; p0 < w * h; p0++) {
    if (seen[p0] || !(fill.data[p0] > 0)) continue;
    const box = { x0: w, y0: h, x1: 0, y1: 0 };
    seen[p0] = 1;
    stack.push(p0);
    while (stack.length) {
      const p = stack.pop() as number;
      const x = p % w;
      const y = (p - x) / w;
      box.x0 = Math.min(box.x0, x);
      box.y0 = Math.min(box.y0, y);
      box.x1 = Math.max(box.x1, x + 1);
      box.y1 = Math.max(box.y1, y + 1);
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          const yy = y + dy;
          if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
          const q = yy * w + xx;
          if (!seen[q] && fill.data[q] > 0) {
            seen[q] = 1;
            stack.push(q);
          }
        }
      }
    }
    boxes.push(box);
  }
  return boxes;
}

/** A square window of side max(minSide, context x the box's longer side) centred on the box, inside the image. */
function windowAround(b: Box, w: number, h: number, minSide: number, context: number): Rect {
  const side = Math.max(minSide, Math.ceil(context * Math.max(b.x1 - b.x0, b.y1 - b.y0)));
  const ww = Math.min(w, side);
  const wh = Math.min(h, side);
  const cx = (b.x0 + b.x1) / 2;
  const cy = (b.y0 + b.y1) / 2;
  const x = Math.min(Math.max(0, Math.round(cx - ww / 2)), w - ww);
  const y = Math.min(Math.max(0, Math.round(cy - wh / 2)), h - wh);
  return { x, y, w: ww, h: wh };
}

const overlaps = (a: Rect, b: Rect): boolean => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

/**
 * Context windows covering every hole: one per connected hole (merged while any two overlap, around the union of
 * their holes). Each window contains its holes with at least (context - 1) / 2 of their size around them where
 * the image allows.
 */
export function holeWindows(fill: Tensor, minSide: number, context = 3): Rect[] {
  let groups = holeBoxes(fill).map((b) => ({ box: b, win: windowAround(b, fill.w, fill.h, minSide, context) }));
  for (let merged = true; merged; ) {
    merged = false;
    outer: for (let i = 0; i < groups.length; i++) {
      for (let j = i + 1; j < groups.length; j++) {
        if (!overlaps(groups[i].win, groups[j].win)) continue;
        const a = groups[i].box;
        const b = groups[j].box;
        const box = { x0: Math.min(a.x0, b.x0), y0: Math.min(a.y0, b.y0), x1: Math.max(a.x1, b.x1), y1: Math.max(a.y1, b.y1) };
        groups = [...groups.filter((_, k) => k !== i && k !== j), { box, win: windowAround(box, fill.w, fill.h, minSide, context) }];
        merged = true;
        break outer;
      }
    }
  }
  return groups.map((g) => g.win);
}

/** How many halvings (rounding up) bring max(w, h) down to at most `side`. */
export function halvingsToFit(w: number, h: number, side: number): number {
  let k = 0;
  for (let s = Math.max(w, h); s > side; s = Math.ceil(s / 2)) k++;
  return k;
}
