// bench:speed's issue-19 section: cm's x4 super-resolution (float model and its int8 variant) against the peer,
// UpscalerJS (bench/upscalerjs.mjs), on the same 256x256 photo crop in the same run, alternating, medians; the model's
// evaluation float against int8; onnxruntime's session options; tile sizes. Writes peer.json and peer.md.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { machine, records, ROOT, round } from './common.mjs';
import { loadPhoto, photoPaths } from './data.mjs';
import { crop, savePng } from './images.mjs';
import { median } from './metrics.mjs';

/** A command under /usr/bin/time: wall seconds, CPU seconds (user + system), peak RSS (MB). */
function measured(args, env = {}) {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn('/usr/bin/time', ['-f', 'peer-time %M %U %S', ...args], { cwd: ROOT, env: { ...process.env, ORT_DISABLE_TELEMETRY: '1', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (e) => resolve({ code: -1, stdout, stderr: String(e) }));
    child.on('close', (code) => {
      const m = /peer-time (\d+) ([\d.]+) ([\d.]+)/.exec(stderr);
      resolve({ code, stdout, stderr, wall: (performance.now() - t0) / 1000, cpu: m ? Number(m[2]) + Number(m[3]) : null, rssMB: m ? round(Number(m[1]) / 1024, 1) : null });
    });
  });
}

/** The CPU's model name and its int8 flags (the --precision auto choice). */
function cpuInfo() {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const flags = new Set((/^flags\s*:(.*)$/m.exec(text)?.[1] ?? '').trim().split(/\s+/));
    return { model: /^model name\s*:\s*(.*)$/m.exec(text)?.[1] ?? machine().cpu, int8Flags: ['amx_int8', 'avx512_vnni', 'avx_vnni'].filter((f) => flags.has(f)) };
  } catch {
    return { model: machine().cpu, int8Flags: [] };
  }
}

/** Median wall and CPU ms per call of `session` on `b` tiles of side `side` (2 warm-up calls excluded). */
async function perCall(ort, session, b, side, reps) {
  const x = new Float32Array(b * 3 * side * side);
  let s = 12345;
  for (let i = 0; i < x.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    x[i] = 0.6 * Math.sin(i * 0.002) + ((s / 2 ** 32) * 2 - 1) * 0.1;
  }
  const feeds = { x: new ort.Tensor('float32', x, [b, 3, side, side]), sigma: new ort.Tensor('float32', new Float32Array(b).fill(0.1), [b]) };
  for (let i = 0; i < 2; i++) await session.run(feeds);
  const wall = [];
  const cpu = [];
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await session.run(feeds);
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { wallMs: round(median(wall), 1), cpuMs: round(median(cpu), 1) };
}

