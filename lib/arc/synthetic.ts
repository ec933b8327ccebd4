/**
 * Generated ARC-format tasks for the demo, tests and benchmarks: small grids and simple, learnable rules (flip,
 * rotate, colour swap, transpose, scale), produced from a seed so every run writes the same file. They are not
 * copied from any ARC release; they only share its JSON shape (`{task_id: {train: [{input, output}], test}}`).
 *
 * @example
 * ```ts
 * import { syntheticArcTasks } from "./synthetic.ts";
 * const tasks = syntheticArcTasks({ nTasks: 3, seed: 7 });
 * const path = await Deno.makeTempFile({ suffix: ".json" }); // e.g. the demo's demo_out/arc_tasks.json
 * await Deno.writeTextFile(path, JSON.stringify(tasks));
 * await Deno.remove(path);
 * ```
 */
import { mulberry32 } from "../util/seeded.ts";

/** A grid of colours 0..9, row-major. */
export type Grid = number[][];

/** One ARC task as stored in a challenges file. */
export interface SyntheticTask {
  train: { input: Grid; output: Grid }[];
  test: { input: Grid; output: Grid }[];
}

/** Options for {@link syntheticArcTasks}. */
export interface SyntheticOptions {
  /** Number of tasks (default 4). */
  nTasks?: number;
  /** RNG seed (default 0). */
  seed?: number;
  /** Train pairs per task (default 2..3, drawn). */
  trainPairs?: number;
  /** Test inputs per task (default 1). */
  testInputs?: number;
  /** Largest grid side (default 6; smallest is 2). */
  maxSide?: number;
}

type Rule = (g: Grid, rng: () => number) => Grid;

const RULES: Record<string, Rule> = {
  hflip: (g) => g.map((r) => [...r].reverse()),
  vflip: (g) => [...g].reverse().map((r) => [...r]),
  transpose: (g) => g[0].map((_, j) => g.map((r) => r[j])),
  rot90: (g) => g[0].map((_, j) => g.map((r) => r[j]).reverse()),
  recolor: (g) => g.map((r) => r.map((v) => (v === 0 ? 0 : ((v % 9) + 1)))),
  scale2: (g) => g.flatMap((r) => [r.flatMap((v) => [v, v]), r.flatMap((v) => [v, v])]),
};

/** Deterministic PRNG (re-exported: same seed, same tasks, on every platform). */
export { mulberry32 };

function randomGrid(rng: () => number, maxSide: number): Grid {
  const side = () => 2 + Math.floor(rng() * (maxSide - 1));
  const h = side(), w = side();
  const palette = [1 + Math.floor(rng() * 9), 1 + Math.floor(rng() * 9)];
  return Array.from(
    { length: h },
    () => Array.from({ length: w }, () => (rng() < 0.5 ? 0 : palette[Math.floor(rng() * 2)])),
  );
}

/**
 * Generate `nTasks` ARC-format tasks keyed by 8-hex-digit ids (like ARC's), each applying one rule to random
 * grids. Test entries carry their output, as in ARC's training challenges.
 */
export function syntheticArcTasks(opts: SyntheticOptions = {}): Record<string, SyntheticTask> {
  const rng = mulberry32(opts.seed ?? 0);
  const maxSide = Math.max(2, opts.maxSide ?? 6);
  const names = Object.keys(RULES);
  const out: Record<string, SyntheticTask> = {};
  for (let t = 0; t < (opts.nTasks ?? 4); t++) {
    let id = "";
    do {
      id = Math.floor(rng() * 0xffffffff).toString(16).padStart(8, "0");
    } while (id in out);
    const rule = RULES[names[Math.floor(rng() * names.length)]];
    const pair = () => {
      const input = randomGrid(rng, maxSide);
      return { input, output: rule(input, rng) };
    };
    const nTrain = opts.trainPairs ?? 2 + Math.floor(rng() * 2);
    out[id] = {
      train: Array.from({ length: nTrain }, pair),
      test: Array.from({ length: opts.testInputs ?? 1 }, pair),
    };
  }
  return out;
}
