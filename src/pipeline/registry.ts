/**
 * The one list of tasks: the CLI's commands (cli.ts), the commands that start an inference worker early
 * (runtime/worker-process.ts), the keys a model may store plans under (runtime/card.ts) and the studio's task menu all
 * read it. Adding a task is one entry here and one builder in tasks.ts. No imports: every layer may read it.
 */

/** Every task, in the CLI's order. */
export const TASK_NAMES = ['inpaint', 'colorize', 'superres', 'stroke', 'denoise', 'generate', 'interpolate'] as const;
export type TaskName = (typeof TASK_NAMES)[number];

/** Tasks that edit an image (the others generate from noise). */
export const IMAGE_TASKS = ['inpaint', 'colorize', 'superres', 'stroke', 'denoise'] as const satisfies readonly TaskName[];
export type ImageTaskName = (typeof IMAGE_TASKS)[number];

/** superres's factors: each stores its own plans (superres-x2, ...). */
export const SUPERRES_SCALES = [2, 4, 8] as const;

/** The keys of a model's stored plans (cm.task_plans): one per task, superres one per factor (in the card's order). */
export const PLAN_TASKS = ['inpaint', 'colorize', 'superres-x2', 'superres-x4', 'superres-x8', 'denoise', 'stroke', 'generate', 'interpolate'] as const;
export type PlanTask = (typeof PLAN_TASKS)[number];
// Every task has its key(s), and no key names an unknown task (a compile error otherwise).
type KeyOf<T extends TaskName> = T extends 'superres' ? `superres-x${(typeof SUPERRES_SCALES)[number]}` : T;
const covered: readonly PlanTask[] = [] as KeyOf<TaskName>[];
const known: readonly KeyOf<TaskName>[] = [] as PlanTask[];
void covered;
void known;