export async function peerSection({ work, smoke, log, model, outDir, peerRounds }) {
  const ort = await import('onnxruntime-node');
  ort.env.logLevel = 'fatal';
  const int8 = model.replace(/\.onnx$/, '-int8.onnx');
  const hasInt8 = existsSync(int8);
  const cpu = cpuInfo();
  const rounds = smoke ? 1 : Number(peerRounds ?? 3);
  const reps = smoke ? 2 : 7;
  const result = { measuredAt: new Date().toISOString(), machine: { ...machine(), cpuModel: cpu.model, int8Flags: cpu.int8Flags }, model, int8: hasInt8 ? int8 : null };

  // 1. One model call: 4 tiles of 128x128 (the CLI's CPU batch and tile), float against int8, 1 and 2 threads.
  const evals = {};
  for (const threads of smoke ? [1] : [1, 2]) {
    for (const [name, path] of [['float', model], ...(hasInt8 ? [['int8', int8]] : [])]) {
      const session = await ort.InferenceSession.create(path, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1, extra: { session: { intra_op: { allow_spinning: '0' } } } });
      (evals[threads] ??= {})[name] = await perCall(ort, session, 4, 128, reps);
      await session.release();
    }
  }
  result.evaluation = evals;
  log(`peer: one call of 4 x 128x128: ${JSON.stringify(evals)}`);

  // 2. onnxruntime's session options on the int8 (else float) model, 2 threads: optimisation level, memory arena,
  // spinning threads (the CLI: level all, arena on, no spinning).
  const options = {};
  const optModel = hasInt8 ? int8 : model;
  const noSpin = { extra: { session: { intra_op: { allow_spinning: '0' } } } };
  for (const [name, o] of [
    ['all, no spinning (the CLI)', { graphOptimizationLevel: 'all', ...noSpin }],
    ['all, spinning (onnxruntime\'s default)', { graphOptimizationLevel: 'all' }],
    ['extended, no spinning', { graphOptimizationLevel: 'extended', ...noSpin }],
    ['basic, no spinning', { graphOptimizationLevel: 'basic', ...noSpin }],
    ['all, no spinning, no CPU memory arena', { graphOptimizationLevel: 'all', enableCpuMemArena: false, ...noSpin }],
  ]) {
    const session = await ort.InferenceSession.create(optModel, { executionProviders: ['cpu'], intraOpNumThreads: smoke ? 1 : 2, interOpNumThreads: 1, ...o });
    options[name] = await perCall(ort, session, 4, 128, reps);
    await session.release();
  }
  result.sessionOptions = { model: optModel, threads: smoke ? 1 : 2, perCall: options };
  log(`peer: session options: ${JSON.stringify(options)}`);

  // 3. End to end, x4 of a 256x256 photo crop (1024x1024 out): cm float, cm int8 (auto), UpscalerJS slim and medium.
  const photo = await loadPhoto(photoPaths('kodak24')[0]);
  const side = smoke ? 64 : 256;
  const input = join(work, 'peer-in.png');
  await savePng(crop(photo, Math.floor((photo.w - side) / 2), Math.floor((photo.h - side) / 2), side, side), input);
  const cm = (precision, extra = []) => [process.execPath, join(ROOT, 'bin', 'cm.js'), 'superres', '-x', '4', input, '-o', join(work, `peer-cm-${precision}.png`), '--model', model, '--device', 'cpu', '--seed', '0', '-q', '--json', '--force', '--precision', precision, ...extra];
  const contenders = [
    ['cm float', cm('float')],
    ...(hasInt8 ? [['cm int8', cm('int8')]] : []),
    ['UpscalerJS esrgan-slim', [process.execPath, join(ROOT, 'bench', 'upscalerjs.mjs'), 'slim', input, join(work, 'peer-slim.png')]],
    ['UpscalerJS esrgan-medium', [process.execPath, join(ROOT, 'bench', 'upscalerjs.mjs'), 'medium', input, join(work, 'peer-medium.png')]],
    ...(hasInt8 && !smoke ? [['cm int8, --tile 256', cm('int8', ['--tile', '256'])]] : []),
  ];
  const runs = Object.fromEntries(contenders.map(([n]) => [n, []]));
  const problems = {};
  for (let r = 0; r < rounds; r++) {
    for (const [name, args] of contenders) {
      if (problems[name]) continue;
      const run = await measured(args);
      if (run.code !== 0) {
        problems[name] = (run.stderr.split('\n').filter((l) => l.trim() && !l.startsWith('peer-time')).pop() ?? `exit ${run.code}`).slice(0, 300);
        continue;
      }
      const rec = name.startsWith('cm') ? records(run, name)[0] : JSON.parse(run.stdout.trim().split('\n').pop());
      runs[name].push({ wall: run.wall, cpu: run.cpu, rssMB: run.rssMB, evaluations: rec.evaluations ?? null, inner: rec.upscaleSeconds ?? rec.seconds ?? null });
    }
  }
  const outMP = (4 * side) ** 2 / 1e6;
  const e2e = {};
  for (const [name, rs] of Object.entries(runs)) {
    if (rs.length === 0) {
      e2e[name] = { error: problems[name] ?? 'not run' };
      continue;
    }
    const wall = median(rs.map((x) => x.wall));
    e2e[name] = { runs: rs.length, wallSeconds: round(wall, 2), cpuSeconds: round(median(rs.map((x) => x.cpu)), 2), secondsPerOutputMP: round(wall / outMP, 2), peakRssMB: Math.max(...rs.map((x) => x.rssMB ?? 0)), evaluations: rs[0].evaluations, innerSeconds: round(median(rs.map((x) => x.inner)), 2) };
  }
  const medium = e2e['UpscalerJS esrgan-medium']?.wallSeconds;
  const slim = e2e['UpscalerJS esrgan-slim']?.wallSeconds;
  for (const e of Object.values(e2e)) {
    if (e.wallSeconds === undefined) continue;
    if (medium) e.vsMedium = round(e.wallSeconds / medium, 2);
    if (slim) e.vsSlim = round(e.wallSeconds / slim, 2);
  }
  result.endToEnd = { input: `${side}x${side} crop of Kodak24 image 1`, output: `${4 * side}x${4 * side}`, rounds, runs: e2e };
  // 4. Seconds per output megapixel of every task on a Kodak photo (768x512), default plans, float against int8, alternating.
  if (hasInt8) {
    const sharp = (await import('sharp')).default;
    const kodak = join(work, 'permp-kodak.png');
    await savePng(smoke ? crop(photo, 0, 0, 128, 128) : photo, kodak);
    const { width: kw, height: kh } = await sharp(kodak).metadata();
    await sharp(kodak).greyscale().png().toFile(join(work, 'permp-gray.png'));
    await sharp(kodak).resize(kw / 4, kh / 4).png().toFile(join(work, 'permp-low.png'));
    const mask = Buffer.alloc(kw * kh);
    for (let y = Math.floor(kh / 4); y < Math.floor((3 * kh) / 4); y++) for (let x = Math.floor(kw / 4); x < Math.floor((3 * kw) / 4); x++) mask[y * kw + x] = 255;
    await sharp(mask, { raw: { width: kw, height: kh, channels: 1 } }).png().toFile(join(work, 'permp-mask.png'));
    const tasks = [
      ['superres x4', ['superres', join(work, 'permp-low.png'), '-x', '4']],
      ['superres x2', ['superres', join(work, 'permp-low.png'), '-x', '2']],
      ['inpaint (box, a quarter)', ['inpaint', kodak, '--mask', join(work, 'permp-mask.png')]],
      ['colorize', ['colorize', join(work, 'permp-gray.png')]],
      ['denoise 25', ['denoise', kodak, '--noise', '25']],
      ['stroke', ['stroke', kodak]],
    ];
    const perMP = {};
    for (const [name, args] of smoke ? tasks.slice(0, 2) : tasks) {
      const outPixels = name === 'superres x2' ? (kw / 2) * (kh / 2) : kw * kh;
      for (const precision of ['float', 'int8']) {
        const run = await measured([process.execPath, join(ROOT, 'bin', 'cm.js'), ...args, '-o', join(work, 'permp-out.png'), '--model', model, '--device', 'cpu', '--seed', '0', '-q', '--json', '--force', '--precision', precision]);
        if (run.code !== 0) {
          (perMP[name] ??= {})[precision] = { error: run.stderr.trim().split('\n').pop() };
          continue;
        }
        const rec = records(run, `${name} ${precision}`)[0];
        (perMP[name] ??= {})[precision] = { evaluations: rec.evaluations, wallSeconds: round(run.wall, 2), cpuSeconds: round(run.cpu, 2), secondsPerMP: round(run.wall / (outPixels / 1e6), 2), peakRssMB: run.rssMB };
      }
    }
    result.perMegapixel = { photo: `Kodak24 image 1 (${kw}x${kh}; superres from its 4x box-down)`, tasks: perMP };
    log(`peer: per megapixel: ${JSON.stringify(perMP)}`);
  }
  result.loadavgAfter = machine().loadavg;
  log(`peer: end to end: ${JSON.stringify(e2e)}`);
  writeFileSync(join(outDir, 'peer.json'), JSON.stringify(result, null, 1) + '\n');
  writeFileSync(join(outDir, 'peer.md'), peerMarkdown(result));
  return result;
}

