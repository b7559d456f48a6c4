/**
 * --shard I/N: the I-th of N deterministic shares of a batch's inputs, for running one batch on many machines. Each
 * input goes to the share given by a stable hash of its path relative to its root (the folder named on the command
 * line, or the path as given for a file named directly), so shares never overlap, their union is the whole batch, and
 * neither depends on the order the inputs are listed in or on the machine. Pure.
 */
import { createHash } from 'node:crypto';
import { relative } from 'node:path';
import { UsageError } from './errors.js';

export interface Shard {
  /** 0-based: 0 <= index < count. */
  index: number;
  count: number;
}

/** "I/N" with 0 <= I < N (Slurm's $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT for --array=0-(N-1)). */
export function parseShard(spec: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(spec);
  const index = m ? Number(m[1]) : Number.NaN;
  const count = m ? Number(m[2]) : Number.NaN;
  if (!m || !Number.isSafeInteger(count) || count < 1 || count > 1_000_000 || index >= count) {
    throw new UsageError(`Expected I/N with 0 <= I < N <= 1000000 for --shard but received ${JSON.stringify(spec)}`);
  }
  return { index, count };
}

/**
 * The key an input is sharded by: its path relative to the folder it was found in (`root`), or, for a file named
 * directly, its path as given; / separators, no "." segments.
 */
export function shardKey(path: string, root?: string): string {
  const rel = root === undefined ? path : relative(root, path);
  return rel
    .replace(/\\/g, '/')
    .split('/')
    .filter((s) => s !== '' && s !== '.')
    .join('/');
}

/** Which share a key belongs to: the first 4 bytes of its SHA-256 (UTF-8), big-endian, modulo N. */
export function shardOf(key: string, count: number): number {
  return createHash('sha256').update(key, 'utf8').digest().readUInt32BE(0) % count;
}

export function inShard(key: string, shard: Shard): boolean {
  return shardOf(key, shard.count) === shard.index;
}
