/**
 * ARC datasets in the three layouts users have: the seed's dict file `{task_id: {train, test}}` (e.g.
 * `training_challenges.json`), a directory of one task per `*.json` file (id = file name, as in the ARC-AGI
 * repository), and JSONL with one `{id, train, test}` per line. Tasks keep file order (directory: sorted by
 * name); `nTasks` keeps the first N. Every task is validated; a bad one fails with one line naming the task.
 *
 * @example
 * ```ts
 * import { loadArcDataset } from "./dataset.ts";
 * import { syntheticArcTasks } from "./synthetic.ts";
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, JSON.stringify(syntheticArcTasks({ nTasks: 4 })));
 * const tasks = await loadArcDataset(path, { nTasks: 2 });
 * console.log(tasks.map((t) => [t.id, t.train.length, t.test.length]));
 * await Deno.remove(path);
 * ```
 *
 * @module
 */
import { basename, join } from "node:path";
import { ActshardError } from "../errors.ts";
import { type Grid, gridProblem } from "./grid.ts";
import { parseJsonText, topLevelKeys } from "./json_text.ts";

export type { Grid } from "./grid.ts";

/** One ARC task. Test outputs may be absent (evaluation/test sets). */
export interface ArcTask {
  /** The task id (the dict key, the file name, or the JSONL `id`). */
  id: string;
  /** Demonstration pairs. */
  train: { input: Grid; output: Grid }[];
  /** Test inputs, with outputs where the dataset has them. */
  test: { input: Grid; output?: Grid }[];
}

/** Options for {@link loadArcDataset}. */
export interface ArcLoadOptions {
  /** Keep only the first N tasks (null/undefined = all). */
  nTasks?: number | null;
}

/**
 * Load and validate the tasks at `path` (dict JSON, single-task JSON, directory, or JSONL).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { loadArcDataset } from "./dataset.ts";
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * const grid = [[1, 2], [3, 4]];
 * await Deno.writeTextFile(path, JSON.stringify({ t1: { train: [{ input: grid, output: grid }], test: [{ input: grid }] } }));
 * const [task] = await loadArcDataset(path);
 * assert(task.id === "t1" && task.test[0].output === undefined);
 * await Deno.remove(path);
 * ```
 */
export async function loadArcDataset(path: string, opts: ArcLoadOptions = {}): Promise<ArcTask[]> {
  const limit = opts.nTasks ?? Infinity;
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ActshardError("dataset not found", { where: path, hint: "check --dataset_path" });
    }
    throw e;
  }
  if (stat.isDirectory) return await loadDirectory(path, limit);
  const text = await Deno.readTextFile(path);
  if (/\.(jsonl|ndjson)$/i.test(path)) return loadJsonl(text, path, limit);
  return loadJsonFile(text, path, limit);
}

async function loadDirectory(dir: string, limit: number): Promise<ArcTask[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.toLowerCase().endsWith(".json")) names.push(e.name);
  }
  names.sort();
  if (names.length === 0) {
    throw new ActshardError("no *.json task files in dataset directory", { where: dir });
  }
  const tasks: ArcTask[] = [];
  for (const name of names.slice(0, Math.min(limit, names.length))) {
    const file = join(dir, name);
    const raw = parseJsonText(await Deno.readTextFile(file), file);
    tasks.push(validateTask(name.replace(/\.json$/i, ""), raw, file));
  }
  return tasks;
}

function loadJsonl(text: string, file: string, limit: number): ArcTask[] {
  const tasks: ArcTask[] = [];
  const seen = new Set<string>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length && tasks.length < limit; i++) {
    const line = lines[i].trim();
    if (line === "") continue;
    const where = `${file}:${i + 1}`;
    const raw = parseJsonText(line, file, i) as Record<string, unknown>;
    const id = raw && typeof raw === "object" ? raw.id ?? raw.task_id : undefined;
    if (typeof id !== "string" && typeof id !== "number") {
      throw new ActshardError('JSONL task has no "id"', {
        where,
        hint: 'each line is {"id", "train", "test"}',
      });
    }
    const sid = String(id);
    if (seen.has(sid)) throw new ActshardError(`task ${sid}: duplicate task id`, { where });
    seen.add(sid);
    tasks.push(validateTask(sid, raw, where));
  }
  if (tasks.length === 0) throw new ActshardError("dataset has no tasks", { where: file });
  return tasks;
}

function loadJsonFile(text: string, file: string, limit: number): ArcTask[] {
  const raw = parseJsonText(text, file);
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ActshardError("dataset must be a JSON object {task_id: {train, test}}", {
      where: file,
      hint: "or a directory of task files, or a .jsonl file",
    });
  }
  const obj = raw as Record<string, unknown>;
  // A single ARC task file (as in the ARC-AGI repository): id = file name.
  if (Array.isArray(obj.train) && Array.isArray(obj.test)) {
    return [validateTask(basename(file).replace(/\.json$/i, ""), obj, file)];
  }
  let ids = Object.keys(obj);
  // JS lists integer-like keys first; recover the file's order when that could matter.
  if (ids.some((k) => /^(0|[1-9]\d*)$/.test(k))) ids = topLevelKeys(text);
  if (ids.length === 0) throw new ActshardError("dataset has no tasks", { where: file });
  return ids.slice(0, Math.min(limit, ids.length)).map((id) => validateTask(id, obj[id], file));
}

/** Check one task's shape and grids; throws an {@link ActshardError} naming the task and the bad grid. */
export function validateTask(id: string, raw: unknown, where: string): ArcTask {
  const fail = (what: string): never => {
    throw new ActshardError(`task ${id}: ${what}`, { where });
  };
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) fail("is not an object {train, test}");
  const t = raw as Record<string, unknown>;
  for (const part of ["train", "test"]) {
    if (!(part in t)) fail(`missing "${part}"`);
    if (!Array.isArray(t[part])) fail(`"${part}" is not a list`);
    if ((t[part] as unknown[]).length === 0) fail(`"${part}" is empty`);
  }
  const grid = (s: unknown, label: string, optional: boolean): Grid | undefined => {
    if (s === null || typeof s !== "object") fail(`${label} is not an object`);
    const key = label.split(".").pop() as string;
    const g = (s as Record<string, unknown>)[key];
    if (g === undefined) {
      if (optional) return undefined;
      fail(`${label} is missing`);
    }
    const p = gridProblem(g);
    if (p) fail(`${label} ${p}`);
    return g as Grid;
  };
  const train = (t.train as unknown[]).map((s, i) => ({
    input: grid(s, `train[${i}].input`, false) as Grid,
    output: grid(s, `train[${i}].output`, false) as Grid,
  }));
  const test = (t.test as unknown[]).map((s, i) => {
    const input = grid(s, `test[${i}].input`, false) as Grid;
    const output = grid(s, `test[${i}].output`, true);
    return output === undefined ? { input } : { input, output };
  });
  return { id, train, test };
}