export function peerMarkdown(r) {
  const m = r.machine;
  let s = `## Speed against the peer (issue 19)\n\nMeasured ${r.measuredAt}; ${m.cores} x ${m.cpuModel} (int8 flags: ${m.int8Flags.join(', ') || 'none'}), Node ${m.node}; load average ${m.loadavg.join(' / ')} at the start, ${r.loadavgAfter.join(' / ')} at the end. Model \`${r.model}\`${r.int8 ? ` and its int8 variant \`${r.int8}\`` : ''}.\n\n`;
  s += '### One model call (4 tiles of 128x128), median\n\n| threads | precision | wall ms | CPU ms |\n|---|---|---|---|\n';
  for (const [t, byP] of Object.entries(r.evaluation)) for (const [p, v] of Object.entries(byP)) s += `| ${t} | ${p} | ${v.wallMs} | ${v.cpuMs} |\n`;
  s += `\n### onnxruntime session options (${r.sessionOptions.model.split('/').pop()}, ${r.sessionOptions.threads} threads, one call of 4 x 128x128)\n\n| options | wall ms | CPU ms |\n|---|---|---|\n`;
  for (const [n, v] of Object.entries(r.sessionOptions.perCall)) s += `| ${n} | ${v.wallMs} | ${v.cpuMs} |\n`;
  const e = r.endToEnd;
  s += `\n### x4 super-resolution end to end (${e.input} to ${e.output}), whole process, medians of ${e.rounds}, alternating\n\n| method | evaluations | wall s | CPU s | s per output MP | peak RSS MB | vs UpscalerJS medium | vs slim |\n|---|---|---|---|---|---|---|---|\n`;
  for (const [n, v] of Object.entries(e.runs)) {
    s += v.error ? `| ${n} | could not run: ${v.error} | | | | | | |\n` : `| ${n} | ${v.evaluations ?? '1 (network once)'} | ${v.wallSeconds} | ${v.cpuSeconds} | ${v.secondsPerOutputMP} | ${v.peakRssMB} | ${v.vsMedium ?? ''}x | ${v.vsSlim ?? ''}x |\n`;
  }
  s += '\nUpscalerJS runs TensorFlow.js on its WebAssembly backend in Node, one thread; cm uses both cores (onnxruntime\'s default threads).\n';
  if (r.perMegapixel) {
    s += `\n### Seconds per output megapixel, every task, float against int8 (${r.perMegapixel.photo}), one run each, alternating\n\n| task | evaluations | float s / MP | int8 s / MP | float CPU s | int8 CPU s | int8 / float (wall) |\n|---|---|---|---|---|---|---|\n`;
    for (const [n, v] of Object.entries(r.perMegapixel.tasks)) {
      const f = v.float ?? {};
      const q = v.int8 ?? {};
      s += `| ${n} | ${f.evaluations ?? q.evaluations ?? ''} | ${f.secondsPerMP ?? f.error ?? ''} | ${q.secondsPerMP ?? q.error ?? ''} | ${f.cpuSeconds ?? ''} | ${q.cpuSeconds ?? ''} | ${f.secondsPerMP && q.secondsPerMP ? round(q.secondsPerMP / f.secondsPerMP, 2) : ''} |\n`;
    }
  }
  return s;
}
