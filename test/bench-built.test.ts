import { mkdirSync, mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { assertBuilt, staleBuild } from '../bench/lib/built.mjs';

describe('the benchmarks refuse a build older than its source', () => {
  test('a missing or older dist/ file is stale; a rebuilt one is not', () => {
    const root = mkdtempSync(join(tmpdir(), 'cm-built-'));
    mkdirSync(join(root, 'src', 'editing'), { recursive: true });
    mkdirSync(join(root, 'dist', 'editing'), { recursive: true });
    const at = (p: string, t: number) => {
      writeFileSync(join(root, p), '');
      utimesSync(join(root, p), t, t);
    };
    at('src/cli.ts', 1000);
    at('dist/cli.js', 2000);
    at('src/editing/fill.ts', 3000);
    at('dist/editing/fill.js', 2000);
    at('src/new.ts', 1000);
    expect(staleBuild(root)).toEqual(['src/editing/fill.ts', 'src/new.ts']);
    expect(() => assertBuilt(root)).toThrow(/^dist\/ is older than src\/editing\/fill\.ts and 1 more: run npm run build first/);
    at('dist/editing/fill.js', 4000);
    at('dist/new.js', 4000);
    expect(staleBuild(root)).toEqual([]);
    expect(() => assertBuilt(root)).not.toThrow();
  });
});
