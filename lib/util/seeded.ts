/**
 * Seeded randomness shared by every generator in the project.
 *
 * mulberry32: a tiny, fast, deterministic PRNG in [0, 1) — the same stream on every platform. Used wherever
 * the project generates data from a seed (tiny checkpoints' weights, synthetic ARC tasks, test fixtures).
 * Prompt augmentation uses its own keyed stream (lib/arc/rng.ts), whose values are pinned separately.
 *
 * @example
 * ```ts
 * import { hash32, mulberry32 } from "./seeded.ts";
 * const rand = mulberry32(42);
 * console.log(rand() === mulberry32(42)(), hash32("a")); // true 3826002220
 * ```
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a over the UTF-16 code units of `s`: turns a string key (e.g. `${seed}/${taskId}`) into a 32-bit seed. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
