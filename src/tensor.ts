/**
 * A small image tensor: float32 values in NCHW order, plus the handful of element-wise ops the math needs.
 * Pure: no I/O, no console.
 */
export class Tensor {
  readonly data: Float32Array;

  constructor(
    readonly n: number,
    readonly c: number,
    readonly h: number,
    readonly w: number,
    data?: Float32Array,
  ) {
    for (const [name, v] of [['n', n], ['c', c], ['h', h], ['w', w]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`Expected a positive integer for ${name} but received ${v}`);
    }
    const size = n * c * h * w;
    if (data && data.length !== size) {
      throw new RangeError(`Expected ${size} values for shape [${n},${c},${h},${w}] but received ${data.length}`);
    }
    this.data = data ?? new Float32Array(size);
  }

  get shape(): [number, number, number, number] {
    return [this.n, this.c, this.h, this.w];
  }

  /** Values in one image of the batch. */
  get imageSize(): number {
    return this.c * this.h * this.w;
  }

  /** A zero tensor of the same shape. */
  zerosLike(): Tensor {
    return new Tensor(this.n, this.c, this.h, this.w);
  }

  clone(): Tensor {
    return new Tensor(this.n, this.c, this.h, this.w, this.data.slice());
  }

  /** A new tensor with f applied to each value (and to the matching value of `other`, when given). */
  map(f: (v: number, i: number) => number): Tensor {
    const out = this.zerosLike();
    const a = this.data;
    const o = out.data;
    for (let i = 0; i < a.length; i++) o[i] = f(a[i], i);
    return out;
  }

  /** Image i of the batch, as a tensor of batch 1 (a copy). */
  image(i: number): Tensor {
    const s = this.imageSize;
    return new Tensor(1, this.c, this.h, this.w, this.data.slice(i * s, (i + 1) * s));
  }

  sameShape(other: Tensor): boolean {
    return this.n === other.n && this.c === other.c && this.h === other.h && this.w === other.w;
  }
}

export function assertSameShape(a: Tensor, b: Tensor, what: string): void {
  if (!a.sameShape(b)) {
    throw new RangeError(`${what}: shapes [${a.shape}] and [${b.shape}] differ`);
  }
}

/** Stack batch-1 tensors (or batches) of equal C, H, W into one batch. */
export function concatBatch(parts: Tensor[]): Tensor {
  if (parts.length === 0) throw new RangeError('concatBatch: no tensors');
  const [first] = parts;
  let n = 0;
  for (const p of parts) {
    if (p.c !== first.c || p.h !== first.h || p.w !== first.w) {
      throw new RangeError(`concatBatch: shapes [${first.shape}] and [${p.shape}] differ`);
    }
    n += p.n;
  }
  const out = new Tensor(n, first.c, first.h, first.w);
  let offset = 0;
  for (const p of parts) {
    out.data.set(p.data, offset);
    offset += p.data.length;
  }
  return out;
}

/** a + s * b, element-wise. */
export function addScaled(a: Tensor, s: number, b: Tensor): Tensor {
  assertSameShape(a, b, 'addScaled');
  const out = a.zerosLike();
  const ad = a.data;
  const bd = b.data;
  const o = out.data;
  for (let i = 0; i < o.length; i++) o[i] = ad[i] + s * bd[i];
  return out;
}

/** Each value clamped to [lo, hi]. */
export function clamp(a: Tensor, lo = -1, hi = 1): Tensor {
  const out = a.zerosLike();
  const ad = a.data;
  const o = out.data;
  for (let i = 0; i < o.length; i++) {
    const v = ad[i];
    o[i] = v < lo ? lo : v > hi ? hi : v;
  }
  return out;
}

/** Largest absolute element-wise difference. */
export function maxAbsDiff(a: Tensor, b: Tensor): number {
  assertSameShape(a, b, 'maxAbsDiff');
  let m = 0;
  const ad = a.data;
  const bd = b.data;
  for (let i = 0; i < ad.length; i++) {
    const d = Math.abs(ad[i] - bd[i]);
    if (d > m) m = d;
  }
  return m;
}

/** The w x h rectangle at (x, y) of every image and channel. */
export function cropTensor(t: Tensor, x: number, y: number, w: number, h: number): Tensor {
  if (x < 0 || y < 0 || x + w > t.w || y + h > t.h) throw new RangeError(`crop ${w}x${h}+${x}+${y} outside [${t.shape}]`);
  const out = new Tensor(t.n, t.c, h, w);
  for (let p = 0; p < t.n * t.c; p++) {
    for (let r = 0; r < h; r++) {
      const src = (p * t.h + y + r) * t.w + x;
      out.data.set(t.data.subarray(src, src + w), (p * h + r) * w);
    }
  }
  return out;
}

