/**
 * --out-dir made by two processes at once (two shards side by side under GNU parallel): a folder that another process
 * makes between our look and our mkdir is not an error. The other process is simulated deterministically: mkdirSync
 * is wrapped so that the folder appears just before our own mkdir runs.
 */
import * as fs from 'node:fs';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';

/** Folders the "other process" makes first, the moment we try to make them. */
const madeByOther = new Set<string>();

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const mkdirSync = ((path: fs.PathLike, options?: fs.MakeDirectoryOptions) => {
    if (madeByOther.has(String(path))) real.mkdirSync(path);
    return real.mkdirSync(path, options);
  }) as typeof real.mkdirSync;
  return { ...real, default: { ...real, mkdirSync }, mkdirSync };
});

const { writeAtomic } = await import('../src/io/output.js');

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cm-race-'));
  writeFileSync(join(dir, 'plain2'), 'x');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('making an output folder', () => {
  test('a folder another process makes at the same moment (EEXIST) is used, at every level', async () => {
    const out = join(dir, 'a', 'b', 'c');
    for (const d of [join(dir, 'a'), join(dir, 'a', 'b'), out]) madeByOther.add(d);
    await writeAtomic(join(out, 'x.png'), new Uint8Array([1, 2, 3]), false, true);
    expect([...readFileSync(join(out, 'x.png'))]).toEqual([1, 2, 3]);
  });

  test('a file higher up the path is an error naming the output and the folder', async () => {
    await expect(writeAtomic(join(dir, 'plain2', 'sub', 'y.png'), new Uint8Array([1]), false, true)).rejects.toThrow(
      `${join(dir, 'plain2', 'sub', 'y.png')}: cannot create folder ${join(dir, 'plain2', 'sub')}: a file is in the way on its path`,
    );
  });

  test('a file where the folder should be is still an error naming the output and the folder', async () => {
    writeFileSync(join(dir, 'plain'), 'x');
    await expect(writeAtomic(join(dir, 'plain', 'y.png'), new Uint8Array([1]), false, true)).rejects.toThrow(
      `${join(dir, 'plain', 'y.png')}: cannot create folder ${join(dir, 'plain')}: a file of that name is in the way`,
    );
  });
});
