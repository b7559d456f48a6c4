// Shared by the quality and speed benchmarks: paths, the model, spawning the CLI, the machine's state, RESULTS.md.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { assertBuilt } from './built.mjs';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
assertBuilt(ROOT);
export const CLI = join(ROOT, 'bin', 'cm.js');
export const RESULTS = join(ROOT, 'bench', 'results');

/** Command-line flags: --name value, --name=value (a value that starts with -- itself), --flag (true). */
export function parseFlags(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 2) {
      out[a.slice(2, eq)] = a.slice(eq + 1);
      continue;
    }
    const key = a.slice(2);
    if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out[key] = argv[++i];
    else out[key] = true;
  }
  return out;
}

/** The model the benchmark measures: --model, else what the CLI itself takes as the default (cm models). */
export async function chooseModel(flag) {
  if (typeof flag === 'string') return flag;
  const { resolveModel } = await import(join(ROOT, 'dist', 'runtime', 'registry.js'));
  const path = resolveModel(undefined);
  if (!path) throw new Error('no default model: pass --model PATH');
  return path;
}

export async function modelCard(path) {
  const { readModelFile } = await import(join(ROOT, 'dist', 'runtime', 'model.js'));
  const file = await readModelFile(path);
  return file.card;
}

/** Run bin/cm.js (or `cli`, another build's); resolves with stdout, stderr, exit code and wall seconds. */
export function runCli(args, { cwd = ROOT, env = {}, cli = CLI } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [cli, ...args], { cwd, env: { ...process.env, ORT_DISABLE_TELEMETRY: '1', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, seconds: (performance.now() - t0) / 1000 }));
  });
}

/** JSON records of a --json run; throws when the run or any file failed. */
export function records(run, what) {
  const recs = run.stdout
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .map((l) => JSON.parse(l));
  const bad = recs.filter((r) => r.status !== 'ok');
  if (run.code !== 0 || bad.length) {
    throw new Error(`${what}: cm exited ${run.code}: ${bad[0]?.error ?? run.stderr.trim().split('\n').pop()}`);
  }
  return recs;
}

export function machine() {
  const c = cpus();
  return {
    cpu: c[0]?.model ?? 'unknown',
    cores: c.length,
    loadavg: loadavg().map((v) => Math.round(v * 100) / 100),
    node: process.version,
  };
}

export const round = (v, d = 2) => (Number.isFinite(v) ? Math.round(v * 10 ** d) / 10 ** d : null);

/** RESULTS.md = the quality part and the speed part, each written by its own script (quality.md, speed.md). */
export function assembleResults(dir) {
  const parts = ['quality.md', 'speed.md'].map((f) => join(dir, f)).filter((p) => existsSync(p));
  const head =
    '# cm benchmark results\n\nWritten by `npm run bench:quality` and `npm run bench:speed` (see `bench/README.md`); ' +
    'each section says when, on what and with which model it was measured.\n\n';
  writeFileSync(join(dir, 'RESULTS.md'), head + parts.map((p) => readFileSync(p, 'utf8')).join('\n'));
}


/** The commit the measured code is at, and the files under src/ that differ from it (others may be editing). */
export function codeVersion() {
  try {
    const git = (args) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    // Porcelain lines are "XY path": keep their leading blanks (no trim) so the path starts at column 3.
    const changed = git(['status', '--porcelain', '--', 'src']).split('\n').filter(Boolean).map((l) => l.slice(3));
    return { commit: git(['rev-parse', '--short', 'HEAD']).trim(), srcChanged: changed };
  } catch {
    return { commit: 'unknown', srcChanged: [] };
  }
}

/** onnxruntime session options as the CLI sets them (src/runtime/session.ts), for benchmarks that open sessions. */
export function sessionOptions({ threads, provider = 'cpu' }) {
  return {
    executionProviders: [provider === 'cuda' ? { name: 'cuda', deviceId: 0 } : provider],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    logSeverityLevel: 3,
    // As the CLI (src/runtime/session.ts): no spinning intra-op threads on the CPU.
    ...(provider === 'cpu' ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
  };
}

/**
 * The inputs of the timed model calls of bench:processes and bench:calls: n (at most 4) tiles of 128x128 of seeded
 * uniform values in [-1, 1], at noise levels 0.05 / 0.2 / 0.8 / 3.
 */
export function callInputs(ort, n) {
  const H = 128;
  let seed = 7;
  const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  const data = Float32Array.from({ length: 4 * 3 * H * H }, () => rnd() * 2 - 1).subarray(0, n * 3 * H * H);
  return {
    x: new ort.Tensor('float32', data, [n, 3, H, H]),
    sigma: new ort.Tensor('float32', Float32Array.from([0.05, 0.2, 0.8, 3]).subarray(0, n), [n]),
  };
}
