import type { Argv, CommandModule } from 'yargs';
import { CmError, ModelError } from '../errors.js';
import type { PlanTask, TaskPlan } from '../runtime/card.js';
import { presetPlan, QUALITIES, type Quality } from './common.js';
import { IMAGE_TASK_SPECS } from '../pipeline/tasks.js';
import type { ImageTaskName } from '../pipeline/registry.js';
import { readModelFile, type ModelFile } from '../runtime/model.js';
import { installedModels, resolveModel } from '../runtime/registry.js';

interface ModelsArgs {
  json: boolean;
}

interface InfoArgs extends ModelsArgs {
  model?: string;
}

function summary(file: ModelFile, name: string, isDefault: boolean): Record<string, unknown> {
  const { card } = file;
  return {
    name,
    default: isDefault,
    path: file.path,
    title: card.name,
    resolution: card.resolution,
    classes: card.numClasses,
    grid: card.grid.size,
    plans: card.plans,
    task_plans: card.taskPlans,
    task_defaults: card.taskDefaults,
    task_refine: card.taskRefine,
    quality: qualityTable(file),
    parameters: card.metadata['cm.params'] ? Number(card.metadata['cm.params']) : null,
    license: card.license,
    trained_on: card.trainedOn,
  };
}

function describePlan(p: TaskPlan): string {
  return `${p.ts ? `ts ${p.ts.join(',')} ` : ''}start ${p.start}, eta ${p.eta}${p.samples > 1 ? `, ${p.samples} samples` : ''}${p.views ? ', views' : ''}`;
}

/** What --quality fast / default / best run for each task the model stores plans for (commands/common.ts). */
function qualityTable(file: ModelFile): Record<string, Record<Quality, { k: number; evaluations: number; stored: boolean; plan: string }>> {
  const out: Record<string, Record<Quality, { k: number; evaluations: number; stored: boolean; plan: string }>> = {};
  for (const task of Object.keys(file.card.taskPlans) as PlanTask[]) {
    if (task === 'generate' || task === 'interpolate') continue;
    const stored = file.card.taskPlans[task] ?? {};
    const defaultK = file.card.taskDefaults[task] ?? Math.max(...Object.keys(stored).map(Number));
    const row = {} as Record<Quality, { k: number; evaluations: number; stored: boolean; plan: string }>;
    const minSamples = IMAGE_TASK_SPECS[task.split('-')[0] as ImageTaskName]?.minSamples ?? 1;
    for (const q of QUALITIES) {
      const p = q === 'default' ? { k: defaultK, plan: stored[String(defaultK)] } : presetPlan(file, task, q, defaultK);
      // As chooseSampling counts them: a stored plan runs at least the task's own fewest samples (colorize combines 8).
      const plan = p.plan ? { ...p.plan, samples: Math.max(p.plan.samples, minSamples) } : { start: 'known' as const, eta: 1, samples: 1 };
      row[q] = { k: p.k, evaluations: p.k * plan.samples, stored: q === 'default' || file.card.taskPresets[task]?.[q] !== undefined, plan: `${p.k}: ${describePlan(plan)}` };
    }
    out[task] = row;
  }
  return out;
}

async function list(args: ModelsArgs): Promise<void> {
  const defaultPath = resolveModel(undefined);
  const rows: Record<string, unknown>[] = [];
  for (const { name, path } of installedModels()) {
    try {
      rows.push(summary(await readModelFile(path), name, path === defaultPath));
    } catch (e) {
      if (!(e instanceof CmError)) throw e;
      rows.push({ name, default: false, path, error: e.message });
    }
  }
  if (args.json) {
    for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const lines = rows.map((r) =>
    r.error
      ? `  ${r.name}  (unreadable: ${r.error})`
      : `${r.default ? '* ' : '  '}${r.name}  ${r.resolution}x${r.resolution}  plans ${Object.keys(r.plans as object).join('/') || 'none'}  ${r.license}  ${r.path}`,
  );
  process.stdout.write(`${lines.join('\n')}\n${rows.length ? '(* = the default)\n' : 'no models installed\n'}`);
}

async function info(args: InfoArgs): Promise<void> {
  const path = resolveModel(args.model);
  if (path === undefined) throw new ModelError(`${args.model ?? 'default'}: no installed model of that name (see: cm models)`);
  const file = await readModelFile(path);
  const s = summary(file, args.model ?? 'default', path === resolveModel(undefined));
  const record = { ...s, sigma_min: file.card.grid.sigmaMin, sigma_max: file.card.grid.sigmaMax, rho: file.card.grid.rho, sigma_data: file.card.sigmaData, metadata: file.card.metadata };
  if (args.json) {
    process.stdout.write(`${JSON.stringify(record)}\n`);
    return;
  }
  const { card } = file;
  const plans = Object.entries(card.plans).map(([k, ts]) => `${k}: ${ts.join(',')}`);
  const taskPlans = Object.entries(card.taskPlans).map(
    ([task, byK]) =>
      `  ${task.padEnd(12)} ${Object.entries(byK ?? {})
        .map(([k, p]) => `${k}${card.taskDefaults[task as PlanTask] === Number(k) ? ' (default)' : ''}: ${describePlan(p)}`)
        .concat(card.taskRefine[task as PlanTask] ? [`finer levels: ts ${card.taskRefine[task as PlanTask]?.join(',')}`] : [])
        .join('; ')}`,
  );
  const quality = Object.entries(s.quality as ReturnType<typeof qualityTable>).map(
    ([task, q]) => `  ${task.padEnd(12)} ${QUALITIES.map((name) => `${name}: ${q[name].evaluations} evaluation${q[name].evaluations === 1 ? '' : 's'}${q[name].plan.endsWith(', views') ? ' with views' : ''}${q[name].stored ? '' : ' (derived)'}`).join('; ')}`,
  );
  const lines = [
    `name:        ${card.name}`,
    `path:        ${file.path}`,
    `resolution:  ${card.resolution}x${card.resolution}, ${card.channels} channels`,
    `classes:     ${card.numClasses === 0 ? 'none (unconditional)' : card.numClasses}`,
    `parameters:  ${s.parameters ?? 'unknown'}`,
    `noise:       sigma ${card.grid.sigmaMin}..${card.grid.sigmaMax}, rho ${card.grid.rho}, sigma_data ${card.sigmaData}, grid of ${card.grid.size}`,
    `plans:       ${plans.length ? plans.join('; ') : 'none (evenly spaced)'}`,
    `task plans:  ${taskPlans.length ? '(the defaults of --steps K per task)' : "none (every task uses the plans above with the paper's sampler: start known, eta 1)"}`,
    ...taskPlans,
    `--quality:   ${quality.length ? '(network evaluations per image or tile: steps x samples)' : 'no stored task plans'}`,
    ...quality,
    `license:     ${card.license}`,
    `trained on:  ${card.trainedOn}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

export const modelsCommand: CommandModule<object, ModelsArgs> = {
  command: 'models',
  describe: 'List installed models; `cm models info [PATH|NAME]` shows one',
  builder: (y: Argv) =>
    y
      .option('json', { type: 'boolean', default: false, describe: 'One JSON record per model on stdout' })
      .command({
        command: 'info [model]',
        describe: 'Metadata of a model: resolution, plans, licence (default: the default model)',
        builder: (yy: Argv) => yy.positional('model', { type: 'string', describe: 'Model file or installed name' }),
        handler: (a) => info(a as unknown as InfoArgs),
      }) as never,
  handler: (args) => list(args),
};
