/**
 * Interpolation between two samples: spherical interpolation of their initial noises (ALGORITHMS.md section 4),
 * sin((1-a) psi)/sin psi z1 + sin(a psi)/sin psi z2 with psi the angle between z1 and z2. Pure.
 */
import { Tensor } from '../tensor.js';

export function slerp(z1: Float32Array, z2: Float32Array, a: number): Float32Array {
  if (z1.length !== z2.length) throw new RangeError(`slerp: lengths ${z1.length} and ${z2.length} differ`);
  let dot = 0;
  let n1 = 0;
  let n2 = 0;
  for (let i = 0; i < z1.length; i++) {
    dot += z1[i] * z2[i];
    n1 += z1[i] * z1[i];
    n2 += z2[i] * z2[i];
  }
  const cos = Math.min(1, Math.max(-1, dot / Math.sqrt(n1 * n2)));
  const psi = Math.acos(cos);
  const out = new Float32Array(z1.length);
  if (psi < 1e-7) {
    for (let i = 0; i < out.length; i++) out[i] = (1 - a) * z1[i] + a * z2[i];
    return out;
  }
  const s1 = Math.sin((1 - a) * psi) / Math.sin(psi);
  const s2 = Math.sin(a * psi) / Math.sin(psi);
  for (let i = 0; i < out.length; i++) out[i] = s1 * z1[i] + s2 * z2[i];
  return out;
}

/** `frames` noises from z1 (a = 0) to z2 (a = 1), evenly in a, stacked as one batch. */
export function slerpFrames(z1: Tensor, z2: Tensor, frames: number): Tensor {
  if (z1.n !== 1 || !z1.sameShape(z2)) throw new RangeError('slerpFrames: expected two single images of one shape');
  const out = new Tensor(frames, z1.c, z1.h, z1.w);
  for (let f = 0; f < frames; f++) {
    const a = frames === 1 ? 0 : f / (frames - 1);
    out.data.set(slerp(z1.data, z2.data, a), f * z1.imageSize);
  }
  return out;
}
