/**
 * --shard I/N: the hash that splits a batch (pure), and end to end: two shards run side by side by GNU parallel give
 * the same files, byte for byte, as one run.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fc, test as fcTest } from '@fast-check/vitest';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { inShard, parseShard, shardKey, shardOf } from '../src/shard.js';
import { CM_BIN, TINY_MODEL } from './helpers/paths.js';

describe('the shard hash', () => {
  test('I/N is 0-based; anything else is a usage error naming the flag', () => {
    expect(parseShard('0/1')).toEqual({ index: 0, count: 1 });
    expect(parseShard('3/4')).toEqual({ index: 3, count: 4 });
    for (const bad of ['4/4', '1/0', '-1/2', '1', 'a/b', '1/2/3', '']) {
      expect(() => parseShard(bad)).toThrow(`for --shard but received ${JSON.stringify(bad)}`);
    }
  });

  test('keys: the path relative to the folder named, or the path as given; same key whatever the spelling', () => {
    expect(shardKey('photos/sub/a.png', 'photos')).toBe('sub/a.png');
    expect(shardKey('./photos/a.png', './photos/')).toBe('a.png');
    expect(shardKey('/mnt/nfs/photos/a.png', '/mnt/nfs/photos')).toBe(shardKey('photos/a.png', 'photos'));
    expect(shardKey('./x//y.png')).toBe('x/y.png');
  });

  test('the share is the first 4 bytes of the key\'s SHA-256, modulo N (as in the README)', () => {
    // printf a.png | sha256sum -> 7f071235...: 0x7f071235 = 2131169845 = 4 * 532792461 + 1
    expect(shardOf('a.png', 4)).toBe(1);
    expect(shardOf('a.png', 2131169846)).toBe(2131169845);
    expect(shardOf('sub/b.jpg', 4)).toBe(3);
  });

  fcTest.prop([fc.uniqueArray(fc.stringMatching(/^[a-z0-9/]{1,12}\.png$/), { maxLength: 60 }), fc.integer({ min: 1, max: 9 })])(
    'the N shares are disjoint and together hold every input, whatever the order',
    (keys, n) => {
      const owners = keys.map((k) => Array.from({ length: n }, (_, i) => i).filter((i) => inShard(k, { index: i, count: n })));
      for (const o of owners) expect(o).toHaveLength(1);
      const reversed = [...keys].reverse().map((k) => shardOf(k, n));
      expect(reversed.reverse()).toEqual(owners.map((o) => o[0]));
    },
  );
});

let dir: string;
const at = (...p: string[]): string => join(dir, ...p);

function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else out.push(relative(root, join(d, e.name)));
    }
  };
  walk(root);
  return out.sort();
}

function cm(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CM_BIN, ...args, '--model', TINY_MODEL, '--device', 'cpu'], { cwd: dir });
  return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

const records = (out: string): { input: string; status: string; shard?: string }[] =>
  out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-shard-'));
  mkdirSync(at('in', 'sub'), { recursive: true });
  for (let i = 0; i < 20; i++) {
    const d = Buffer.alloc(64 * 64 * 3);
    for (let k = 0; k < d.length; k++) d[k] = (k * (i + 3) + i * 17) % 256;
    await sharp(d, { raw: { width: 64, height: 64, channels: 3 } }).png().toFile(at('in', ...(i < 6 ? ['sub'] : []), `p${String(i).padStart(2, '0')}.png`));
  }
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hasParallel = spawnSync('parallel', ['--version']).status === 0;
if (!hasParallel) console.warn('skipping the GNU parallel test: `parallel` is not installed (Debian: apt-get install parallel)');

describe('--shard end to end', () => {
  test.runIf(hasParallel)('two shards side by side under GNU parallel make the same files, byte for byte, as one run', () => {
    const common = ['colorize', 'in', '-r', '--seed', '5', '--json', '-q'];
    const whole = cm([...common, '--out-dir', 'whole']);
    expect(whole.status).toBe(0);
    const cmd = [process.execPath, CM_BIN, ...common, '--out-dir', 'sharded', '--shard', '{}/2', '--model', TINY_MODEL, '--device', 'cpu'];
    const r = spawnSync('parallel', ['--will-cite', '-j', '2', ...cmd, ':::', '0', '1'], { cwd: dir });
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(tree(at('sharded'))).toHaveLength(20);
    expect(tree(at('sharded'))).toEqual(tree(at('whole')));
    for (const f of tree(at('whole'))) expect(readFileSync(at('sharded', f)).equals(readFileSync(at('whole', f))), f).toBe(true);
    // The records: one per input, each in exactly one shard, both shards used.
    const recs = records(r.stdout.toString());
    expect(recs.map((x) => x.input).sort()).toEqual(records(whole.stdout).map((x) => x.input).sort());
    expect(new Set(recs.map((x) => x.shard))).toEqual(new Set(['0/2', '1/2']));
    expect(recs.every((x) => x.status === 'ok')).toBe(true);
  });

  test('the share does not depend on how the inputs are listed; an empty share is not an error', () => {
    // With every output present, --skip-existing lists a shard's inputs without running the model.
    const files = readdirSync(at('in')).filter((f) => f.endsWith('.png')).map((f) => join('in', f));
    mkdirSync(at('listed'));
    for (const f of files) writeFileSync(at('listed', f.replace('in/', '').replace('.png', '.colorize.png')), '');
    const pick = (list: string[]): string[] => {
      const r = cm(['colorize', ...list, '--out-dir', 'listed', '--skip-existing', '--shard', '1/3', '--json']);
      expect(r.status).toBe(0);
      expect(r.stderr).toMatch(/^cm: shard 1\/3: \d+ files?: 0 done, \d+ skipped, 0 failed\n$/);
      return records(r.stdout).map((x) => x.input).sort();
    };
    const forward = pick(files);
    expect(pick([...files].reverse())).toEqual(forward);
    expect(forward.length).toBeGreaterThan(0);
    expect(forward.length).toBeLessThan(files.length);
    const one = cm(['colorize', files[0], '--out-dir', 'listed', '--skip-existing', '--shard', `${(shardOf(files[0], 2) + 1) % 2}/2`, '--json']);
    expect([one.status, one.stdout, one.stderr]).toEqual([0, '', `cm: shard ${(shardOf(files[0], 2) + 1) % 2}/2: 0 files: 0 done, 0 failed\n`]);
  });

  test('--shard with stdin, or out of range, is a usage error', () => {
    expect(cm(['colorize', '-', '--shard', '0/2']).status).toBe(2);
    const r = cm(['colorize', 'in', '--shard', '2/2']);
    expect([r.status, r.stderr]).toEqual([2, 'cm: Expected I/N with 0 <= I < N <= 1000000 for --shard but received "2/2"\n']);
  });
});
