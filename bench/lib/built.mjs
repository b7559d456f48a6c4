// The benchmarks measure dist/, the build of src/: one that is older than its source measures code that is no longer
// there (or fails on a model the new code writes), so they stop first and say so.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/** The src/ files (relative to root) whose dist/ counterpart is missing or older. */
export function staleBuild(root) {
  const stale = [];
  const src = join(root, 'src');
  const walk = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const st = statSync(path);
      if (st.isDirectory()) walk(path);
      else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) {
        const out = join(root, 'dist', relative(src, path)).replace(/\.ts$/, '.js');
        if (!existsSync(out) || statSync(out).mtimeMs < st.mtimeMs) stale.push(relative(root, path));
      }
    }
  };
  if (existsSync(src)) walk(src);
  return stale;
}

/** Throws, naming the first stale file, unless dist/ is at least as new as every file of src/. */
export function assertBuilt(root) {
  const stale = staleBuild(root);
  if (stale.length) {
    const more = stale.length > 1 ? ` and ${stale.length - 1} more` : '';
    throw new Error(`dist/ is older than ${stale[0]}${more}: run npm run build first (the benchmarks run dist/)`);
  }
}
