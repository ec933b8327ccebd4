/**
 * A small seeded PRNG with the same stream on every machine (no Math.random): sfc32 seeded through
 * splitmix32 from a 32-bit hash of a string key, e.g. `${seed}/${taskId}`, so each task draws its own stream
 * and adding or removing tasks never changes another task's prompts.
 *
 * @example
 * ```ts
 * import { Rng } from "./rng.ts";
 * const rng = Rng.fromKey("42/007bbfb7");
 * console.log(rng.next() < 1, rng.int(10) < 10, rng.shuffle([1, 2, 3]).length); // true true 3
 * ```
 */
import { hash32 } from "../util/seeded.ts";

export { hash32 };

function splitmix32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** Deterministic random numbers (sfc32). */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number) {
    const sm = splitmix32(seed);
    this.#a = sm();
    this.#b = sm();
    this.#c = sm();
    this.#d = sm();
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** A generator seeded from a string key. */
  static fromKey(key: string): Rng {
    return new Rng(hash32(key));
  }

  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Fisher-Yates shuffle of `xs` in place; returns `xs`. */
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [xs[i], xs[j]] = [xs[j], xs[i]];
    }
    return xs;
  }
}
