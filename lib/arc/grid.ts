/**
 * ARC grids: validation and the geometric / colour transforms used by augmentation. A grid is a non-empty,
 * rectangular `number[][]` of colours 0..9, row-major.
 *
 * @example
 * ```ts
 * import { hflip, rot90, mapColors } from "./grid.ts";
 * console.log(rot90([[1, 2], [3, 4]], 1)); // [[2, 4], [1, 3]] (counter-clockwise, like numpy.rot90)
 * console.log(hflip([[1, 2]]), mapColors([[0, 1]], [0, 5, 1, 2, 3, 4, 6, 7, 8, 9])); // [[2, 1]] [[0, 5]]
 * ```
 */

/** A grid of colours 0..9, row-major, rectangular, non-empty. */
export type Grid = number[][];

/** Why `g` is not a valid grid, or null when it is. */
export function gridProblem(g: unknown): string | null {
  if (!Array.isArray(g)) return "is not a list of rows";
  if (g.length === 0) return "is empty";
  let width = -1;
  for (let r = 0; r < g.length; r++) {
    const row = g[r];
    if (!Array.isArray(row)) return `row ${r} is not a list`;
    if (row.length === 0) return `row ${r} is empty`;
    if (width === -1) width = row.length;
    else if (row.length !== width) return `is ragged: row ${r} has ${row.length} cells, row 0 has ${width}`;
    for (let c = 0; c < row.length; c++) {
      const v = row[c];
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 9) {
        return `has colour ${JSON.stringify(v)} at row ${r}, column ${c} (colours are integers 0-9)`;
      }
    }
  }
  return null;
}

/** Mirror left-right (numpy `flip(axis=1)`). */
export function hflip(g: Grid): Grid {
  return g.map((row) => row.slice().reverse());
}

/** Rotate by `k` quarter turns counter-clockwise (numpy `rot90(g, k)`). */
export function rot90(g: Grid, k: number): Grid {
  let out = g;
  for (let i = 0; i < ((k % 4) + 4) % 4; i++) {
    const h = out.length;
    const w = out[0].length;
    const src = out;
    // numpy rot90 (k=1): out[i][j] = src[j][w-1-i]
    out = Array.from({ length: w }, (_, r) => Array.from({ length: h }, (_, c) => src[c][w - 1 - r]));
  }
  return out === g ? g.map((row) => row.slice()) : out;
}

/** Replace every colour `c` by `map[c]`. */
export function mapColors(g: Grid, map: readonly number[]): Grid {
  return g.map((row) => row.map((c) => map[c]));
}
