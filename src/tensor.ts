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
  const bd = b.data;
  return a.map((v, i) => v + s * bd[i]);
}

/** Each value clamped to [lo, hi]. */
export function clamp(a: Tensor, lo = -1, hi = 1): Tensor {
  return a.map((v) => (v < lo ? lo : v > hi ? hi : v));
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