/** `part` written into a copy of `t` at (x, y). */
export function pasteTensor(t: Tensor, part: Tensor, x: number, y: number): Tensor {
  if (part.n !== t.n || part.c !== t.c || x < 0 || y < 0 || x + part.w > t.w || y + part.h > t.h) {
    throw new RangeError(`paste [${part.shape}] at +${x}+${y} outside [${t.shape}]`);
  }
  const out = t.clone();
  for (let p = 0; p < t.n * t.c; p++) {
    for (let r = 0; r < part.h; r++) {
      out.data.set(part.data.subarray((p * part.h + r) * part.w, (p * part.h + r + 1) * part.w), (p * t.h + y + r) * t.w + x);
    }
  }
  return out;
}

/**
 * Half the size (rounded up): each value the mean of its 2x2 cell, over the cell's pixels inside the image and,
 * when `weight` ([N or 1,1,H,W]) is given, weighted by it (cells of zero weight get 0).
 */
export function halveTensor(t: Tensor, weight?: Tensor): Tensor {
  const w2 = Math.ceil(t.w / 2);
  const h2 = Math.ceil(t.h / 2);
  const out = new Tensor(t.n, t.c, h2, w2);
  const plane = t.w * t.h;
  for (let n = 0; n < t.n; n++) {
    const wb = weight ? (weight.n === 1 ? 0 : n) * plane : 0;
    for (let c = 0; c < t.c; c++) {
      const src = (n * t.c + c) * plane;
      for (let r = 0; r < h2; r++) {
        for (let u = 0; u < w2; u++) {
          let s = 0;
          let ws = 0;
          for (let dy = 0; dy < 2 && 2 * r + dy < t.h; dy++) {
            for (let dx = 0; dx < 2 && 2 * u + dx < t.w; dx++) {
              const p = (2 * r + dy) * t.w + 2 * u + dx;
              const k = weight ? weight.data[wb + p] : 1;
              s += k * t.data[src + p];
              ws += k;
            }
          }
          out.data[((n * t.c + c) * h2 + r) * w2 + u] = ws > 0 ? s / ws : 0;
        }
      }
    }
  }
  return out;
}

/**
 * Dihedral view v (0-7) of every image of a batch: mirrored left-right when v >= 4, then turned by (v mod 4)
 * quarter turns counter-clockwise (a turn by 1 or 3 swaps height and width). View 0 is the tensor itself.
 */
export function toView(t: Tensor, v: number): Tensor {
  if (v === 0) return t;
  return rotate(v >= 4 ? flipLeftRight(t) : t, v % 4);
}

/** The inverse of toView: fromView(toView(t, v), v) equals t. */
export function fromView(t: Tensor, v: number): Tensor {
  if (v === 0) return t;
  const back = rotate(t, (4 - (v % 4)) % 4);
  return v >= 4 ? flipLeftRight(back) : back;
}

function flipLeftRight(t: Tensor): Tensor {
  const out = t.zerosLike();
  for (let p = 0; p < t.n * t.c * t.h; p++) {
    const row = p * t.w;
    for (let x = 0; x < t.w; x++) out.data[row + x] = t.data[row + t.w - 1 - x];
  }
  return out;
}

/** k quarter turns counter-clockwise (as numpy.rot90 over the last two axes). */
function rotate(t: Tensor, k: number): Tensor {
  if (k === 0) return t;
  const { h, w } = t;
  const out = k === 2 ? t.zerosLike() : new Tensor(t.n, t.c, w, h);
  const oh = out.h;
  const ow = out.w;
  for (let p = 0; p < t.n * t.c; p++) {
    const src = p * h * w;
    const dst = p * oh * ow;
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        // out[i][j] = in[j][w-1-i] (k 1), in[h-1-i][w-1-j] (k 2), in[h-1-j][i] (k 3)
        const s = k === 1 ? j * w + (w - 1 - i) : k === 2 ? (h - 1 - i) * w + (w - 1 - j) : (h - 1 - j) * w + i;
        out.data[dst + i * ow + j] = t.data[src + s];
      }
    }
  }
  return out;
}
