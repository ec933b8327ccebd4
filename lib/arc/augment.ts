/**
 * Task augmentation as in the seed (arc24): a geometric transform (optional left-right flip, then `rot90`
 * quarter turns counter-clockwise) applied to every grid of the task, a colour permutation, and a shuffled
 * order of the train examples. The 8 geometric combinations are used in the seed's order
 * (hflip ∈ {false, true} × rot90 ∈ {0, 1, 2, 3}); prompt k of a task uses combination k mod 8.
 *
 * @example
 * ```ts
 * import { drawAugmentation, applyAugmentation } from "./augment.ts";
 * import { Rng } from "./rng.ts";
 * const task = { id: "t", train: [{ input: [[1]], output: [[2]] }], test: [{ input: [[3]] }] };
 * const aug = drawAugmentation(0, task.train.length, Rng.fromKey("42/t"));
 * console.log(aug.hflip, aug.rot90, applyAugmentation(task, aug).test[0].input);
 * ```
 */
import type { ArcTask } from "./dataset.ts";
import { type Grid, hflip, mapColors, rot90 } from "./grid.ts";
import type { Rng } from "./rng.ts";

/** The seed's 8 geometric combinations, in its order. */
export const GEOMETRIC_AUGMENTATIONS: readonly { hflip: boolean; rot90: number }[] = [false, true].flatMap((
  f,
) => [0, 1, 2, 3].map((r) => ({ hflip: f, rot90: r })));

/** Probability that the background colour 0 is permuted too (the seed's `change_background_probability`). */
export const CHANGE_BACKGROUND_PROBABILITY = 0.1;

/** One augmentation of a task; JSON-serializable (it is written to `--dump_prompts`). */
export interface Augmentation {
  hflip: boolean;
  rot90: number;
  /** `color_map[c]` is the new colour of colour c. */
  color_map: number[];
  /** Indices into the original train list, in prompt order. */
  train_order: number[];
}

/** The identity augmentation for a task with `nTrain` train examples. */
export function identityAugmentation(nTrain: number): Augmentation {
  return {
    hflip: false,
    rot90: 0,
    color_map: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    train_order: Array.from({ length: nTrain }, (_, i) => i),
  };
}

/** A random colour map: with probability 0.1 all 10 colours are permuted, else 0 stays and 1..9 are. */
export function randomColorMap(rng: Rng): number[] {
  if (rng.next() < CHANGE_BACKGROUND_PROBABILITY) return rng.shuffle([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  return [0, ...rng.shuffle([1, 2, 3, 4, 5, 6, 7, 8, 9])];
}

/** Augmentation number `k` of a task: geometric combination k mod 8, plus a colour map and train order. */
export function drawAugmentation(k: number, nTrain: number, rng: Rng): Augmentation {
  const geo = GEOMETRIC_AUGMENTATIONS[k % GEOMETRIC_AUGMENTATIONS.length];
  const color_map = randomColorMap(rng);
  const train_order = rng.shuffle(Array.from({ length: nTrain }, (_, i) => i));
  return { hflip: geo.hflip, rot90: geo.rot90, color_map, train_order };
}

/** Apply the geometric transform and colour map to one grid. */
export function augmentGrid(g: Grid, aug: Augmentation): Grid {
  const flipped = aug.hflip ? hflip(g) : g;
  return mapColors(rot90(flipped, aug.rot90), aug.color_map);
}

/** The task with every grid transformed and the train examples reordered. */
export function applyAugmentation(task: ArcTask, aug: Augmentation): ArcTask {
  const train = aug.train_order.map((i) => task.train[i]).map((s) => ({
    input: augmentGrid(s.input, aug),
    output: augmentGrid(s.output, aug),
  }));
  const test = task.test.map((s) =>
    s.output === undefined
      ? { input: augmentGrid(s.input, aug) }
      : { input: augmentGrid(s.input, aug), output: augmentGrid(s.output, aug) }
  );
  return { id: task.id, train, test };
}
